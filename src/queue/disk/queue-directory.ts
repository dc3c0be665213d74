import { readFileSync } from 'node:fs';
import { mkdir, readFile, rename } from 'node:fs/promises';
import { fsyncDir, writeFileAtomic } from '../../util/fs.js';
import { QueueLayout } from '../layout.js';
import { DirectoryLock } from './directory-lock.js';

/** `queue.json`: what the queue directory belongs to, for `sluice queue ls|info` and orphan reports. */
export interface QueueMeta {
  destination: string;
  mode: 'normal' | 'reliable';
  max_size: number;
  /** Names the sequence numbers of this ring file; made anew with the file (rotation, resize). */
  ring_id?: string;
}

/** The queue.json of `dir`, or null when it is missing or unreadable (for the offline tools). */
export function readMetaSync(dir: string): QueueMeta | null {
  try {
    return JSON.parse(readFileSync(new QueueLayout(dir).meta, 'utf8')) as QueueMeta;
  } catch {
    return null;
  }
}

/**
 * A queue's directory, held by this process: created if missing, locked (one process per
 * directory), with its metadata and the renames that replace its ring file.
 */
export class QueueDirectory {
  private constructor(
    readonly layout: QueueLayout,
    private readonly lock: DirectoryLock,
  ) {}

  /** Creates `dir` if needed and takes its lock; throws QueueLockedError when a live process holds it. */
  static async open(dir: string): Promise<QueueDirectory> {
    await mkdir(dir, { recursive: true });
    return new QueueDirectory(new QueueLayout(dir), await DirectoryLock.acquire(dir));
  }

  /** The ring id queue.json names: what a format 1 file, whose header has none, goes by. Empty when there is none. */
  async ringId(): Promise<string> {
    try {
      return (JSON.parse(await readFile(this.layout.meta, 'utf8')) as QueueMeta).ring_id ?? '';
    } catch {
      return '';
    }
  }

  /** Writes queue.json (atomically) when it says something else. */
  async writeMeta(meta: QueueMeta): Promise<void> {
    const old = await readFile(this.layout.meta, 'utf8').catch(() => '');
    const text = `${JSON.stringify(meta)}\n`;
    if (old !== text) await writeFileAtomic(this.layout.meta, text);
  }

  /**
   * Puts `fresh` in the ring file's place, durably; the old ring file, when `keepOldAs` is given, is renamed to it
   * first.
   */
  async replaceRing(fresh: string, keepOldAs?: string): Promise<void> {
    if (keepOldAs) await rename(this.layout.ring, keepOldAs);
    await rename(fresh, this.layout.ring);
    await fsyncDir(this.layout.dir);
  }

  release(): Promise<void> {
    return this.lock.release();
  }
}
