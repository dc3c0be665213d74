import type net from 'node:net';
import { RateLimitedLog } from '../log.js';
import { closeStreamServer } from '../net/sockets.js';
import type { LogRecord } from '../record.js';
import type { SourceStats } from '../stats.js';
import type { Source, SourceContext } from './types.js';

/**
 * What a source listening for syslog streams (TCP, TLS, a Unix socket) shares: its connections, up
 * to `max_connections`; batches dispatched with flow control (a full queue pauses the socket, for
 * at most `block_timeout`), tracked until they are queued so that a stop waits for them; and the
 * stop itself.
 */
export abstract class StreamListenerSource implements Source {
  readonly name: string;
  readonly stats: SourceStats;
  /** Bad clients are logged at most once a second per kind, with the count left out. */
  protected readonly quiet = new RateLimitedLog(1000);
  protected server: net.Server | null = null;
  protected readonly connections = new Set<net.Socket>();
  private readonly inFlight = new Set<Promise<void>>();

  constructor(
    protected readonly ctx: SourceContext,
    private readonly maxConnections: number,
  ) {
    this.name = ctx.name;
    this.stats = ctx.counters.of(ctx.name);
  }

  abstract start(): Promise<void>;
  abstract describe(): string;

  /** Takes `socket` in (closed when it goes), or refuses it, counted and logged, over max_connections. */
  protected admit(socket: net.Socket, where: Record<string, unknown>): boolean {
    if (this.connections.size >= this.maxConnections) {
      this.stats.connectionsRejected++;
      this.quiet.log('max_connections', (extra) =>
        this.ctx.logger.warn(
          { ...where, max_connections: this.maxConnections, ...extra },
          'connection refused: max_connections reached',
        ),
      );
      socket.destroy();
      return false;
    }
    this.stats.connectionsAccepted++;
    this.connections.add(socket);
    socket.on('close', () => this.connections.delete(socket));
    return true;
  }

  /**
   * Hands a batch to the router. Plain syslog cannot acknowledge, so only room in the queues
   * matters, not the fsync: the promise (while they have no room) pauses the socket.
   */
  protected dispatchBatch(batch: LogRecord[]): Promise<void> | undefined {
    const wait = this.ctx.router.dispatch(this.name, batch, 'drop_after_timeout')?.accepted;
    if (!wait) return undefined;
    const settled = wait.then(() => {
      this.inFlight.delete(settled);
    });
    this.inFlight.add(settled);
    return settled;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (server) await closeStreamServer(server, this.connections, this.inFlight);
    else await Promise.race([Promise.all(this.inFlight), new Promise<void>((r) => setTimeout(r, 1000).unref())]);
  }
}
