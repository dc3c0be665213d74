import type net from 'node:net';
import type { Dispatch } from '../../pipeline/router.js';
import { RELP_OFFERS, RelpError, relpFrame, relpResponses, RelpParser, type RelpFrame } from '../../protocol/relp.js';
import { LogRecord, type RecordOrigin } from '../../record.js';
import type { SourceStats } from '../../stats.js';

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

export interface RelpSessionOptions {
  maxMessageSize: number;
  /** The source's counters: received records and bytes, connection errors. */
  stats: SourceStats;
  /** Queues a batch (throws when the server cannot take it now: the batch is answered with an error). */
  dispatch(records: LogRecord[]): Dispatch | undefined;
  /** The connection is being closed for `reason` (a protocol error): log it. */
  closing(reason: string): void;
}

/**
 * One RELP connection on the server side: frames in, `syslog` batches queued in order, each
 * answered `200 OK` once its commit is durable (or an error, so the client sends it again), other
 * commands answered as librelp does, and `serverclose` before the connection ends on an error.
 */
export class RelpServerSession {
  private readonly parser: RelpParser;
  private opened = false;
  /** No more input is taken: the connection is being closed. */
  private closing = false;
  // Batches are queued one after another (order, flow control), but their commits overlap: a
  // batch's answers wait only for its own commit and the answers before it, so a sender with a
  // window of any size is held by the fsync rate, not by one fsync per batch (group commit).
  private dispatchChain: Promise<void> = Promise.resolve();
  private answerChain: Promise<void> = Promise.resolve();
  private pending = 0;
  private paused = false;
  /** Answers due in one turn of the event loop (a group commit answers many batches at once) leave in one write. */
  private corked = false;
  // Syslog frames that arrive together (in one read, or in reads of the same turn of the event
  // loop) are committed as one batch, then answered in order: a sender that writes one frame at a
  // time as its window frees still gives batches worth a commit.
  private batch: RelpFrame[] = [];
  private flushScheduled = false;

  constructor(
    private readonly socket: net.Socket,
    private readonly origin: RecordOrigin,
    private readonly options: RelpSessionOptions,
  ) {
    this.parser = new RelpParser(options.maxMessageSize);
  }

  onData(chunk: Buffer): void {
    if (this.closing) return;
    const frames: RelpFrame[] = [];
    try {
      this.parser.push(chunk, frames);
    } catch (err) {
      this.handle(frames);
      this.closeWith(err instanceof RelpError ? err.message : String(err));
      return;
    }
    this.handle(frames);
  }

  /** The socket closed: nothing more is read or answered. */
  closed(): void {
    this.closing = true;
  }

  private handle(frames: RelpFrame[]): void {
    for (const f of frames) {
      if (this.closing) return;
      if (f.command === 'syslog') {
        if (!this.opened) {
          this.closeWith('syslog before open');
          return;
        }
        this.batch.push(f);
        continue;
      }
      this.flush();
      if (f.command === 'open') {
        if (this.opened) {
          this.answer(f.txnr, '200 connection already open - ignored');
          continue;
        }
        const refused = refuseOpen(f.data);
        if (refused) {
          this.answer(f.txnr, refused);
          this.closeWith(`open refused: ${refused}`);
          return;
        }
        this.opened = true;
        this.answer(f.txnr, `200 OK\n${RELP_OFFERS}`);
      } else if (f.command === 'close') {
        this.answer(f.txnr, '');
        this.closing = true;
        this.end();
        return;
      } else {
        this.answer(f.txnr, `500 command ${f.command} not supported`);
      }
    }
    if (this.batch.length > 0 && !this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        this.flush();
      });
    }
  }

  /** Queues the batch gathered so far; its answers follow every answer before them. */
  private flush(): void {
    if (this.batch.length === 0) return;
    const these = this.batch;
    this.batch = [];
    const now = Date.now();
    let bytes = 0;
    const records = these.map((f) => {
      bytes += f.data.length;
      return new LogRecord(f.data, now, this.origin);
    });
    this.options.stats.received += records.length;
    this.options.stats.receivedBytes += bytes;
    this.pending += these.length;
    if (this.pending > MAX_PENDING && !this.paused) {
      this.paused = true;
      this.socket.pause();
    }
    const queued = this.dispatchChain.then(async () => {
      const d = this.options.dispatch(records);
      if (d?.accepted) await d.accepted;
      return { committed: d?.committed };
    });
    this.dispatchChain = queued.then(
      () => undefined,
      () => undefined,
    );
    const committed = queued.then(async (q) => {
      await q.committed;
    });
    committed.catch(() => undefined);
    this.answerChain = this.answerChain.then(async () => {
      let text = '200 OK';
      try {
        await committed;
      } catch (err) {
        text = `500 not committed, send again: ${(err as Error).message}`.slice(0, 200);
      }
      this.send(
        relpResponses(
          these.map((f) => f.txnr),
          text,
        ),
      );
      this.pending -= these.length;
      if (this.paused && this.pending < MAX_PENDING / 2) {
        this.paused = false;
        this.socket.resume();
      }
    });
  }

  private answer(txnr: number, text: string): void {
    this.answerChain = this.answerChain.then(() => this.send(relpFrame(txnr, 'rsp', text)));
  }

  private send(b: Buffer): void {
    const socket = this.socket;
    if (socket.destroyed || !socket.writable) return;
    if (!this.corked) {
      this.corked = true;
      socket.cork();
      process.nextTick(() => {
        this.corked = false;
        socket.uncork();
      });
    }
    socket.write(b);
  }

  /** After every answer already due: `serverclose`, then the connection ends. */
  private end(): void {
    this.flush();
    this.answerChain = this.answerChain.then(() => {
      this.send(relpFrame(0, 'serverclose'));
      this.socket.end();
      setTimeout(() => this.socket.destroy(), 1000).unref();
    });
  }

  private closeWith(reason: string): void {
    if (this.closing) return;
    this.closing = true;
    this.options.stats.connectionErrors++;
    this.options.closing(reason);
    this.end();
  }
}
