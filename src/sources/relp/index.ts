import net from 'node:net';
import tls from 'node:tls';
import type { z } from 'zod';
import { RateLimitedLog } from '../../log.js';
import { listen, tlsServerOptions } from '../../net/sockets.js';
import { RELP_OFFERS, RelpError, relpFrame, RelpParser, type RelpFrame } from '../../protocol/relp.js';
import { LogRecord, newSourceStats, type RecordOrigin } from '../../record.js';
import type { Source, SourceContext } from '../types.js';
import type { relpSourceSchema } from './config.js';

type Config = z.infer<typeof relpSourceSchema>;

/** Frames waiting for their commit on one connection before the server stops reading it. */
const MAX_PENDING = 4096;

/** The RELP server. */
export class RelpSource implements Source {
  readonly stats = newSourceStats();
  readonly name: string;
  private server: net.Server | null = null;
  private readonly sockets = new Set<net.Socket>();
  private readonly quiet = new RateLimitedLog(1000);

  constructor(
    private readonly config: Config,
    private readonly ctx: SourceContext,
  ) {
    this.name = ctx.name;
  }

  get port(): number {
    return (this.server?.address() as net.AddressInfo | null)?.port ?? 0;
  }

  describe(): string {
    return `relp${this.config.tls ? '+tls' : ''}://${this.config.address.host}:${this.port || this.config.address.port}`;
  }

  async start(): Promise<void> {
    const t = this.config.tls;
    const server = t ? tls.createServer(tlsServerOptions(t), (s) => this.connection(s)) : net.createServer((s) => this.connection(s));
    if (t) {
      server.on('tlsClientError', (err) => {
        this.stats.connectionErrors++;
        this.quiet.log('tls', (extra) => this.ctx.logger.warn({ reason: err.message, ...extra }, 'TLS handshake failed; connection closed'));
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
      this.quiet.log('max', (extra) => this.ctx.logger.warn({ peer, ...extra }, 'connection refused: max_connections reached'));
      socket.destroy();
      return;
    }
    this.stats.connectionsAccepted++;
    this.sockets.add(socket);
    socket.setNoDelay(true);
    if (this.config.idle_timeout > 0) {
      socket.setTimeout(this.config.idle_timeout, () => socket.destroy());
    }
    const origin: RecordOrigin = { source: this.name, from: peer, format: 'syslog', lenient: this.config.lenient, stats: this.stats };
    const parser = new RelpParser(this.config.max_message_size);
    let opened = false;
    let chain: Promise<void> = Promise.resolve();
    let pending = 0;
    let paused = false;
    let dead = false;
    const send = (b: Buffer) => {
      if (!dead && !socket.destroyed) socket.write(b);
    };
    const closeWith = (reason: string) => {
      if (dead) return;
      dead = true;
      this.stats.connectionErrors++;
      this.quiet.log('bad', (extra) => this.ctx.logger.warn({ peer, reason, ...extra }, 'closing RELP connection'));
      send(relpFrame(0, 'serverclose'));
      socket.end();
      setTimeout(() => socket.destroy(), 1000).unref();
    };

    const handle = (frames: RelpFrame[]) => {
      // Consecutive syslog frames are committed as one batch, then answered in order.
      let batch: RelpFrame[] = [];
      const flush = () => {
        if (batch.length === 0) return;
        const these = batch;
        batch = [];
        const now = Date.now();
        let bytes = 0;
        const records = these.map((f) => {
          bytes += f.data.length;
          return new LogRecord(f.data, now, origin);
        });
        this.stats.received += records.length;
        this.stats.receivedBytes += bytes;
        pending += these.length;
        if (pending > MAX_PENDING && !paused) {
          paused = true;
          socket.pause();
        }
        chain = chain.then(async () => {
          let answer = '200 OK';
          try {
            if (this.ctx.shedding?.()) throw new Error('load shedding: the server cannot write its queues');
            const d = this.ctx.router.dispatch(this.name, records, this.stats, 'keep_waiting');
            if (d?.accepted) await d.accepted;
            if (d?.committed) await d.committed;
          } catch (err) {
            answer = `500 not committed, send again: ${(err as Error).message}`.slice(0, 200);
          }
          for (const f of these) send(relpFrame(f.txnr, 'rsp', answer));
          pending -= these.length;
          if (paused && pending < MAX_PENDING / 2) {
            paused = false;
            socket.resume();
          }
        });
      };
      for (const f of frames) {
        if (f.command === 'syslog') {
          if (!opened) return closeWith('syslog before open');
          batch.push(f);
          continue;
        }
        flush();
        if (f.command === 'open') {
          opened = true;
          const txnr = f.txnr;
          chain = chain.then(() => send(relpFrame(txnr, 'rsp', `200 OK\n${RELP_OFFERS}`)));
        } else if (f.command === 'close') {
          const txnr = f.txnr;
          chain = chain.then(() => {
            send(relpFrame(txnr, 'rsp'));
            send(relpFrame(0, 'serverclose'));
            dead = true;
            socket.end();
          });
        } else {
          const txnr = f.txnr;
          chain = chain.then(() => send(relpFrame(txnr, 'rsp', `500 command ${f.command} not supported`)));
        }
      }
      flush();
    };

    socket.on('data', (chunk: Buffer) => {
      if (dead) return;
      const frames: RelpFrame[] = [];
      try {
        parser.push(chunk, frames);
      } catch (err) {
        handle(frames);
        return closeWith(err instanceof RelpError ? err.message : String(err));
      }
      handle(frames);
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      dead = true;
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
