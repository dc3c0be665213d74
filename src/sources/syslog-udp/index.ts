import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import { RateLimitedLog } from '../../log.js';
import { kernelUdpDrops } from '../../net/udp-drops.js';
import { LogRecord, type RecordOrigin } from '../../record.js';
import { countDrop, type SourceStats } from '../../stats.js';
import type { Source, SourceContext } from '../types.js';
import type { syslogUdpSourceSchema } from './config.js';
import type { z } from 'zod';

type Config = z.output<typeof syslogUdpSourceSchema>;

// A datagram cannot be larger than this (65535 - 8 UDP - 20 IPv4 header).
const MAX_DATAGRAM = 65507;
const MAX_ORIGINS = 10_000;
/** How often the kernel's drop counter for the socket is read. */
const KERNEL_DROPS_INTERVAL = 1000;

/** Syslog over UDP (RFC 5426): one message per datagram, batched per event-loop turn. */
export class SyslogUdpSource implements Source {
  readonly stats: SourceStats;
  readonly name: string;
  private socket: dgram.Socket | null = null;
  private pending: LogRecord[] = [];
  private flushScheduled = false;
  private readonly origins = new Map<string, RecordOrigin>();
  private readonly maxSize: number;
  private dropsTimer: NodeJS.Timeout | null = null;
  /** The kernel's drop count for the socket when last read. */
  private kernelDrops: number | null = null;
  private readonly quiet = new RateLimitedLog(10_000);

  constructor(
    private readonly config: Config,
    private readonly ctx: SourceContext,
  ) {
    this.name = ctx.name;
    this.stats = ctx.counters.of(ctx.name);
    this.maxSize = Math.min(config.max_message_size, MAX_DATAGRAM);
  }

  describe(): string {
    const a = this.socket?.address();
    if (!a) return `udp://${this.config.address.host}:${this.config.address.port}`;
    return `udp://${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}`;
  }

  /** The bound port (useful when the config asked for port 0). */
  get port(): number {
    return this.socket?.address().port ?? this.config.address.port;
  }

  start(): Promise<void> {
    const { host, port } = this.config.address;
    const socket = dgram.createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4', reuseAddr: false });
    this.socket = socket;
    return new Promise((resolve, reject) => {
      socket.once('error', reject);
      socket.on('message', (msg, rinfo) => this.onDatagram(msg, rinfo.address));
      socket.bind(port, host, () => {
        socket.off('error', reject);
        socket.on('error', (err) => this.ctx.logger.error({ err }, 'UDP socket error'));
        try {
          socket.setRecvBufferSize(this.config.receive_buffer_size);
          // Linux doubles what it is asked for, and caps the request at net.core.rmem_max.
          const got = socket.getRecvBufferSize();
          if (got < this.config.receive_buffer_size) {
            this.ctx.logger.warn(
              { asked: this.config.receive_buffer_size, got },
              'the kernel gave the UDP socket a smaller receive buffer than receive_buffer_size: raise ' +
                'net.core.rmem_max to absorb bursts',
            );
          }
        } catch (err) {
          this.ctx.logger.warn({ err: (err as Error).message }, 'could not set receive_buffer_size');
        }
        // A new socket: its counter starts at 0 (a burst before the first read counts too).
        this.kernelDrops = 0;
        this.dropsTimer = setInterval(() => void this.readKernelDrops(), KERNEL_DROPS_INTERVAL);
        this.dropsTimer.unref();
        resolve();
      });
    });
  }

  /**
   * Datagrams the kernel dropped because the socket's buffer was full (the agent was behind) are
   * counted as `dropped{reason="kernel_buffer"}`, read from the kernel's per-socket counter.
   */
  private async readKernelDrops(): Promise<void> {
    const s = this.socket;
    // Not bound yet (or never: a port taken): nothing to read, and no address to find it by.
    if (!s || this.kernelDrops === null) return;
    const a = s.address();
    const now = await kernelUdpDrops(a.address, a.port);
    if (now === null || this.socket !== s) return;
    const before = this.kernelDrops;
    this.kernelDrops = now;
    if (now <= before) return;
    countDrop(this.stats.dropped, 'kernel_buffer', now - before);
    this.quiet.log('kernel', (extra) =>
      this.ctx.logger.warn(
        {
          dropped: now - before,
          total: this.stats.dropped.kernel_buffer,
          receive_buffer_bytes: s.getRecvBufferSize(),
          ...extra,
        },
        'the kernel dropped UDP datagrams: the socket buffer was full (a burst, or sluice behind); counted as ' +
          'kernel_buffer',
      ),
    );
  }

  private originFor(address: string): RecordOrigin {
    let o = this.origins.get(address);
    if (!o) {
      if (this.origins.size >= MAX_ORIGINS) this.origins.clear();
      o = {
        source: this.name,
        from: address,
        format: 'syslog',
        lenient: this.config.lenient,
        counters: this.ctx.counters,
      };
      this.origins.set(address, o);
    }
    return o;
  }

  private onDatagram(msg: Buffer, address: string): void {
    let len = msg.length;
    // A trailing LF (or CRLF) is framing some senders add, not part of the message.
    if (len > 0 && msg[len - 1] === 0x0a) len--;
    if (len > 0 && msg[len - 1] === 0x0d) len--;
    if (len === 0) return;
    this.stats.received++;
    this.stats.receivedBytes += msg.length;
    if (len > this.maxSize) {
      if (this.config.oversize === 'drop') {
        countDrop(this.stats.dropped, 'oversize');
        return;
      }
      this.stats.truncated++;
      len = this.maxSize;
    }
    this.pending.push(
      new LogRecord(len === msg.length ? msg : msg.subarray(0, len), Date.now(), this.originFor(address)),
    );
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flush);
    }
  }

  private readonly flush = (): void => {
    this.flushScheduled = false;
    const batch = this.pending;
    this.pending = [];
    // UDP cannot wait: a full queue drops and counts (in the router).
    this.ctx.router.dispatch(this.name, batch, 'no');
  };

  async stop(): Promise<void> {
    if (this.dropsTimer) clearInterval(this.dropsTimer);
    this.dropsTimer = null;
    await this.readKernelDrops();
    const s = this.socket;
    this.socket = null;
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
    if (this.pending.length > 0) this.flush();
  }
}
