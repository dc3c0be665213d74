import type { FSWatcher } from 'chokidar';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import picomatch from 'picomatch';
import type { z } from 'zod';
import { FACILITY_NAMES, SEVERITY_NAMES } from '../../parser/names.js';
import type { LogRecord, RecordOrigin } from '../../record.js';
import type { SourceStats } from '../../stats.js';
import type { Dispatch } from '../../pipeline/router.js';
import type { Source, SourceContext } from '../types.js';
import { FileCheckpointStore, type FileCheckpoint } from './checkpoint-store.js';
import type { fileSourceSchema } from './config.js';
import { FileTailer, identityKey, statIdentity, type FileIdentity, type TailerOptions } from './file-tailer.js';
import { RateLimitedLog } from '../../log.js';

type Config = z.output<typeof fileSourceSchema>;

/** How long a rotated file, read to its end, is kept open in case its writer still appends. */
const ROTATE_WAIT_MIN = 5000;

/**
 * Follows files matching globs. Discovery by chokidar (directory events) plus a poll of every
 * followed file for growth, rotation and truncation; positions in a FileCheckpointStore.
 */
export class FileSource implements Source {
  readonly stats: SourceStats;
  private readonly quiet = new RateLimitedLog(1000);
  readonly name: string;
  private readonly store: FileCheckpointStore;
  private readonly tailers = new Map<string, FileTailer>(); // by device:inode
  private readonly isIncluded: (p: string) => boolean;
  private readonly isExcluded: (p: string) => boolean;
  private watcher: FSWatcher | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private checkpointTimer: NodeJS.Timeout | null = null;
  private initialScanDone = false;
  private stopped = false;
  private polling = false;
  private readonly opening = new Map<string, Promise<void>>(); // by path
  /** Followed names whose file went away with no new one in its place yet: each poll looks for one. */
  private readonly vanished = new Set<string>();
  private readonly rotateWait: number;
  private readonly tailerOptions: TailerOptions;

  constructor(
    private readonly config: Config,
    private readonly ctx: SourceContext,
  ) {
    this.name = ctx.name;
    this.stats = ctx.counters.of(ctx.name);
    this.store = new FileCheckpointStore(ctx.stateDir, ctx.name);
    const abs = (p: string) => (path.isAbsolute(p) ? p : path.resolve(p));
    this.isIncluded = picomatch(config.paths.map(abs), { dot: true });
    this.isExcluded = config.exclude.length ? picomatch(config.exclude.map(abs), { dot: true }) : () => false;
    this.rotateWait = Math.max(ROTATE_WAIT_MIN, config.poll_interval * 5);
    this.tailerOptions = {
      maxLineLength: config.max_line_length,
      flushTimeout: config.flush_timeout,
      deliver: (records, withdrawn) => this.deliver(records, withdrawn),
      onTruncated: (f, from) =>
        ctx.logger.info(
          { file: f, offset: from },
          'file was truncated (copytruncate?); reading it again from the start',
        ),
    };
  }

  describe(): string {
    return `files ${this.config.paths.join(', ')} (${this.tailers.size} followed)`;
  }

  /** Files currently followed, for tests and stats. */
  followed(): { path: string; committed: number; rotated: boolean }[] {
    return [...this.tailers.values()].map((t) => ({ path: t.path, committed: t.committed, rotated: t.rotated }));
  }

  get checkpointFile(): string {
    return this.store.file;
  }

  async start(): Promise<void> {
    this.store.load((reason) =>
      this.ctx.logger.error(
        { file: this.store.file, reason },
        'checkpoint file is damaged; files will be read from the configured start',
      ),
    );
    await this.finishMovedFiles(this.unfollowedCheckpoints(), false);
    const roots = new Map<string, number>();
    for (const pattern of this.config.paths) {
      const scan = picomatch.scan(path.isAbsolute(pattern) ? pattern : path.resolve(pattern));
      const base = scan.isGlob ? scan.base || '/' : path.dirname(scan.input);
      const depth = !scan.isGlob ? 0 : scan.glob.includes('**') ? Infinity : scan.glob.split('/').length - 1;
      roots.set(base, Math.max(roots.get(base) ?? 0, depth));
    }
    const depth = Math.max(...roots.values());
    // Loaded here: only configs that tail files pay for chokidar.
    const { watch } = await import('chokidar');
    const watcher = watch([...roots.keys()], {
      ignoreInitial: false,
      persistent: true,
      depth: Number.isFinite(depth) ? depth : undefined,
      ignorePermissionErrors: true,
    });
    this.watcher = watcher;
    watcher.on('add', (p) => this.onAdd(p));
    watcher.on('change', (p) => this.onChange(p));
    watcher.on('unlink', (p) => this.onChange(p));
    watcher.on('error', (err) => this.ctx.logger.warn({ err: (err as Error).message }, 'file watcher error'));
    await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
    await Promise.all(this.opening.values());
    this.initialScanDone = true;
    // A checkpointed file that is still not followed was renamed while the scan ran (after the
    // look above, before the scan reached it): look for it again. Only a file found nowhere loses
    // its checkpoint.
    const missed = this.unfollowedCheckpoints();
    await this.finishMovedFiles(missed, true);
    for (const key of missed.keys()) if (!this.tailers.has(key)) this.store.delete(key);
    await this.saveCheckpoints();
    this.pollTimer = setInterval(() => void this.poll(), this.config.poll_interval);
    this.checkpointTimer = setInterval(() => void this.saveCheckpoints(), this.config.checkpoint_interval);
  }

  private matches(p: string): boolean {
    return this.isIncluded(p) && !this.isExcluded(p);
  }

  private onAdd(p: string): void {
    if (this.stopped || !this.matches(p) || this.opening.has(p)) return;
    const initial = !this.initialScanDone;
    const work = this.follow(p, initial)
      .catch((err: Error) => this.ctx.logger.warn({ file: p, err: err.message }, 'cannot follow file'))
      .finally(() => this.opening.delete(p));
    this.opening.set(p, work);
  }

  private onChange(p: string): void {
    let current = false;
    for (const t of this.tailers.values()) {
      if (t.path !== p) continue;
      current ||= !t.rotated;
      void this.readTailer(t);
    }
    // A name whose file was renamed away and created again at once: chokidar reports that as a
    // change of the name, not an add, so the new file is followed from here.
    if (!current && this.initialScanDone) this.onAdd(p);
  }

  /** Follows the file at `file`; when its name moves on to another file while it is opened, follows that one. */
  private async follow(file: string, initial: boolean, after?: FileTailer): Promise<void> {
    for (let attempt = 0; attempt < 3 && !this.stopped; attempt++) {
      if (await this.followOnce(file, initial, after)) return;
    }
  }

  /** False when the name pointed at another file by the time it was opened: try again. */
  private async followOnce(file: string, initial: boolean, after?: FileTailer): Promise<boolean> {
    const id = await statIdentity(file);
    if (!id || this.stopped) return true;
    const key = identityKey(id);
    const known = this.tailers.get(key);
    if (known) {
      // The same file under a new name (renamed, and the new name matches too).
      known.path = file;
      return true;
    }
    // A new file under a followed name: the old one was rotated and is finished first.
    const previous = [...this.tailers.values()].find((t) => t.path === file && !t.rotated);
    if (previous) {
      previous.rotated = true;
      previous.lastActivity = Date.now();
      after ??= previous;
    }
    const checkpoint = this.store.get(key) ?? null;
    const start = checkpoint ?? (initial && this.config.read_from === 'end' ? 'end' : 'beginning');
    const tailer = await FileTailer.open(file, id, start, this.originOf(file), this.tailerOptions);
    if (!tailer) {
      if (previous && after === previous) previous.rotated = false; // not rotated after all: the poll looks again
      return (await statIdentity(file)) === null;
    }
    if (this.stopped || this.tailers.has(key)) {
      await tailer.close();
      return true;
    }
    this.tailers.set(key, tailer);
    this.store.set(key, tailer.checkpoint());
    this.ctx.logger.info(
      { file, offset: tailer.committed, resumed: checkpoint !== null && tailer.committed > 0 },
      'following file',
    );
    // Rotation: the old file is finished first, then the new one is read. Not awaited: the old
    // file's read may wait a long time on a full queue, and while this follow is under way its
    // name is `opening`, so a further rotation of that name would not be followed.
    void (after ? after.read().catch(() => undefined) : Promise.resolve()).then(() => this.readTailer(tailer));
    return true;
  }

  /** What the records of a file carry: its followed name (kept when the file is later renamed). */
  private originOf(file: string): RecordOrigin {
    return {
      source: this.name,
      from: file,
      format: this.config.format,
      lenient: this.config.lenient,
      counters: this.ctx.counters,
      hostname: this.ctx.hostname,
      appName: this.config.app_name ?? path.basename(file).replace(/\.[^.]*$/, ''),
      facility: FACILITY_NAMES.indexOf(this.config.facility),
      severity: SEVERITY_NAMES.indexOf(this.config.severity),
    };
  }

  /** Checkpoints no tailer holds. */
  private unfollowedCheckpoints(): Map<string, FileCheckpoint> {
    const out = new Map<string, FileCheckpoint>();
    for (const e of this.store.all()) {
      const key = identityKey(e);
      if (!this.tailers.has(key)) out.set(key, e);
    }
    return out;
  }

  /**
   * Files an earlier run followed that the scan will not pick up. A checkpointed file still at the
   * name it was checkpointed under, a name the globs do not match, is a rotated file that run was
   * finishing when it stopped: it is finished. One no longer at its name was renamed while sluice
   * was stopped or starting: it is looked for, by device and inode, in the same directory (where
   * logrotate puts `app.log.1`) and finished, whatever its new name. Either way only if its first
   * bytes are still the ones checkpointed. This runs before the scan, so an old file is finished
   * before the new file under its name is found, and again after it (`last`), for a file renamed
   * while the scan ran. Without it, the lines after the checkpoint would be lost whenever the
   * file's name is not matched by `paths`.
   */
  private async finishMovedFiles(candidates: Map<string, FileCheckpoint>, last: boolean): Promise<void> {
    const gone = new Map<string, FileCheckpoint>();
    for (const [key, e] of candidates) {
      if (this.stopped) return;
      const now = await statIdentity(e.path);
      if (!now || identityKey(now) !== key) {
        gone.set(key, e);
        continue;
      }
      // Still at the name it was checkpointed under. A name the globs match is the scan's to
      // follow; any other is a rotated file that an earlier run was finishing when it stopped.
      if (this.matches(e.path) && !last) continue;
      await this.resumeFile(e.path, now, e);
    }
    const dirs = new Set([...gone.values()].map((e) => path.dirname(e.path)));
    for (const dir of dirs) {
      let names: string[];
      try {
        names = await readdir(dir);
      } catch {
        continue;
      }
      for (const name of names) {
        if (gone.size === 0 || this.stopped) return;
        const file = path.join(dir, name);
        const id = await statIdentity(file);
        const key = id ? identityKey(id) : '';
        const checkpoint = gone.get(key);
        if (!id || !checkpoint || this.tailers.has(key)) continue;
        gone.delete(key);
        await this.resumeFile(file, id, checkpoint);
      }
    }
    for (const e of last ? gone.values() : []) {
      this.ctx.logger.warn(
        { file: e.path, offset: e.offset },
        'a followed file is gone since the last run (deleted, compressed or moved to another directory); anything ' +
          'written to it after the checkpoint was not read',
      );
    }
  }

  /**
   * Finishes a file found by its checkpoint's identity, from that checkpoint, if its first bytes are
   * still the ones checkpointed (else the inode was reused by some other file, left alone). Under a
   * name the globs match it is followed as it is now; under any other it is finished as rotated.
   */
  private async resumeFile(file: string, id: FileIdentity, checkpoint: FileCheckpoint): Promise<void> {
    const key = identityKey(id);
    if (this.tailers.has(key)) return;
    const tailer = await FileTailer.open(
      file,
      id,
      checkpoint,
      this.originOf(checkpoint.path),
      this.tailerOptions,
      true,
    );
    if (!tailer) return;
    if (this.stopped || this.tailers.has(key)) {
      await tailer.close();
      return;
    }
    tailer.rotated = !this.matches(file);
    this.tailers.set(key, tailer);
    this.ctx.logger.info(
      { file, was: checkpoint.path, offset: tailer.committed },
      'finishing a file an earlier run followed: renamed while sluice was stopped or starting, or not finished when ' +
        'it stopped',
    );
    void this.readTailer(tailer);
  }

  private deliver(records: LogRecord[], withdrawn: AbortSignal): Dispatch | undefined {
    let bytes = 0;
    for (const r of records) bytes += r.raw.length;
    this.stats.received += records.length;
    this.stats.receivedBytes += bytes;
    return this.ctx.router.dispatch(this.name, records, 'keep_waiting', withdrawn);
  }

  private async readTailer(t: FileTailer): Promise<void> {
    try {
      await t.read();
    } catch (err) {
      this.stats.connectionErrors++;
      this.quiet.log(`read:${t.path}`, (extra) =>
        this.ctx.logger.warn(
          { file: t.path, err: (err as Error).message, ...extra },
          'reading file failed; will retry',
        ),
      );
    }
  }

  /** Growth, rotation, truncation and deletion, checked for every followed file. */
  private async poll(): Promise<void> {
    if (this.stopped || this.polling) return;
    this.polling = true;
    try {
      await this.pollOnce();
    } finally {
      this.polling = false;
    }
  }

  private async pollOnce(): Promise<void> {
    for (const p of [...this.vanished]) {
      if (this.opening.has(p) || !(await statIdentity(p))) continue;
      this.vanished.delete(p);
      this.onAdd(p);
    }
    for (const [key, t] of [...this.tailers]) {
      if (!t.rotated) {
        const now = await statIdentity(t.path);
        // A follow of this name is under way (a file that just appeared): look again at the next poll.
        const busy = now !== null && this.opening.has(t.path);
        if ((!now || identityKey(now) !== key) && !busy) {
          // Gone from its name (renamed, and no new file there yet): the name is looked at again.
          if (!now && this.matches(t.path)) this.vanished.add(t.path);
          t.rotated = true;
          t.lastActivity = Date.now();
          this.ctx.logger.info({ file: t.path }, 'file was rotated or removed; finishing the old file');
          if (now && this.matches(t.path)) {
            const file = t.path;
            const work = this.follow(file, false, t).finally(() => this.opening.delete(file));
            this.opening.set(file, work);
          }
        }
      }
      // Not awaited: a file waiting on a full queue must not hold up the others.
      void this.readTailer(t);
      if (t.rotated && (await t.atEnd()) && Date.now() - t.lastActivity > this.rotateWait) {
        this.tailers.delete(key);
        this.store.delete(key);
        await t.close();
        this.ctx.logger.info({ file: t.path }, 'finished rotated file');
      }
    }
  }

  private async saveCheckpoints(): Promise<void> {
    for (const [key, t] of this.tailers) this.store.set(key, t.checkpoint());
    try {
      await this.store.flush();
    } catch (err) {
      this.ctx.diskHealth?.failed(err as Error, `checkpoints of ${this.name}`);
      this.quiet.log('checkpoint', (extra) =>
        this.ctx.logger.error(
          { file: this.store.file, err: (err as Error).message, ...extra },
          'cannot write checkpoints; will retry',
        ),
      );
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.pollTimer) clearInterval(this.pollTimer);
    if (this.checkpointTimer) clearInterval(this.checkpointTimer);
    await this.watcher?.close();
    this.watcher = null;
    // Close tailers first: a read waiting on a full queue gives up (its lines stay uncommitted).
    await Promise.all([...this.tailers.values()].map((t) => t.close()));
    await Promise.race([Promise.all(this.opening.values()), new Promise((r) => setTimeout(r, 2000).unref())]);
    await Promise.all([...this.tailers.values()].map((t) => t.close()));
    await this.saveCheckpoints();
  }
}
