import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../../util/fs.js';

export interface FileCheckpoint {
  path: string;
  dev: string;
  ino: string;
  /** crc32 (hex) of the first `fingerprint_bytes` bytes of the file. */
  fingerprint: string;
  fingerprint_bytes: number;
  /** Byte offset just past the last line every queue has accepted. */
  offset: number;
  /**
   * The file's birth time (ms), where the filesystem keeps one: with the same device and inode, the
   * same birth time is the same file, even when its first bytes changed (copytruncate).
   */
  birth?: number;
}

interface CheckpointFile {
  version: 1;
  files: FileCheckpoint[];
}

/**
 * Where each followed file was left, in `<state_dir>/checkpoints/<source>.json`. Written
 * atomically: a temp file, fsync, rename, fsync of the directory, so a crash leaves the old or the
 * new file, never half of one.
 */
export class FileCheckpointStore {
  readonly file: string;
  private entries = new Map<string, FileCheckpoint>();
  private dirty = false;
  private writing: Promise<void> | null = null;

  constructor(stateDir: string, sourceName: string) {
    this.file = path.join(stateDir, 'checkpoints', `${sourceName}.json`);
  }

  static key(dev: string, ino: string): string {
    return `${dev}:${ino}`;
  }

  /** Reads the store; a missing file is empty, a damaged one is reported through `onCorrupt` and set aside. */
  load(onCorrupt: (reason: string) => void): void {
    mkdirSync(path.dirname(this.file), { recursive: true });
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    try {
      const data = JSON.parse(text) as CheckpointFile;
      if (data.version !== 1 || !Array.isArray(data.files)) throw new Error('unknown layout');
      for (const e of data.files) {
        if (
          typeof e.dev !== 'string' ||
          typeof e.ino !== 'string' ||
          !Number.isSafeInteger(e.offset) ||
          typeof e.fingerprint !== 'string'
        ) {
          throw new Error('an entry lacks dev, ino, offset or fingerprint');
        }
        this.entries.set(FileCheckpointStore.key(e.dev, e.ino), e);
      }
    } catch (err) {
      this.entries.clear();
      onCorrupt((err as Error).message);
    }
  }

  get(key: string): FileCheckpoint | undefined {
    return this.entries.get(key);
  }

  all(): FileCheckpoint[] {
    return [...this.entries.values()];
  }

  set(key: string, entry: FileCheckpoint): void {
    const prev = this.entries.get(key);
    if (
      prev &&
      prev.offset === entry.offset &&
      prev.path === entry.path &&
      prev.fingerprint === entry.fingerprint &&
      prev.fingerprint_bytes === entry.fingerprint_bytes
    ) {
      return;
    }
    this.entries.set(key, entry);
    this.dirty = true;
  }

  delete(key: string): void {
    if (this.entries.delete(key)) this.dirty = true;
  }

  /** Writes the store if anything changed; concurrent calls share one write. */
  async flush(): Promise<void> {
    while (this.writing) await this.writing;
    if (!this.dirty) return;
    this.dirty = false;
    this.writing = this.write().finally(() => {
      this.writing = null;
    });
    try {
      await this.writing;
    } catch (err) {
      this.dirty = true;
      throw err;
    }
  }

  private async write(): Promise<void> {
    const data: CheckpointFile = { version: 1, files: this.all() };
    await writeFileAtomic(this.file, `${JSON.stringify(data, null, 1)}\n`);
  }
}
