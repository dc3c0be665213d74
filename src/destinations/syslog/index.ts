import dgram from 'node:dgram';
import type net from 'node:net';
import { isIPv6 } from 'node:net';
import type tls from 'node:tls';
import type { z } from 'zod';
import { connectStream, tlsClientOptions } from '../../net/sockets.js';
import type { LogRecord } from '../../record.js';
import type { Rejected } from '../failures.js';
import { renderRecord } from '../format.js';
import { QueueDrainer } from '../queue-drainer.js';
import type { DestinationContext } from '../types.js';
import type { syslogDestinationSchema } from './config.js';

type Config = z.output<typeof syslogDestinationSchema>;

const MAX_DATAGRAM = 65507;
const SPACE = 0x20;
const LF = 0x0a;

/** Frames a batch into one buffer, so a batch costs one socket write. */
export function encodeBatch(messages: Buffer[], framing: 'octet_counting' | 'lf'): Buffer {
  let total = 0;
  const prefixes: string[] | null = framing === 'octet_counting' ? new Array<string>(messages.length) : null;
  for (let i = 0; i < messages.length; i++) {
    const len = messages[i]!.length;
    if (prefixes) {
      const p = String(len);
      prefixes[i] = p;
      total += p.length + 1 + len;
    } else {
      total += len + 1;
    }
  }
  const out = Buffer.allocUnsafe(total);
  let pos = 0;
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i]!;
    if (prefixes) {
      pos += out.write(prefixes[i]!, pos, 'latin1');
      out[pos++] = SPACE;
      pos += m.copy(out, pos);
    } else {
      pos += m.copy(out, pos);
      out[pos++] = LF;
    }
  }
  return out;
}

/** Forwards to a syslog receiver over TCP, TLS (RFC 5425) or UDP (RFC 5426). */
export class SyslogDestination extends QueueDrainer {
  private socket: net.Socket | null = null;
  private udp: dgram.Socket | null = null;
  private connecting: Promise<net.Socket> | null = null;
  private readonly tlsOptions: tls.ConnectionOptions | null;

  constructor(
    private readonly config: Config,
    ctx: DestinationContext,
  ) {
    super(ctx, config.backoff, config.batch_size);
    this.tlsOptions = config.tls ? tlsClientOptions(config.tls, config.address.host) : null;
  }

  describe(): string {
    const scheme = this.config.transport === 'udp' ? 'udp' : this.config.tls ? 'tls' : 'tcp';
    const { host, port } = this.config.address;
    return (
      `${scheme}://${host.includes(':') ? `[${host}]` : host}:${port} ` +
      `(${this.config.format}${this.config.transport === 'tcp' ? `, ${this.config.framing}` : ''})`
    );
  }

  /** The records as messages; one that cannot be encoded is set aside (returned in `rejected`). */
  private render(records: LogRecord[]): { messages: Buffer[]; rejected: Rejected[] } {
    const messages: Buffer[] = [];
    const rejected: Rejected[] = [];
    for (const r of records) {
      try {
        messages.push(renderRecord(r, this.config.format, this.ctx.hostname));
      } catch (err) {
        rejected.push({ record: r, reason: 'encoding', error: (err as Error).message });
      }
    }
    return { messages, rejected };
  }

  protected async deliver(records: LogRecord[]): Promise<Rejected[]> {
    const { messages, rejected } = this.render(records);
    if (messages.length === 0) return rejected;
    if (this.config.transport === 'udp') {
      await this.sendUdp(messages);
      return rejected;
    }
    const socket = this.socket ?? (await this.connect());
    const payload = encodeBatch(messages, this.config.framing);
    await new Promise<void>((resolve, reject) => {
      socket.write(payload, (err) => (err ? reject(err) : resolve()));
    });
    this.stats.sent += messages.length;
    return rejected;
  }

  private async sendUdp(messages: Buffer[]): Promise<void> {
    const { host, port } = this.config.address;
    if (!this.udp) {
      const s = dgram.createSocket(isIPv6(host) ? 'udp6' : 'udp4');
      s.on('error', (err) => this.ctx.logger.warn({ err: err.message }, 'UDP send error'));
      this.udp = s;
    }
    const udp = this.udp;
    const max = Math.min(this.config.max_message_size, MAX_DATAGRAM);
    await new Promise<void>((resolve, reject) => {
      let left = messages.length;
      for (const m of messages) {
        udp.send(m.length > max ? m.subarray(0, max) : m, port, host, (err) => {
          if (err) reject(err);
          else if (--left === 0) resolve();
        });
      }
    });
    this.stats.sent += messages.length;
  }

  private connect(): Promise<net.Socket> {
    this.connecting ??= this.openConnection().finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  private async openConnection(): Promise<net.Socket> {
    const { host, port } = this.config.address;
    this.stats.reconnectAttempts++;
    const socket = await connectStream(this.config.address, this.tlsOptions, this.config.connect_timeout);
    socket.on('error', (err) => this.ctx.logger.debug({ err: err.message }, 'connection error'));
    socket.on('close', () => {
      if (this.socket === socket) {
        this.socket = null;
        this.stats.connected = false;
      }
    });
    // Receivers send nothing back on plain syslog; reading keeps a half-closed peer detectable.
    socket.on('data', () => undefined);
    socket.on('end', () => socket.destroy());
    this.socket = socket;
    this.stats.connected = true;
    this.stats.reconnects++;
    this.ctx.logger.info({ address: `${host}:${port}` }, 'connected');
    return socket;
  }

  protected async release(force: boolean): Promise<void> {
    const s = this.socket;
    this.socket = null;
    this.stats.connected = false;
    if (s) {
      if (force) s.destroy();
      else await new Promise<void>((resolve) => s.end(() => resolve()));
    }
    if (this.udp) {
      const u = this.udp;
      this.udp = null;
      await new Promise<void>((resolve) => u.close(() => resolve()));
    }
  }
}
