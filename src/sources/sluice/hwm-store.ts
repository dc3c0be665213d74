import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../../util/fs.js';

/**
 * For each sender, the highest sequence number committed to the queues (its high-water mark),
 * kept in `<state_dir>/senders/<source>.json`. Writes are grouped: `commit()` resolves once a
 * write that includes it is on disk (temp file, fsync, rename, directory fsync).
 */
export class HighWaterMarks {
  private readonly marks = new Map<string, number>();
  private writing: Promise<void> | null = null;
  private dirty = false;
  private waiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  readonly file: string;

  constructor(stateDir: string, source: string, onDamaged: (reason: string) => void) {
    const dir = path.join(stateDir, 'senders');
    mkdirSync(dir, { recursive: true });
    this.file = path.join(dir, `${source}.json`);
    let text: string | null = null;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch {
      // first start
    }
    if (text !== null) {
      try {
        const data = JSON.parse(text) as { version: number; senders: Record<string, number> };
        for (const [k, v] of Object.entries(data.senders)) if (Number.isSafeInteger(v)) this.marks.set(k, v);
      } catch (err) {
        onDamaged((err as Error).message);
      }
    }
  }

  get(sender: string): number {
    return this.marks.get(sender) ?? -1;
  }

  /** Raises the mark (never lowers it) and resolves once that is durable. */
  commit(sender: string, seq: number): Promise<void> {
    if (seq > this.get(sender)) this.marks.set(sender, seq);
    this.dirty = true;
    const p = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    this.writing ??= this.flushLoop();
    return p;
  }

  private async flushLoop(): Promise<void> {
    try {
      while (this.dirty) {
        this.dirty = false;
        const waiters = this.waiters;
        this.waiters = [];
        const data = { version: 1, senders: Object.fromEntries(this.marks) };
        try {
          await writeFileAtomic(this.file, `${JSON.stringify(data)}\n`);
          for (const w of waiters) w.resolve();
        } catch (err) {
          for (const w of waiters) w.reject(err as Error);
        }
      }
    } finally {
      this.writing = null;
    }
  }

  async close(): Promise<void> {
    await this.writing;
  }
}
