import net from 'node:net';
import tls from 'node:tls';
import type { z } from 'zod';
import { RateLimitedLog } from '../../log.js';
import { listen, tlsServerOptions } from '../../net/sockets.js';
import type { SourceStats } from '../../stats.js';
import type { Source, SourceContext } from '../types.js';
import type { relpSourceSchema } from './config.js';
import { RelpServerSession } from './session.js';
import { syslogOrigin } from '../types.js';

type Config = z.infer<typeof relpSourceSchema>;

/** The RELP server. */
export class RelpSource implements Source {
  readonly stats: SourceStats;
  readonly name: string;
  private server: net.Server | null = null;
  private readonly sockets = new Set<net.Socket>();
  private readonly quiet = new RateLimitedLog(1000);

  constructor(
    private readonly config: Config,
    private readonly ctx: SourceContext,
  ) {
    this.name = ctx.name;
    this.stats = ctx.counters.of(ctx.name);
  }

  get port(): number {
    return (this.server?.address() as net.AddressInfo | null)?.port ?? 0;
  }

  describe(): string {
    const port = this.port || this.config.address.port;
    return `relp${this.config.tls ? '+tls' : ''}://${this.config.address.host}:${port}`;
  }

  async start(): Promise<void> {
    const t = this.config.tls;
    const server = t
      ? tls.createServer(tlsServerOptions(t), (s) => this.connection(s))
      : net.createServer((s) => this.connection(s));
    if (t) {
      server.on('tlsClientError', (err) => {
        this.stats.connectionErrors++;
        this.quiet.log('tls', (extra) =>
          this.ctx.logger.warn({ reason: err.message, ...extra }, 'TLS handshake failed; connection closed'),
        );
      });
    }
    await listen(server, this.config.address);
    server.on('error', (err) => this.ctx.logger.error({ err: err.message }, 'RELP listener error'));
    this.server = server;
  }

  private connection(socket: net.Socket): void {
    const peer = socket.remoteAddress ?? 'unknown';
    if (this.sockets.size >= this.config.max_connections) {
      this.stats.connectionsRejected++;
      this.quiet.log('max', (extra) =>
        this.ctx.logger.warn({ peer, ...extra }, 'connection refused: max_connections reached'),
      );
      socket.destroy();
      return;
    }
    this.stats.connectionsAccepted++;
    this.sockets.add(socket);
    socket.setNoDelay(true);
    if (this.config.idle_timeout > 0) {
      socket.setTimeout(this.config.idle_timeout, () => socket.destroy());
    }
    const session = new RelpServerSession(
      socket,
      syslogOrigin(this.name, peer, this.config.lenient, this.ctx.counters),
      {
        maxMessageSize: this.config.max_message_size,
        stats: this.stats,
        dispatch: (records) => {
          if (this.ctx.shedding?.()) throw new Error('load shedding: the server cannot write its queues');
          return this.ctx.router.dispatch(this.name, records, 'keep_waiting');
        },
        closing: (reason) =>
          this.quiet.log('bad', (extra) => this.ctx.logger.warn({ peer, reason, ...extra }, 'closing RELP connection')),
      },
    );
    socket.on('data', (chunk: Buffer) => session.onData(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      session.closed();
      this.sockets.delete(socket);
    });
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const s of this.sockets) s.destroy();
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }
}
