import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import { LogRecord, countDrop, newSourceStats, type RecordOrigin } from '../../record.js';
import type { Source, SourceContext } from '../types.js';
import type { syslogUdpSourceSchema } from './config.js';
import type { z } from 'zod';

type Config = z.output<typeof syslogUdpSourceSchema>;

// A datagram cannot be larger than this (65535 - 8 UDP - 20 IPv4 header).
const MAX_DATAGRAM = 65507;
const MAX_ORIGINS = 10_000;

/** Syslog over UDP (RFC 5426): one message per datagram, batched per event-loop turn. */
export class SyslogUdpSource implements Source {
  readonly stats = newSourceStats();
  readonly name: string;
  private socket: dgram.Socket | null = null;
  private pending: LogRecord[] = [];
  private flushScheduled = false;
  private readonly origins = new Map<string, RecordOrigin>();
  private readonly maxSize: number;

  constructor(
    private readonly config: Config,
    private readonly ctx: SourceContext,
  ) {
    this.name = ctx.name;
    this.maxSize = Math.min(config.max_message_size, MAX_DATAGRAM);
  }

  describe(): string {
    const a = this.socket?.address();
    return `udp://${a ? `${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}` : `${this.config.address.host}:${this.config.address.port}`}`;
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
        if (this.config.receive_buffer_size !== undefined) {
          try {
            socket.setRecvBufferSize(this.config.receive_buffer_size);
          } catch (err) {
            this.ctx.logger.warn({ err }, 'could not set receive_buffer_size');
          }
        }
        resolve();
      });
    });
  }

  private originFor(address: string): RecordOrigin {
    let o = this.origins.get(address);
    if (!o) {
      if (this.origins.size >= MAX_ORIGINS) this.origins.clear();
      o = { source: this.name, from: address, format: 'syslog', lenient: this.config.lenient, stats: this.stats };
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
    this.pending.push(new LogRecord(len === msg.length ? msg : msg.subarray(0, len), Date.now(), this.originFor(address)));
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
    this.ctx.router.dispatch(this.name, batch, this.stats, 'no');
  };

  async stop(): Promise<void> {
    const s = this.socket;
    this.socket = null;
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
    if (this.pending.length > 0) this.flush();
  }
}
