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
 * The messages a nats source committed to its queues, written before their acknowledgement is
 * sent. A process killed after its commit but before JetStream heard the ack finds them here at
 * its next start: it acknowledges again those still within `ack_wait` (so that JetStream does not
 * deliver them to another process, which would write them a second time), and takes any of them
 * delivered again as a duplicate.
 *
 * One line per message, `<at> <seq> <reply>`, after a first line naming the stream's creation
 * time: a stream made anew numbers from 1 again, and its old numbers mean nothing. Appended with
 * plain writes (they survive the process, not the host), and rewritten with only the recent lines
 * once enough were appended.
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

  /** What the log holds for the stream created at `created` (nothing when it was written for another). */
  load(created: string): Committed[] {
    if (!existsSync(this.file)) return [];
    const lines = readFileSync(this.file, 'utf8').split('\n');
    if (lines[0] !== `stream-created ${created}`) return [];
    const out: Committed[] = [];
    for (const l of lines.slice(1)) {
      const m = /^(\d+) (\d+) (\S+)$/.exec(l);
      if (m) out.push({ at: Number(m[1]), seq: Number(m[2]), reply: m[3]! });
    }
    return out;
  }

  /** Starts the log anew for the stream created at `created`, keeping `recent` (the lines of `load` still wanted). */
  open(created: string, recent: Committed[]): void {
    this.close();
    mkdirSync(path.dirname(this.file), { recursive: true });
    const tmp = `${this.file}.tmp`;
    const fd = openSync(tmp, 'w', 0o600);
    writeSync(fd, `stream-created ${created}\n${recent.map(line).join('')}`);
    closeSync(fd);
    renameSync(tmp, this.file);
    this.fd = openSync(this.file, 'a', 0o600);
    this.appended = 0;
    this.created = created;
  }

  /**
   * Appends `entries`; once the log has grown enough, rewrites it with what `recent()` remembers
   * (younger than `keepMs`) and `entries` themselves, whether or not `recent()` has them yet.
   */
  append(entries: Committed[], recent: () => Committed[]): void {
    if (this.fd === null || entries.length === 0) return;
    writeSync(this.fd, entries.map(line).join(''));
    this.appended += entries.length;
    if (this.appended < this.rewriteEvery) return;
    const since = Date.now() - this.keepMs;
    const kept = new Map<number, Committed>();
    for (const c of recent()) if (c.at > since) kept.set(c.seq, c);
    for (const c of entries) kept.set(c.seq, c);
    this.open(this.created, [...kept.values()]);
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

const line = (c: Committed) => `${c.at} ${c.seq} ${c.reply}\n`;
