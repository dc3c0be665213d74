import { open, readFile, unlink } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import path from 'node:path';

export class QueueLockedError extends Error {
  override readonly name = 'QueueLockedError';
  constructor(
    readonly dir: string,
    readonly pid: number,
  ) {
    super(`queue directory ${dir} is held by PID ${pid}; another sluice uses the same state_dir`);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** PID of the live process holding `dir`'s lock, or null. */
export function lockHolder(dir: string): number | null {
  let text = '';
  try {
    text = readFileSync(path.join(dir, '.lock.pid'), 'utf8');
  } catch {
    return null;
  }
  const pid = Number.parseInt(text, 10);
  return Number.isInteger(pid) && pid > 0 && alive(pid) ? pid : null;
}

/** Lock files this process holds now: one of ours not in here is stale (left by an earlier instance). */
const heldHere = new Set<string>();

/**
 * One process per queue directory: `.lock.pid` is created exclusively and holds the owner's PID.
 * A lock whose process is gone is stale and taken over.
 */
export class DirectoryLock {
  private constructor(readonly file: string) {}

  static async acquire(dir: string): Promise<DirectoryLock> {
    const file = path.join(dir, '.lock.pid');
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const fh = await open(file, 'wx', 0o640);
        try {
          await fh.writeFile(`${process.pid}\n`);
          await fh.sync();
        } finally {
          await fh.close();
        }
        heldHere.add(file);
        return new DirectoryLock(file);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const pid = Number.parseInt(await readFile(file, 'utf8').catch(() => ''), 10);
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) throw new QueueLockedError(dir, pid);
      if (pid === process.pid && heldHere.has(file)) throw new QueueLockedError(dir, pid); // opened twice in this process
      await unlink(file).catch(() => undefined); // stale: its process is gone
    }
    throw new Error(`could not take the lock ${file}`);
  }

  async release(): Promise<void> {
    heldHere.delete(this.file);
    await unlink(this.file).catch(() => undefined);
  }
}
