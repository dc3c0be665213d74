import { mkdir, open, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { z } from 'zod';
import type { LogRecord } from '../../record.js';
import { PathTemplate } from '../../template/path-template.js';
import { renderRecord } from '../format.js';
import { QueueDrainer } from '../queue-drainer.js';
import type { DestinationContext } from '../types.js';
import type { fileDestinationSchema } from './config.js';

type Config = z.output<typeof fileDestinationSchema>;

interface OpenFile {
  handle: FileHandle;
  lastUsed: number;
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
    return `file ${this.config.path} (under ${this.template.baseDir}, ${this.config.format}${this.config.fsync ? ', fsync' : ''})`;
  }

  override start(): void {
    const every = Math.max(1000, Math.min(this.config.idle_close, 10_000));
    this.sweeper = setInterval(() => void this.closeIdle(), every);
    this.sweeper.unref();
    super.start();
  }

  protected async deliver(records: LogRecord[]): Promise<void> {
    const byFile = new Map<string, Buffer[]>();
    for (const r of records) {
      const file = this.template.render(r);
      let chunks = byFile.get(file);
      if (!chunks) byFile.set(file, (chunks = []));
      chunks.push(renderRecord(r, this.config.format, this.ctx.hostname), LF);
    }
    const touched = new Set<OpenFile>();
    for (const [file, chunks] of byFile) {
      const f = await this.fileFor(file);
      const data = Buffer.concat(chunks);
      let written = 0;
      while (written < data.length) {
        const { bytesWritten } = await f.handle.write(data, written, data.length - written);
        written += bytesWritten;
      }
      touched.add(f);
    }
    this.stats.sent += records.length;
    if (this.config.fsync) {
      // A file evicted meanwhile was synced as it was closed.
      const open_ = new Set(this.files.values());
      await Promise.all([...touched].filter((f) => open_.has(f)).map((f) => f.handle.datasync()));
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
    const f = { handle, lastUsed: now };
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
        await this.closeFile(f).catch((err: Error) => this.ctx.logger.warn({ file, err: err.message }, 'closing an idle file failed'));
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
