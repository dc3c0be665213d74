import net from 'node:net';
import tls from 'node:tls';
import type { z } from 'zod';
import type { SourceStats } from '../../stats.js';
import { RateLimitedLog } from '../../log.js';
import { closeStreamServer, listen, tlsServerOptions } from '../../net/sockets.js';
import type { Source, SourceContext } from '../types.js';
import type { syslogTcpSourceSchema } from './config.js';
import { SyslogStreamConnection } from './connection.js';
import { syslogOrigin } from '../types.js';

type Config = z.output<typeof syslogTcpSourceSchema>;

function peerOf(socket: net.Socket): string {
  return socket.remoteAddress ?? 'unknown';
}

/**
 * Syslog over TCP or TLS. Each connection gets its own frame decoder; a batch is the frames of one
 * read. While a queue is full the socket is paused, so the sender feels TCP backpressure.
 */
export class SyslogTcpSource implements Source {
  readonly stats: SourceStats;
  /** Bad clients are logged at most once a second per kind, with the count left out. */
  private readonly quiet = new RateLimitedLog(1000);
  readonly name: string;
  private server: net.Server | null = null;
  private readonly connections = new Set<net.Socket>();
  private readonly inFlight = new Set<Promise<void>>();

  constructor(
    private readonly config: Config,
    private readonly ctx: SourceContext,
  ) {
    this.name = ctx.name;
    this.stats = ctx.counters.of(ctx.name);
  }

  describe(): string {
    const a = this.server?.address();
    const scheme = this.config.tls ? 'tls' : 'tcp';
    if (a && typeof a === 'object')
      return `${scheme}://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
    return `${scheme}://${this.config.address.host}:${this.config.address.port}`;
  }

  get port(): number {
    const a = this.server?.address();
    return a && typeof a === 'object' ? a.port : this.config.address.port;
  }

  get activeConnections(): number {
    return this.connections.size;
  }

  start(): Promise<void> {
    const t = this.config.tls;
    let server: net.Server;
    if (t) {
      server = tls.createServer(tlsServerOptions(t), (socket) => this.onConnection(socket));
      server.on('tlsClientError', (err, socket) => {
        this.stats.connectionErrors++;
        this.quiet.log('tls', (extra) =>
          this.ctx.logger.warn(
            { peer: socket.remoteAddress, reason: err.message, ...extra },
            'TLS handshake failed; connection closed',
          ),
        );
      });
    } else {
      server = net.createServer((socket) => this.onConnection(socket));
    }
    this.server = server;
    return listen(server, this.config.address).then(() => {
      server.on('error', (err) => this.ctx.logger.error({ err }, 'TCP listener error'));
    });
  }

  private onConnection(socket: net.Socket): void {
    const peer = peerOf(socket);
    if (this.connections.size >= this.config.max_connections) {
      this.stats.connectionsRejected++;
      this.quiet.log('max_connections', (extra) =>
        this.ctx.logger.warn(
          { peer, max_connections: this.config.max_connections, ...extra },
          'connection refused: max_connections reached',
        ),
      );
      socket.destroy();
      return;
    }
    this.stats.connectionsAccepted++;
    this.connections.add(socket);
    socket.setKeepAlive(true, 60_000);
    socket.setNoDelay(true);
    if (this.config.idle_timeout > 0) socket.setTimeout(this.config.idle_timeout);

    const connection = new SyslogStreamConnection(
      socket,
      syslogOrigin(this.name, peer, this.config.lenient, this.ctx.counters),
      {
        maxMessageSize: this.config.max_message_size,
        oversize: this.config.oversize,
        stats: this.stats,
        // Plain syslog cannot acknowledge, so only room in the queues matters, not the fsync.
        dispatch: (batch) => {
          const wait = this.ctx.router.dispatch(this.name, batch, 'drop_after_timeout')?.accepted;
          if (!wait) return undefined;
          const settled = wait.then(() => {
            this.inFlight.delete(settled);
          });
          this.inFlight.add(settled);
          return settled;
        },
        badFraming: (reason) =>
          this.quiet.log('framing', (extra) =>
            this.ctx.logger.warn({ peer, reason, ...extra }, 'closing connection: not valid syslog framing'),
          ),
      },
    );
    socket.on('data', (chunk: Buffer) => connection.onData(chunk));
    socket.on('end', () => connection.onEnd());
    socket.on('timeout', () => {
      this.ctx.logger.info({ peer, idle_timeout_ms: this.config.idle_timeout }, 'closing idle connection');
      socket.destroy();
    });
    socket.on('error', (err) => {
      this.stats.connectionErrors++;
      this.ctx.logger.debug({ peer, err: err.message }, 'connection error');
    });
    socket.on('close', () => this.connections.delete(socket));
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (server) await closeStreamServer(server, this.connections, this.inFlight);
    else await Promise.race([Promise.all(this.inFlight), new Promise<void>((r) => setTimeout(r, 1000).unref())]);
  }
}
