import { open, readFile, mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { RateLimitedLog, type Logger } from '../log.js';
import type { DestinationQueue } from '../queue/types.js';
import { isPosition } from '../protocol/record-codec.js';
import { LogRecord, type RecordOrigin } from '../record.js';
import { SourceCounters } from '../stats.js';

/**
 * Records a destination sets aside rather than retry for ever: one it can never deliver (a name
 * the file system refuses, a message it cannot encode, a receiver that closes the session each time
 * it is sent), one that failed `max_record_attempts` times, one older than the queue's `max_age`.
 */
export interface DeadLetter {
  record: LogRecord;
  /** Why, as a short token: `ENAMETOOLONG`, `encoding`, `attempts`, `receiver_closed_session`, `expired`. */
  reason: string;
  /** The last error, in words. */
  error: string;
  /** Delivery attempts made (0 for a record that expired before one). */
  attempts: number;
}

/** Where set-aside records go. `put` resolves once they are durable there (or dropped and counted). */
export interface DeadLetterSink {
  readonly describe: string;
  /** Counts into `stats` (the destination's): every record by reason, and those dropped. */
  put(letters: DeadLetter[], stats: DeadLetterStats): Promise<void>;
}

/** The counters a destination keeps for what it set aside. */
export interface DeadLetterStats {
  /** Records set aside, by reason. */
  deadLettered: Record<string, number>;
  /** Of those, records dropped because no dead-letter target could take them (`dead_letter: drop`). */
  deadLetterDropped: number;
}

/** A dead letter as one JSON line (the documented format: docs/operations.md). */
export interface DeadLetterLine {
  time: string;
  destination: string;
  reason: string;
  error: string;
  attempts: number;
  source: string;
  from: string;
  received_at: string;
  stream?: string;
  stream_pos?: number;
  /** The positions it had with earlier readers (LogRecord.earlier). */
  earlier?: [string, number][];
  /** The message as received, when it is valid UTF-8; else `message_base64`. */
  message?: string;
  message_base64?: string;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

export function toLine(destination: string, l: DeadLetter, now = Date.now()): DeadLetterLine {
  const r = l.record;
  const out: DeadLetterLine = {
    time: new Date(now).toISOString(),
    destination,
    reason: l.reason,
    error: l.error.slice(0, 1000),
    attempts: l.attempts,
    source: r.origin.source,
    from: r.origin.from,
    received_at:
      Number.isFinite(r.receivedAt) && Math.abs(r.receivedAt) < 8.64e15
        ? new Date(r.receivedAt).toISOString()
        : String(r.receivedAt),
  };
  if (r.stream !== undefined) {
    out.stream = r.stream;
    out.stream_pos = r.streamPos;
    if (r.earlier) out.earlier = r.earlier.map(([k, p]) => [k, p]);
  }
  try {
    out.message = utf8.decode(r.raw);
  } catch {
    out.message_base64 = r.raw.toString('base64');
  }
  return out;
}

/**
 * The record a dead-letter line holds, as it was received (origin and stream kept) for sending
 * again. `counters`: where what happens to it is counted (the offline `sluice queue` has its own).
 */
export function fromLine(l: DeadLetterLine, counters = new SourceCounters()): LogRecord {
  const origin: RecordOrigin = { source: l.source, from: l.from, format: 'syslog', lenient: true, counters };
  const raw = l.message !== undefined ? Buffer.from(l.message) : Buffer.from(l.message_base64 ?? '', 'base64');
  const at = Date.parse(l.received_at);
  const r = new LogRecord(raw, Number.isFinite(at) ? at : Date.now(), origin);
  if (l.stream !== undefined && l.stream_pos !== undefined) {
    r.setStream(l.stream, l.stream_pos);
    const earlier = Array.isArray(l.earlier) ? l.earlier : [];
    r.setEarlier(
      earlier.filter((e): e is [string, number] => Array.isArray(e) && typeof e[0] === 'string' && isPosition(e[1])),
    );
  }
  return r;
}

/** Every dead letter in a file, oldest first; lines that do not parse (a crash mid-append) are skipped and counted. */
export async function readDeadLetters(file: string): Promise<{ letters: DeadLetterLine[]; unreadable: number }> {
  const text = await readFile(file, 'utf8');
  const letters: DeadLetterLine[] = [];
  let unreadable = 0;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    try {
      const o = JSON.parse(line) as DeadLetterLine;
      if (typeof o.reason !== 'string' || typeof o.destination !== 'string') throw new Error('not a dead letter');
      letters.push(o);
    } catch {
      unreadable++;
    }
  }
  return { letters, unreadable };
}

/** The dead-letter file of a destination under `state_dir`. */
export function deadLetterFile(stateDir: string, destination: string): string {
  return path.join(stateDir, 'dead-letters', `${destination}.jsonl`);
}

/** Beyond this a dead-letter file takes no more: the records are dropped and counted (and logged). */
export const DEAD_LETTER_FILE_MAX = 256 * 1024 * 1024;

function count(stats: DeadLetterStats, letters: DeadLetter[]): void {
  for (const l of letters) stats.deadLettered[l.reason] = (stats.deadLettered[l.reason] ?? 0) + 1;
}

function logSetAside(log: RateLimitedLog, logger: Logger, letters: DeadLetter[], where: string): void {
  const reasons = new Set(letters.map((l) => l.reason));
  for (const reason of reasons) {
    const l = letters.find((x) => x.reason === reason)!;
    log.log(`dead:${reason}`, (extra) =>
      logger.error(
        {
          reason,
          error: l.error,
          attempts: l.attempts,
          records: letters.filter((x) => x.reason === reason).length,
          to: where,
          ...extra,
        },
        'records set aside as dead letters: they cannot be delivered',
      ),
    );
  }
}

/**
 * The default: JSON lines appended to `<state_dir>/dead-letters/<destination>.jsonl`, fsynced
 * before the records leave the queue.
 */
export class FileDeadLetters implements DeadLetterSink {
  private readonly log = new RateLimitedLog(10_000);
  private size = -1;
  readonly describe: string;

  constructor(
    readonly file: string,
    private readonly destination: string,
    private readonly logger: Logger,
    private readonly maxBytes = DEAD_LETTER_FILE_MAX,
  ) {
    this.describe = `file ${file}`;
  }

  async put(letters: DeadLetter[], stats: DeadLetterStats): Promise<void> {
    if (letters.length === 0) return;
    const now = Date.now();
    const text = Buffer.from(letters.map((l) => `${JSON.stringify(toLine(this.destination, l, now))}\n`).join(''));
    await mkdir(path.dirname(this.file), { recursive: true });
    if (this.size < 0)
      this.size = await stat(this.file).then(
        (s) => s.size,
        () => 0,
      );
    if (this.size + text.length > this.maxBytes) {
      stats.deadLetterDropped += letters.length;
      count(stats, letters);
      this.log.log('full', (extra) =>
        this.logger.error(
          { file: this.file, max_bytes: this.maxBytes, records: letters.length, ...extra },
          'dead-letter file is full: set-aside records dropped (counted as dead_letter_dropped); move the file away ' +
            'to keep more',
        ),
      );
      return;
    }
    const h = await open(this.file, 'a', 0o640);
    try {
      await h.write(text);
      await h.datasync();
    } finally {
      await h.close();
    }
    this.size += text.length;
    count(stats, letters);
    logSetAside(this.log, this.logger, letters, this.file);
  }
}

/** `dead_letter: drop`: counted (`dead_letter_dropped`) and logged, once a reason every 10 s. */
export class DropDeadLetters implements DeadLetterSink {
  private readonly log = new RateLimitedLog(10_000);
  readonly describe = 'drop';

  constructor(private readonly logger: Logger) {}

  async put(letters: DeadLetter[], stats: DeadLetterStats): Promise<void> {
    count(stats, letters);
    stats.deadLetterDropped += letters.length;
    logSetAside(this.log, this.logger, letters, 'dropped (dead_letter: drop)');
  }
}

/**
 * `dead_letter: <destination>`: each record goes, as its dead-letter JSON line (reason and all),
 * into that destination's queue as a plain-text record; resolves once the queue has committed it.
 */
export class DestinationDeadLetters implements DeadLetterSink {
  private readonly log = new RateLimitedLog(10_000);
  readonly describe: string;
  private readonly origin: RecordOrigin;

  constructor(
    private readonly target: string,
    private readonly queueOf: (name: string) => DestinationQueue | undefined,
    private readonly destination: string,
    private readonly logger: Logger,
    hostname: string,
    counters: SourceCounters,
  ) {
    this.describe = `destination ${target}`;
    this.origin = {
      source: `dead_letter:${destination}`,
      from: destination,
      format: 'text',
      lenient: false,
      counters,
      hostname,
      appName: 'sluice-dead-letter',
      facility: 5,
      severity: 3,
    };
  }

  async put(letters: DeadLetter[], stats: DeadLetterStats): Promise<void> {
    if (letters.length === 0) return;
    const q = this.queueOf(this.target);
    if (!q) throw new Error(`dead-letter destination ${this.target} is not running`);
    const now = Date.now();
    const records = letters.map(
      (l) => new LogRecord(Buffer.from(JSON.stringify(toLine(this.destination, l, now))), now, this.origin),
    );
    if (q.isFull()) await q.waitForSpace();
    await q.push(records);
    count(stats, letters);
    logSetAside(this.log, this.logger, letters, `destination ${this.target}`);
  }
}

/** What a destination is told about setting records aside (see SetAsideOptions). */
interface SetAsideContext {
  logger: Logger;
  setAside?: { sink: DeadLetterSink; maxAge: number; maxRecordAttempts: number };
}

/** `max_record_attempts` when none is configured. */
export const DEFAULT_MAX_RECORD_ATTEMPTS = 5;

/**
 * A destination's way to set records aside: its configured sink (or, in tools and orphan drains
 * that have none, dropped and counted), counted in its stats, and its `max_age` and
 * `max_record_attempts`.
 */
export class SetAside {
  private readonly sink: DeadLetterSink;

  constructor(
    private readonly ctx: SetAsideContext,
    private readonly stats: () => DeadLetterStats,
  ) {
    this.sink = ctx.setAside?.sink ?? new DropDeadLetters(ctx.logger);
  }

  get maxRecordAttempts(): number {
    return this.ctx.setAside?.maxRecordAttempts ?? DEFAULT_MAX_RECORD_ATTEMPTS;
  }

  put(letters: DeadLetter[]): Promise<void> {
    return this.sink.put(letters, this.stats());
  }

  /** The records older than `max_age` (none when it is off), as dead letters with reason `expired`. */
  expired(records: LogRecord[]): DeadLetter[] {
    const before = this.expiredBefore();
    if (before === -Infinity) return []; // the common case, on every batch: nothing to look at
    return this.asExpired(records.filter((r) => r.receivedAt < before));
  }

  /** Of records oldest first, the expired ones at the head, up to the first that is not. */
  expiredHead(records: LogRecord[]): DeadLetter[] {
    const before = this.expiredBefore();
    let n = 0;
    while (n < records.length && records[n]!.receivedAt < before) n++;
    return this.asExpired(records.slice(0, n));
  }

  /** Records received before this have expired; -Infinity while `max_age` is off. */
  private expiredBefore(): number {
    const maxAge = this.ctx.setAside?.maxAge ?? 0;
    return maxAge > 0 ? Date.now() - maxAge : -Infinity;
  }

  private asExpired(records: LogRecord[]): DeadLetter[] {
    const error = `older than max_age (${this.ctx.setAside?.maxAge ?? 0} ms)`;
    return records.map((record) => ({ record, reason: 'expired', error, attempts: 0 }));
  }
}
