import net from 'node:net';
import type { z } from 'zod';
import { listen, tlsServerOptions } from '../../net/sockets.js';
import { StreamListenerSource } from '../stream-listener.js';
import type { SourceContext } from '../types.js';
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
export class SyslogTcpSource extends StreamListenerSource {
  constructor(
    private readonly config: Config,
    ctx: SourceContext,
  ) {
    super(ctx, config.max_connections);
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

  async start(): Promise<void> {
    const t = this.config.tls;
    let server: net.Server;
    if (t) {
      // node:tls is imported when a listener uses it: an agent without TLS does not carry it.
      const tls = await import('node:tls');
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
    if (!this.admit(socket, { peer })) return;
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
        dispatch: (batch) => this.dispatchBatch(batch),
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
  }
}
