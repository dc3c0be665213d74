import net from 'node:net';
import tls from 'node:tls';
import type { z } from 'zod';
import { RateLimitedLog } from '../../log.js';
import { listen, tlsServerOptions } from '../../net/sockets.js';
import { RELP_OFFERS, RelpError, relpFrame, RelpParser, type RelpFrame } from '../../protocol/relp.js';
import { LogRecord } from '../../record.js';
import { type SourceStats } from '../../stats.js';
import type { Source, SourceContext } from '../types.js';
import type { relpSourceSchema } from './config.js';
import { syslogOrigin } from '../types.js';

type Config = z.infer<typeof relpSourceSchema>;

/** Frames waiting for their commit on one connection before the server stops reading it. */
const MAX_PENDING = 4096;

/**
 * What an `open` offers that makes a session impossible, as librelp 1.11 answers it (an error
 * `rsp`, then `serverclose`), or null: no `syslog` among `commands`, or a `relp_version` that is
 * not a number. A higher version is answered with ours (0), as librelp does.
 */
export function refuseOpen(data: Buffer): string | null {
  let version: string | null = null;
  let commands: string[] = [];
  for (const line of data.toString('latin1').split('\n')) {
    const eq = line.indexOf('=');
    const name = eq < 0 ? line : line.slice(0, eq);
    const values =
      eq < 0
        ? []
        : line
            .slice(eq + 1)
            .split(',')
            .filter((v) => v.length > 0);
    if (name === 'relp_version') version = values[0] ?? '';
    else if (name === 'commands') commands = values;
  }
  if (version !== null && !/^\d+$/.test(version)) return '500 error: relp_version is not a number';
  if (!commands.includes('syslog')) return '500 required command not supported by client';
  return null;
}

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
    const origin = syslogOrigin(this.name, peer, this.config.lenient, this.ctx.counters);
    const parser = new RelpParser(this.config.max_message_size);
    let opened = false;
    // Batches are queued one after another (order, flow control), but their commits overlap: a
    // batch's answers wait only for its own commit and the answers before it, so a sender with a
    // window of any size is held by the fsync rate, not by one fsync per batch (group commit).
    let dispatchChain: Promise<void> = Promise.resolve();
    let answerChain: Promise<void> = Promise.resolve();
    let pending = 0;
    let paused = false;
    /** No more input is taken: the connection is being closed. */
    let closing = false;
    // Answers due in one turn of the event loop (a group commit answers many batches at once) leave
    // in one write.
    let corked = false;
    const uncork = () => {
      corked = false;
      socket.uncork();
    };
    const send = (b: Buffer) => {
      if (socket.destroyed || !socket.writable) return;
      if (!corked) {
        corked = true;
        socket.cork();
        process.nextTick(uncork);
      }
      socket.write(b);
    };
    /** After every answer already due: `serverclose`, then the connection ends. */
    const end = () => {
      flush();
      answerChain = answerChain.then(() => {
        send(relpFrame(0, 'serverclose'));
        socket.end();
        setTimeout(() => socket.destroy(), 1000).unref();
      });
    };
    const closeWith = (reason: string) => {
      if (closing) return;
      closing = true;
      this.stats.connectionErrors++;
      this.quiet.log('bad', (extra) => this.ctx.logger.warn({ peer, reason, ...extra }, 'closing RELP connection'));
      end();
    };
    const answer = (txnr: number, text: string) => {
      answerChain = answerChain.then(() => send(relpFrame(txnr, 'rsp', text)));
    };

    // Syslog frames that arrive together (in one read, or in reads of the same turn of the event
    // loop) are committed as one batch, then answered in order: a sender that writes one frame at a
    // time as its window frees still gives batches worth a commit.
    let batch: RelpFrame[] = [];
    let flushScheduled = false;
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
      const queued = dispatchChain.then(async () => {
        if (this.ctx.shedding?.()) throw new Error('load shedding: the server cannot write its queues');
        const d = this.ctx.router.dispatch(this.name, records, 'keep_waiting');
        if (d?.accepted) await d.accepted;
        return { committed: d?.committed };
      });
      dispatchChain = queued.then(
        () => undefined,
        () => undefined,
      );
      const committed = queued.then(async (q) => {
        await q.committed;
      });
      committed.catch(() => undefined);
      answerChain = answerChain.then(async () => {
        let text = '200 OK';
        try {
          await committed;
        } catch (err) {
          text = `500 not committed, send again: ${(err as Error).message}`.slice(0, 200);
        }
        for (const f of these) send(relpFrame(f.txnr, 'rsp', text));
        pending -= these.length;
        if (paused && pending < MAX_PENDING / 2) {
          paused = false;
          socket.resume();
        }
      });
    };
    const handle = (frames: RelpFrame[]) => {
      for (const f of frames) {
        if (closing) return;
        if (f.command === 'syslog') {
          if (!opened) return closeWith('syslog before open');
          batch.push(f);
          continue;
        }
        flush();
        if (f.command === 'open') {
          if (opened) {
            answer(f.txnr, '200 connection already open - ignored');
            continue;
          }
          const refused = refuseOpen(f.data);
          if (refused) {
            answer(f.txnr, refused);
            closeWith(`open refused: ${refused}`);
            return;
          }
          opened = true;
          answer(f.txnr, `200 OK\n${RELP_OFFERS}`);
        } else if (f.command === 'close') {
          answer(f.txnr, '');
          closing = true;
          end();
          return;
        } else {
          answer(f.txnr, `500 command ${f.command} not supported`);
        }
      }
      if (batch.length > 0 && !flushScheduled) {
        flushScheduled = true;
        setImmediate(() => {
          flushScheduled = false;
          flush();
        });
      }
    };

    socket.on('data', (chunk: Buffer) => {
      if (closing) return;
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
      closing = true;
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
