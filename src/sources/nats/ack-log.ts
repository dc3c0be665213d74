import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import path from 'node:path';

/** A message this consumer committed to its queues: its stream sequence and the subject that acknowledges it. */
export interface Committed {
  /** When it was committed (ms since the epoch). */
  at: number;
  seq: number;
  reply: string;
}

/**
 * A message handed to the queues whose commit was not heard of yet: the record positions it was
 * given (one per time it was handed on, in this process or ones that crashed before they knew), and
 * the subject of its latest delivery.
 */
export interface Intent {
  /**
   * Since when JetStream counts it in progress, as far as this side knows (ms since the epoch): its
   * delivery as seen here, or the last in-progress report JetStream confirmed. JetStream gives it to
   * another process once `ack_wait` has passed since.
   */
  at: number;
  seq: number;
  reply: string;
  positions: [stream: string, pos: number][];
}

/**
 * What a nats source did with its messages, for the process that follows it after a crash:
 *
 * - **before** a batch is handed to the queues, the record position each message gets (an intent);
 * - **before** an acknowledgement is sent, that the message was committed.
 *
 * A process killed after its commit but before JetStream heard the ack finds the commit here at its
 * next start: it acknowledges again those still within `ack_wait` (so that JetStream does not
 * deliver them to another process, which would write them a second time), and takes any of them
 * delivered again as a duplicate. A process killed between handing a batch on and hearing of its
 * commit cannot know whether its queue has it: the next one reads those messages again and hands
 * them on with the positions they had (`LogRecord.earlier`), so a deduplicating file writes each
 * once, whether or not the first copy reached it.
 *
 * Lines, after a first one naming the stream's creation time (a stream made anew numbers from 1
 * again, and its old numbers mean nothing):
 * - `<at> <seq> <reply>`: committed;
 * - `p <at> <stream> <firstPos> <seq> <reply> [<seq> <reply> ...]`: handed on, the messages getting
 *   positions from `firstPos` up, in progress at JetStream since `at`;
 * - `w <at> <seq> [<seq> ...]`: JetStream confirmed an in-progress report for these messages sent at
 *   `at` (their `ack_wait` runs from then).
 * Appended with plain writes (they survive the process, not the host), and rewritten with only the
 * recent lines once enough were appended.
 */
export class AckLog {
  private fd: number | null = null;
  private appended = 0;
  /** The stream creation time the open log is for. */
  private created = '';

  constructor(
    private readonly file: string,
    /** Lines older than this are dropped when the log is rewritten. */
    private readonly keepMs: number,
    /** Lines appended before a rewrite. */
    private readonly rewriteEvery = 200_000,
  ) {}

  /**
   * What the log holds for the stream created at `created` (nothing when it was written for
   * another): the commits, and the messages handed on whose commit is not in it.
   */
  load(created: string): { committed: Committed[]; intents: Intent[] } {
    if (!existsSync(this.file)) return { committed: [], intents: [] };
    const lines = readFileSync(this.file, 'utf8').split('\n');
    if (lines[0] !== `stream-created ${created}`) return { committed: [], intents: [] };
    const committed: Committed[] = [];
    const intents = new Map<number, Intent>();
    for (const l of lines.slice(1)) {
      const m = /^(\d+) (\d+) (\S+)$/.exec(l);
      if (m) {
        committed.push({ at: Number(m[1]), seq: Number(m[2]), reply: m[3]! });
        continue;
      }
      const f = l.split(' ');
      if (f[0] === 'w') {
        const at = Number(f[1]);
        if (!Number.isSafeInteger(at)) continue;
        for (const seq of f.slice(2)) {
          const had = intents.get(Number(seq));
          if (had && had.at < at) had.at = at;
        }
        continue;
      }
      if (f[0] !== 'p' || f.length < 6 || f.length % 2 !== 0) continue; // a line cut short by the crash
      const at = Number(f[1]);
      const stream = f[2]!;
      let pos = Number(f[3]);
      if (!Number.isSafeInteger(at) || !Number.isSafeInteger(pos)) continue;
      for (let i = 4; i < f.length; i += 2, pos++) {
        const seq = Number(f[i]);
        if (!Number.isSafeInteger(seq)) break;
        const had = intents.get(seq);
        if (had) {
          had.positions.push([stream, pos]);
          had.at = at;
          had.reply = f[i + 1]!;
        } else intents.set(seq, { at, seq, reply: f[i + 1]!, positions: [[stream, pos]] });
      }
    }
    for (const c of committed) intents.delete(c.seq);
    return { committed, intents: [...intents.values()] };
  }

  /** Starts the log anew for the stream created at `created`, keeping the recent commits and intents of `load`. */
  open(created: string, committed: Committed[], intents: Intent[]): void {
    this.close();
    mkdirSync(path.dirname(this.file), { recursive: true });
    const tmp = `${this.file}.tmp`;
    const fd = openSync(tmp, 'w', 0o600);
    const lines = [`stream-created ${created}\n`, ...committed.map(committedLine)];
    for (const i of intents) for (const [stream, pos] of i.positions) lines.push(intentLine(i.at, stream, pos, [i]));
    writeSync(fd, lines.join(''));
    closeSync(fd);
    renameSync(tmp, this.file);
    this.fd = openSync(this.file, 'a', 0o600);
    this.appended = 0;
    this.created = created;
  }

  /** Before a batch is handed on: its messages get positions `firstPos`, `firstPos + 1`, ... of `stream`. */
  intend(at: number, stream: string, firstPos: number, messages: { seq: number; reply: string }[]): void {
    if (this.fd === null || messages.length === 0) return;
    writeSync(this.fd, intentLine(at, stream, firstPos, messages));
    this.appended += messages.length;
  }

  /** JetStream confirmed the in-progress reports sent at `at` for these messages. */
  working(at: number, seqs: number[]): void {
    if (this.fd === null || seqs.length === 0) return;
    writeSync(this.fd, `w ${at} ${seqs.join(' ')}\n`);
    this.appended += seqs.length;
  }

  /**
   * Appends `entries`; once the log has grown enough, rewrites it with what `recent()` remembers
   * (younger than `keepMs`) and `entries` themselves, whether or not `recent()` has them yet.
   */
  append(entries: Committed[], recent: () => { committed: Committed[]; intents: Intent[] }): void {
    if (this.fd === null || entries.length === 0) return;
    writeSync(this.fd, entries.map(committedLine).join(''));
    this.appended += entries.length;
    if (this.appended < this.rewriteEvery) return;
    const since = Date.now() - this.keepMs;
    const now = recent();
    const kept = new Map<number, Committed>();
    for (const c of now.committed) if (c.at > since) kept.set(c.seq, c);
    for (const c of entries) kept.set(c.seq, c);
    const intents = now.intents.filter((i) => i.at > since && !kept.has(i.seq));
    this.open(this.created, [...kept.values()], intents);
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

const committedLine = (c: Committed) => `${c.at} ${c.seq} ${c.reply}\n`;

function intentLine(at: number, stream: string, firstPos: number, messages: { seq: number; reply: string }[]): string {
  let s = `p ${at} ${stream} ${firstPos}`;
  for (const m of messages) s += ` ${m.seq} ${m.reply}`;
  return `${s}\n`;
}
