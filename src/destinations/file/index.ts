import { mkdir, open, readFile, type FileHandle } from 'node:fs/promises';
import { writeFileAtomic } from '../../util/fs.js';
import path from 'node:path';
import type { z } from 'zod';
import type { LogRecord } from '../../record.js';
import { PathTemplate } from '../../template/path-template.js';
import { PER_RECORD_FS, type Rejected } from '../failures.js';
import { renderRecord } from '../format.js';
import { QueueDrainer } from '../queue-drainer.js';
import type { DestinationContext } from '../types.js';
import type { fileDestinationSchema } from './config.js';

type Config = z.output<typeof fileDestinationSchema>;

interface OpenFile {
  handle: FileHandle;
  lastUsed: number;
  /** exactly_once: what the state file says is committed. */
  state: FileState | null;
  path: string;
}

interface FileState {
  /** Bytes of the file that are committed; anything after them was written but not recorded. */
  size: number;
  /** Per stream: the last position written, and when (ms since the epoch). */
  streams: Map<string, StreamMark>;
  /** When streams older than the retention were last looked for. */
  prunedAt: number;
}

interface StreamMark {
  pos: number;
  at: number;
}

const STATE_SUFFIX = '.sluice-state';
/** Version 2 records when each stream was last written (version 1 did not; read as "now"). */
const STATE_VERSION = 2;
/** How often a file's state is swept for forgotten streams. */
const PRUNE_EVERY_MS = 60_000;

function emptyState(size: number): FileState {
  return { size, streams: new Map(), prunedAt: Date.now() };
}

const LF = Buffer.from('\n');
const BATCH = 4096;

/**
 * Appends records, one per line, to files named by a path template. A batch is grouped by file,
 * written with one write per file, and fsynced before its records leave the queue.
 */
export class FileDestination extends QueueDrainer {
  private readonly template: PathTemplate;
  private readonly files = new Map<string, OpenFile>();
  private readonly knownDirs = new Set<string>();
  private readonly fileMode: number;
  private readonly dirMode: number;
  private sweeper: NodeJS.Timeout | null = null;

  constructor(
    private readonly config: Config,
    ctx: DestinationContext,
  ) {
    super(ctx, { initial: 200, max: 30_000 }, BATCH);
    this.template = new PathTemplate(config.path);
    this.fileMode = parseInt(config.file_mode, 8);
    this.dirMode = parseInt(config.dir_mode, 8);
  }

  describe(): string {
    return (
      `file ${this.config.path} (under ${this.template.baseDir}, ` +
      `${this.config.format}${this.config.fsync ? ', fsync' : ''})`
    );
  }

  override start(): void {
    const every = Math.max(1000, Math.min(this.config.idle_close, 10_000));
    this.sweeper = setInterval(() => void this.closeIdle(), every);
    this.sweeper.unref();
    super.start();
  }

  protected async deliver(records: LogRecord[]): Promise<Rejected[]> {
    const byFile = new Map<string, LogRecord[]>();
    const rejected: Rejected[] = [];
    for (const r of records) {
      let file: string;
      try {
        file = this.template.render(r);
      } catch (err) {
        rejected.push({ record: r, reason: 'encoding', error: `path template: ${(err as Error).message}` });
        continue;
      }
      let list = byFile.get(file);
      if (!list) byFile.set(file, (list = []));
      list.push(r);
    }
    const touched: { f: OpenFile; bytes: number; marks: Map<string, number> | null }[] = [];
    try {
      for (const [file, list] of byFile) {
        let f: OpenFile;
        try {
          f = await this.fileFor(file);
        } catch (err) {
          // A name this file system refuses (too long, a component that is a file) is refused for
          // these records every time: they are set aside, the other files of the batch are written.
          const code = (err as NodeJS.ErrnoException).code;
          if (!code || !PER_RECORD_FS.has(code)) throw err;
          for (const r of list) rejected.push({ record: r, reason: code, error: (err as Error).message });
          continue;
        }
        const marks = f.state ? new Map<string, number>() : null;
        const chunks: Buffer[] = [];
        for (const r of list) {
          if (marks && r.stream !== undefined && writtenBefore(r, marks, f.state!)) {
            this.stats.duplicatesSkipped = (this.stats.duplicatesSkipped ?? 0) + 1;
            continue; // written before (a resend, or a line read again after a crash)
          }
          let line: Buffer;
          try {
            line = renderRecord(r, this.config.format, this.ctx.hostname);
          } catch (err) {
            rejected.push({ record: r, reason: 'encoding', error: (err as Error).message });
            continue;
          }
          if (marks && r.stream !== undefined) marks.set(r.stream, r.streamPos);
          chunks.push(line, LF);
        }
        const data = Buffer.concat(chunks);
        let written = 0;
        while (written < data.length) {
          const { bytesWritten } = await f.handle.write(data, written, data.length - written);
          written += bytesWritten;
        }
        touched.push({ f, bytes: data.length, marks });
      }
      this.stats.sent += records.length - rejected.length;
      if (this.config.fsync) {
        // A file evicted meanwhile was synced as it was closed.
        const open_ = new Set(this.files.values());
        await Promise.all(touched.filter((t) => open_.has(t.f)).map((t) => t.f.handle.datasync()));
      }
      // exactly_once: only now, with the lines on disk, do they count as written.
      const now = Date.now();
      for (const t of touched) {
        if (!t.f.state) continue;
        const prev = t.f.state;
        const next: FileState = { size: prev.size + t.bytes, streams: new Map(prev.streams), prunedAt: prev.prunedAt };
        for (const [k, pos] of t.marks!) next.streams.set(k, { pos, at: now });
        if (now - next.prunedAt >= PRUNE_EVERY_MS) this.prune(t.f.path, next, now);
        await writeFileAtomic(`${t.f.path}${STATE_SUFFIX}`, serializeState(next));
        t.f.state = next;
      }
      return rejected;
    } catch (err) {
      // The files may hold bytes past their committed state: reopen them (and cut them back) next time.
      for (const t of touched) {
        if (!t.f.state) continue;
        this.files.delete(t.f.path);
        await t.f.handle.close().catch(() => undefined);
      }
      throw err;
    }
  }

  /** exactly_once: forgets the streams not written for `exactly_once_retention`. */
  private prune(file: string, state: FileState, now: number): void {
    state.prunedAt = now;
    const before = now - this.config.exactly_once_retention;
    let forgotten = 0;
    for (const [k, mark] of state.streams) {
      if (mark.at >= before) continue;
      state.streams.delete(k);
      forgotten++;
    }
    if (forgotten > 0) {
      this.stats.streamsForgotten = (this.stats.streamsForgotten ?? 0) + forgotten;
      this.ctx.logger.info(
        { file, forgotten, kept: state.streams.size, retention_ms: this.config.exactly_once_retention },
        'exactly-once state: forgot streams not written for exactly_once_retention',
      );
    }
  }

  /** exactly_once: reads `<file>.sluice-state` and cuts the file back to what it records. */
  private async loadState(file: string, handle: FileHandle): Promise<FileState> {
    const size = (await handle.stat()).size;
    let text: string | null = null;
    try {
      text = await readFile(`${file}${STATE_SUFFIX}`, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      // The first state is on disk before the first line is written: a crash after that write
      // but before the state that records it finds the state and cuts the line back, rather than
      // finding no state, keeping the line, and writing it again when it is sent again.
      const state = emptyState(size);
      await writeFileAtomic(`${file}${STATE_SUFFIX}`, serializeState(state));
      return state;
    }
    try {
      const state = parseState(text);
      this.prune(file, state, Date.now());
      if (size > state.size) {
        await handle.truncate(state.size);
        await handle.datasync();
        this.ctx.logger.info(
          { file, cut_bytes: size - state.size },
          'cut back lines written after the last recorded state (a crash); they are written again',
        );
      } else if (size < state.size) {
        state.size = size; // the file was rotated or shortened from outside: go on from its end
      }
      return state;
    } catch (err) {
      this.ctx.logger.error(
        { file, err: (err as Error).message },
        'the exactly-once state beside this file is damaged: records sent again may be written twice',
      );
      return emptyState(size);
    }
  }

  private async fileFor(file: string): Promise<OpenFile> {
    const now = Date.now();
    const open_ = this.files.get(file);
    if (open_) {
      // Map order is recency order: move to the back.
      this.files.delete(file);
      this.files.set(file, open_);
      open_.lastUsed = now;
      return open_;
    }
    const dir = path.dirname(file);
    if (!this.knownDirs.has(dir)) {
      await mkdir(dir, { recursive: true, mode: this.dirMode });
      this.knownDirs.add(dir);
    }
    while (this.files.size >= this.config.max_open_files) {
      const [oldest, f] = this.files.entries().next().value as [string, OpenFile];
      this.files.delete(oldest);
      await this.closeFile(f);
    }
    let handle: FileHandle;
    try {
      handle = await open(file, 'a', this.fileMode);
    } catch (err) {
      // The directory may have been removed under us (log cleanup): make it again once.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      await mkdir(dir, { recursive: true, mode: this.dirMode });
      handle = await open(file, 'a', this.fileMode);
    }
    const f: OpenFile = { handle, lastUsed: now, state: null, path: file };
    if (this.config.exactly_once) {
      try {
        f.state = await this.loadState(file, handle);
      } catch (err) {
        await handle.close().catch(() => undefined);
        throw err;
      }
    }
    this.files.set(file, f);
    return f;
  }

  /** Syncs before closing, so that records already acknowledged from this file are on disk. */
  private async closeFile(f: OpenFile): Promise<void> {
    try {
      if (this.config.fsync) await f.handle.datasync();
    } finally {
      await f.handle.close();
    }
  }

  private async closeIdle(): Promise<void> {
    const cutoff = Date.now() - this.config.idle_close;
    for (const [file, f] of this.files) {
      if (f.lastUsed < cutoff) {
        this.files.delete(file);
        await this.closeFile(f).catch((err: Error) =>
          this.ctx.logger.warn({ file, err: err.message }, 'closing an idle file failed'),
        );
      }
    }
  }

  protected async release(): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = null;
    const all = [...this.files.values()];
    this.files.clear();
    await Promise.all(all.map((f) => this.closeFile(f).catch(() => undefined)));
  }
}

/**
 * exactly_once: the record's position, or one it had before (in the stream of a reader that crashed
 * holding it), is at or below what this file wrote of that stream (in this batch, `marks`, or before).
 */
function writtenBefore(r: LogRecord, marks: Map<string, number>, state: FileState): boolean {
  const seen = (k: string) => marks.get(k) ?? state.streams.get(k)?.pos ?? -1;
  if (r.streamPos <= seen(r.stream!)) return true;
  return r.earlier?.some(([k, p]) => p <= seen(k)) ?? false;
}

/** `<file>.sluice-state`, version 2: `streams` maps each stream to [last position, last written ms]. */
function serializeState(state: FileState): string {
  const streams: Record<string, [number, number]> = {};
  for (const [k, mark] of state.streams) streams[k] = [mark.pos, mark.at];
  return `${JSON.stringify({ version: STATE_VERSION, size: state.size, streams })}\n`;
}

/** Reads version 2, and version 1 (`streams` maps to positions only: each is taken as seen now). */
function parseState(text: string): FileState {
  const data = JSON.parse(text) as { version?: unknown; size?: unknown; streams?: unknown };
  if (typeof data.size !== 'number' || !Number.isSafeInteger(data.size) || data.size < 0)
    throw new Error('no valid size');
  if (typeof data.streams !== 'object' || data.streams === null) throw new Error('no streams');
  const now = Date.now();
  const state: FileState = { size: data.size, streams: new Map(), prunedAt: 0 };
  for (const [k, v] of Object.entries(data.streams as Record<string, unknown>)) {
    if (data.version === 1 && typeof v === 'number') state.streams.set(k, { pos: v, at: now });
    else if (Array.isArray(v) && typeof v[0] === 'number' && typeof v[1] === 'number')
      state.streams.set(k, { pos: v[0], at: v[1] });
    else {
      throw new Error(`stream ${JSON.stringify(k).slice(0, 80)} has no valid position`);
    }
  }
  return state;
}
