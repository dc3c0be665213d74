import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { z } from 'zod';
import { RateLimitedLog } from '../../log.js';
import { ExponentialBackoff } from '../../net/backoff.js';
import { FACILITY_NAMES, SEVERITY_NAMES } from '../../parser/names.js';
import type { Dispatch } from '../../pipeline/router.js';
import { LogRecord, type RecordOrigin } from '../../record.js';
import type { SourceStats } from '../../stats.js';
import type { Source, SourceContext } from '../types.js';
import type { journaldSourceSchema } from './config.js';
import { cursorPosition, ENTRY_FIELDS, type EntryOptions, entryToSyslog } from './entry.js';
import { ExportFormatError, ExportReader, type JournalEntry } from './export-format.js';
import { JournalFilesReader } from './journal-file.js';
import { journalArgs, journalctlOnce, selectionArgs, selectionMatch } from './journalctl.js';
import { OrderedCommits } from '../ordered-commits.js';
import { CheckpointFile } from '../checkpoint-file.js';

type Config = z.output<typeof journaldSourceSchema>;

/** Batches handed on and not yet committed, at most, before reading pauses. */
const MAX_UNCOMMITTED = 32;
/** journalctl that ran this long before it exited starts again without waiting long. */
const HEALTHY_RUN_MS = 30_000;
/** Entries read from the files at a time (catch_up: files) before other work gets a turn. */
const CATCH_UP_BATCH = 500;

/** `<state_dir>/checkpoints/<source>.journal.json`. */
interface CursorFile {
  version: 1;
  cursor: string;
}

/**
 * Follows the systemd journal: `journalctl --follow --output=export`, read as a stream of entries,
 * each made an RFC 5424 record (see entryToSyslog). Its checkpoint is the cursor of the last entry
 * every queue has committed: written atomically under `state_dir`, and where a restart, a crash or
 * a journalctl that exited resumes (`--after-cursor`). A batch a queue could not write is read again
 * from that cursor.
 */
export class JournaldSource implements Source {
  readonly name: string;
  readonly stats: SourceStats;
  private readonly checkpoint: CheckpointFile<CursorFile>;
  private readonly origin: RecordOrigin;
  private readonly entryOptions: EntryOptions;
  /** The fields a record is made of: the reader keeps these and reads past the others. */
  private readonly wantedFields: ReadonlySet<string>;
  private readonly quiet = new RateLimitedLog(5000);
  private readonly backoff = new ExponentialBackoff(500, 30_000);
  private child: ChildProcessWithoutNullStreams | null = null;
  /** Bumped at every (re)start of journalctl: output and commits of an earlier run are ignored. */
  private generation = 0;
  /** The cursor every queue has committed up to: the checkpoint. */
  private readonly commits = new OrderedCommits<string | null>(null, () => this.readAgain());
  /** The cursor of the last entry handed on: where a restarted journalctl resumes. */
  private handed: string | null = null;
  private saved: string | null = null;
  /** Reading is paused: waiting for the queues to take a batch, or for commits to catch up. */
  private waits = 0;
  private stopped = false;
  private restartTimer: NodeJS.Timeout | null = null;
  private checkpointTimer: NodeJS.Timeout | null = null;
  private truncatedSeen = 0;
  /** The last sequence id seen, and its stream (see streamOf). */
  private lastSeqnumId = '';
  private lastStream = '';

  constructor(
    private readonly config: Config,
    private readonly ctx: SourceContext,
  ) {
    this.name = ctx.name;
    this.stats = ctx.counters.of(ctx.name);
    this.checkpoint = new CheckpointFile<CursorFile>(ctx, 'journal', 'the journal cursor', this.quiet);
    this.origin = { source: ctx.name, from: 'journal', format: 'syslog', lenient: false, counters: ctx.counters };
    this.wantedFields = new Set([...ENTRY_FIELDS, ...config.fields]);
    this.entryOptions = {
      hostname: ctx.hostname,
      facility: FACILITY_NAMES.indexOf(config.facility),
      severity: SEVERITY_NAMES.indexOf(config.severity),
      fields: config.fields,
    };
  }

  describe(): string {
    const where = this.config.directory ?? (this.config.namespace ? `namespace ${this.config.namespace}` : 'system');
    return `journal (${where}${this.config.units.length ? `, units ${this.config.units.join(', ')}` : ''})`;
  }

  async start(): Promise<void> {
    this.commits.committed = this.handed = this.saved = this.loadCursor();
    await this.launch();
    this.checkpointTimer = setInterval(() => void this.saveCheckpoint(), this.config.checkpoint_interval);
  }

  private loadCursor(): string | null {
    try {
      const data = this.checkpoint.read() as CursorFile | null;
      if (data === null) return null;
      if (data.version !== 1 || typeof data.cursor !== 'string' || !cursorPosition(data.cursor))
        throw new Error('no valid cursor');
      return data.cursor;
    } catch (err) {
      this.ctx.logger.error(
        { file: this.checkpoint.file, err: (err as Error).message, read_from: this.config.read_from },
        'journal cursor file is damaged; starting as configured by read_from',
      );
      return null;
    }
  }

  /** Starts journalctl after the handed-on cursor (or as read_from says); failures schedule another try. */
  private async launch(): Promise<void> {
    if (this.stopped) return;
    const generation = ++this.generation;
    await this.catchUp(generation);
    if (this.stopped || generation !== this.generation) return;
    let args: string[];
    try {
      args = await this.followArgs();
    } catch (err) {
      if (generation === this.generation) this.failed(generation, `cannot run ${this.config.journalctl}`, err as Error);
      return;
    }
    if (this.stopped || generation !== this.generation) return;
    const startedAt = Date.now();
    let child: ChildProcessWithoutNullStreams;
    try {
      child = spawn(this.config.journalctl, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    } catch (err) {
      this.failed(generation, `cannot run ${this.config.journalctl}`, err as Error);
      return;
    }
    child.stdin.end();
    this.child = child;
    this.waits = 0;
    const reader = new ExportReader(this.config.max_message_size, this.wantedFields);
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-2000);
    });
    child.stdout.on('data', (chunk: Buffer) => {
      if (generation !== this.generation) return;
      const entries: JournalEntry[] = [];
      try {
        reader.push(chunk, entries);
      } catch (err) {
        if (!(err instanceof ExportFormatError)) throw err;
        // What came before is handed on; journalctl starts again after it.
        this.handOn(entries);
        this.failed(generation, 'journalctl wrote something that is not the export format', err);
        return;
      }
      if (reader.oversizedFields !== this.truncatedSeen) {
        this.stats.truncated += reader.oversizedFields - this.truncatedSeen;
        this.truncatedSeen = reader.oversizedFields;
      }
      const wait = this.handOn(entries);
      if (wait) this.pauseUntil(wait, generation);
    });
    let ended = false;
    const end = (why: string, err?: Error) => {
      if (ended) return;
      ended = true;
      if (this.child === child) this.child = null;
      if (generation !== this.generation || this.stopped) return;
      if (Date.now() - startedAt > HEALTHY_RUN_MS) this.backoff.reset();
      this.failed(generation, why, err ?? new Error(stderr.trim() || why));
    };
    child.once('error', (err) => end(`cannot run ${this.config.journalctl}`, err));
    child.once('close', (code, signal) => end(`journalctl exited (${signal ?? `code ${code}`})`));
  }

  /** The arguments of the follow run: after the handed-on cursor, after the journal's end, or from its start. */
  private async followArgs(): Promise<string[]> {
    // journalctl prints every field (twenty or so: command line, capabilities, cgroup...); the
    // reader keeps only those records are made of. Asked to print only those
    // (`--output-fields`), journalctl itself spent 1.7 times as long.
    const base = ['--follow', '--output=export', '--no-pager', '--no-tail', ...selectionArgs(this.config)];
    if (this.handed !== null) {
      const at = await this.checkCursor(this.handed);
      // `--after-cursor` skips one entry whatever it is: where the cursor's own entry is gone, the
      // first entry there is is taken with `--cursor`.
      if (at === 'there') return [...base, `--after-cursor=${this.handed}`];
      if (at !== 'unusable') return [...base, `--cursor=${at}`];
      this.commits.committed = this.handed = null;
    }
    if (this.config.read_from === 'end') {
      // The first start: the journal's last entry (of those selected) is where reading starts. Its
      // cursor is saved at once, so that a restart before any new entry does not skip what came
      // meanwhile.
      const last = await journalctlOnce(this.config.journalctl, [...selectionArgs(this.config), '--lines=1'], 1);
      if (last.code !== null && last.code !== 0) throw new Error(last.stderr || `journalctl exited with ${last.code}`);
      const cursor = last.entries[0]?.fields.get('__CURSOR')?.toString();
      if (cursor) {
        this.commits.committed = this.handed = cursor;
        await this.saveCheckpoint();
        return [...base, `--after-cursor=${cursor}`];
      }
    }
    return base;
  }

  /**
   * Whether the entry of `cursor` is still in the journal: `there`; else the cursor of the oldest
   * entry after it (the journal was vacuumed, or rotated past it while sluice was stopped), after
   * saying at error level how far that jumps and counting the entries lost in between; or
   * `unusable` when journalctl cannot seek to it at all (a cursor of another journal).
   */
  private async checkCursor(cursor: string): Promise<string> {
    const at = await journalctlOnce(this.config.journalctl, [...journalArgs(this.config), `--cursor=${cursor}`], 1);
    const first = at.entries[0]?.fields.get('__CURSOR')?.toString();
    if (at.code !== null && at.code !== 0 && !first) {
      this.ctx.logger.error(
        { cursor, err: at.stderr, read_from: this.config.read_from },
        'the journal does not take the saved cursor; starting as configured by read_from',
      );
      return 'unusable';
    }
    if (!first || first === cursor) return 'there';
    const was = cursorPosition(cursor);
    const now = cursorPosition(first);
    const skipped = was && now && was.seqnumId === now.seqnumId ? Math.max(0, now.seqnum - was.seqnum - 1) : null;
    if (skipped !== 0 && this.reportedGone !== cursor) {
      this.reportedGone = cursor;
      if (skipped) this.ctx.counters.dropped(this.name, 'journal_vacuumed', skipped);
      this.ctx.logger.error(
        {
          cursor,
          continuing_at: first,
          entries_skipped: skipped ?? 'unknown (another sequence of entries)',
          from: was && was.realtime > 0 ? new Date(was.realtime / 1000).toISOString() : undefined,
          to: now && now.realtime > 0 ? new Date(now.realtime / 1000).toISOString() : undefined,
        },
        'the journal no longer holds the entries after the saved cursor (vacuumed or rotated away); continuing from ' +
          'the oldest entry it has',
      );
    }
    return first;
  }

  /** The gone cursor already reported (a journalctl started again after it must not count the loss twice). */
  private reportedGone: string | null = null;

  /** journalctl failed or exited: logged (rate-limited), counted, and started again after a backoff. */
  private failed(generation: number, why: string, err: Error): void {
    if (generation !== this.generation || this.stopped) return;
    this.endRun();
    this.stats.connectionErrors++;
    const wait = this.backoff.next();
    const code = (err as NodeJS.ErrnoException).code;
    const hint =
      code === 'ENOENT'
        ? ` (install systemd's journalctl, or set \`journalctl:\` of source ${this.name} to its path)`
        : code === 'EACCES'
          ? ` (the user sluice runs as needs to run it, and to read the journal: the systemd-journal group)`
          : '';
    this.quiet.log('journalctl', (extra) =>
      this.ctx.logger.error(
        { err: err.message, code, retry_in_ms: wait, ...extra },
        `${why}${hint}; starting it again`,
      ),
    );
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      void this.launch();
    }, wait);
  }

  /**
   * Reads what the journal files hold after the handed-on cursor (from their start when there is
   * none) directly, instead of through journalctl (`catch_up: files`), and hands it on in batches
   * as journalctl's output would be. Returns once it has read what the files held when it began,
   * or at the first thing it leaves to journalctl, which goes on from the last entry handed on.
   */
  private async catchUp(generation: number): Promise<void> {
    const c = this.config;
    if (c.catch_up !== 'files' || c.units.length > 0 || c.namespace) return;
    if (this.handed === null && c.read_from === 'end') return;
    const after = this.handed === null ? null : cursorPosition(this.handed);
    const dirs = this.journalDirs();
    if ((this.handed !== null && after === null) || dirs === null) return;
    let reader: JournalFilesReader | null = null;
    let truncated = 0;
    let read = 0;
    try {
      // Null: the cursor's entry is not in the files (vacuumed, or another journal's): journalctl
      // says what became of it.
      reader = JournalFilesReader.open(dirs, after);
      // The cursor and the time come with each entry: fields only when chosen for the records.
      const keep = new Set([...this.wantedFields].filter((f) => !f.startsWith('__') || c.fields.includes(f)));
      const options = { keep, maxFieldSize: c.max_message_size, match: selectionMatch(c) };
      while (reader && !reader.done && generation === this.generation && !this.stopped) {
        const entries = reader.read(CATCH_UP_BATCH, options);
        if (reader.oversized.n !== truncated) {
          this.stats.truncated += reader.oversized.n - truncated;
          truncated = reader.oversized.n;
        }
        read += entries.length;
        // As journalctl's full pipe would: wait while the queues have not taken the batch, or while
        // too many batches wait for their commit; and let other work have its turn in between.
        await (this.handOn(entries) ?? new Promise((r) => setImmediate(r)));
      }
    } catch (err) {
      this.quiet.log('catch-up', (extra) =>
        this.ctx.logger.info(
          { err: (err as Error).message, entries_read: read, ...extra },
          'reading the journal files directly stopped here; journalctl reads on from the last entry handed on',
        ),
      );
    } finally {
      reader?.close();
    }
  }

  /** The directories of the journal's files: `directory`, or the system journal's of this machine. */
  private journalDirs(): string[] | null {
    if (this.config.directory) return [this.config.directory];
    let id: string;
    try {
      id = readFileSync('/etc/machine-id', 'utf8').trim();
    } catch {
      return null;
    }
    if (!/^[0-9a-f]{32}$/.test(id)) return null;
    return [path.join('/run/log/journal', id), path.join('/var/log/journal', id)];
  }

  /** Hands a batch on; what to wait for before reading more (the queues taking it, or commits catching up). */
  private handOn(entries: JournalEntry[]): Promise<unknown> | null {
    if (entries.length === 0) return null;
    const now = Date.now();
    const records: LogRecord[] = [];
    let bytes = 0;
    let last: JournalEntry | null = null;
    for (const e of entries) {
      let pos = e.position;
      if (!pos) {
        const c = e.fields.get('__CURSOR')?.toString();
        if (!c) continue; // every entry journalctl exports has one
        pos = cursorPosition(c) ?? undefined;
      }
      const r = new LogRecord(entryToSyslog(e, this.entryOptions), now, this.origin);
      if (pos) r.setStream(this.streamOf(pos.seqnumId), pos.seqnum);
      records.push(r);
      bytes += e.bytes;
      last = e;
    }
    if (last === null) return null;
    // The files' reader makes a cursor only when asked: for the batch's last entry.
    const cursor = last.cursor ?? last.fields.get('__CURSOR')!.toString();
    this.handed = cursor;
    this.stats.received += records.length;
    this.stats.receivedBytes += bytes;
    const d: Dispatch | undefined = this.ctx.router.dispatch(
      this.name,
      records,
      'keep_waiting',
      this.commits.withdrawn,
    );
    const settled = this.commits.add(cursor, d?.committed);
    // Flow control: reading waits (journalctl's pipe fills) while the queues have not taken this
    // batch, or while too many batches wait for their commit.
    const waits: Promise<unknown>[] = [];
    if (d?.accepted) waits.push(d.accepted);
    if (this.commits.size > MAX_UNCOMMITTED) waits.push(settled);
    return waits.length > 0 ? Promise.all(waits) : null;
  }

  /** The stream of a sequence of entries (the same for thousands of entries in a row). */
  private streamOf(seqnumId: string): string {
    if (seqnumId !== this.lastSeqnumId) {
      this.lastSeqnumId = seqnumId;
      this.lastStream = `journal|${this.ctx.hostname}|${seqnumId}`;
    }
    return this.lastStream;
  }

  private pauseUntil(p: Promise<unknown>, generation: number): void {
    const child = this.child;
    if (!child) return;
    this.waits++;
    child.stdout.pause();
    void p.then(() => {
      if (generation !== this.generation || this.child !== child) return;
      if (--this.waits === 0) child.stdout.resume();
    });
  }

  /**
   * A queue could not write a batch: nothing moves past it (the batches waiting to be queued were
   * withdrawn, see OrderedCommits), and journalctl starts again after the checkpoint.
   */
  private readAgain(): void {
    if (this.stopped) return;
    this.handed = this.commits.committed;
    this.endRun();
    void this.launch();
  }

  /** Stops the journalctl running: its output and its batches' commits are ignored from here on. */
  private endRun(): void {
    this.generation++;
    this.child?.kill('SIGTERM');
    this.child = null;
  }

  private async saveCheckpoint(): Promise<void> {
    const cursor = this.commits.committed;
    if (cursor === null || cursor === this.saved) return;
    if (await this.checkpoint.write({ version: 1, cursor })) this.saved = cursor;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.generation++;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    if (this.checkpointTimer) clearInterval(this.checkpointTimer);
    const child = this.child;
    this.child = null;
    if (child && child.exitCode === null && child.signalCode === null) {
      const closed = new Promise((r) => child.once('close', r));
      child.kill('SIGTERM');
      await Promise.race([closed, new Promise((r) => setTimeout(r, 2000).unref())]);
    }
    // What was handed on settles (committed or not) before the last checkpoint is written.
    await this.commits.drain(5000);
    await this.saveCheckpoint();
  }
}
