import { open, readFile, unlink } from 'node:fs/promises';
import { readFileSync, statSync } from 'node:fs';

import { QueueLayout } from '../layout.js';

export class QueueLockedError extends Error {
  override readonly name = 'QueueLockedError';
  constructor(
    readonly dir: string,
    readonly pid: number,
  ) {
    super(`queue directory ${dir} is held by PID ${pid}; another sluice uses the same state_dir`);
  }
}

/** What tells one process from another that later gets its PID: the boot, and its start time in that boot. */
interface ProcessIdentity {
  pid: number;
  /** Field 22 of /proc/PID/stat: clock ticks since boot when the process started. */
  start: string;
  /** /proc/sys/kernel/random/boot_id: new at every boot. */
  boot: string;
}

function readText(file: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

function bootId(): string {
  return readText('/proc/sys/kernel/random/boot_id')?.trim() ?? '';
}

/** The start time of PID, or null when there is no such process (or no /proc to ask). */
function startTime(pid: number): string | null {
  const stat = readText(`/proc/${pid}/stat`);
  if (stat === null) return null;
  // The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[19] ?? null; // field 22 overall
}

/** USER_HZ: the unit of /proc start times, 100 on every Linux architecture Node runs on. */
const CLOCK_TICKS = 100;

/** When PID started, in ms since the epoch, or null when /proc cannot tell. */
function startedAt(pid: number): number | null {
  const ticks = Number(startTime(pid));
  const btime = /^btime (\d+)$/m.exec(readText('/proc/stat') ?? '')?.[1];
  if (!Number.isFinite(ticks) || btime === undefined) return null;
  return Number(btime) * 1000 + (ticks * 1000) / CLOCK_TICKS;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function ownIdentity(): ProcessIdentity {
  return { pid: process.pid, start: startTime(process.pid) ?? '', boot: bootId() };
}

/** `PID`, then `start=` and `boot=` lines; a lock written before those lines has only the PID. */
function formatLock(id: ProcessIdentity): string {
  return `${id.pid}\nstart=${id.start}\nboot=${id.boot}\n`;
}

function parseLock(text: string): ProcessIdentity | null {
  const lines = text.split('\n');
  const pid = Number.parseInt(lines[0] ?? '', 10);
  if (!Number.isInteger(pid) || pid <= 0) return null;
  const field = (k: string) => lines.find((l) => l.startsWith(`${k}=`))?.slice(k.length + 1) ?? '';
  return { pid, start: field('start'), boot: field('boot') };
}

/**
 * True when the process that wrote the lock still runs. PIDs are reused, most of all after a
 * reboot (a power loss leaves the lock behind, and early boot hands out the same low PIDs again),
 * so the PID alone proves nothing: the lock also names the boot and the process's start time, and
 * both must match. A lock written before those were recorded is stale when it is older than the
 * process now at its PID. Only where /proc cannot tell is a live PID taken as the holder.
 */
function holds(id: ProcessIdentity, file: string): boolean {
  if (!alive(id.pid)) return false;
  if (id.boot && bootId() && id.boot !== bootId()) return false;
  if (id.start) {
    const now = startTime(id.pid);
    return now === null || now === id.start;
  }
  const started = startedAt(id.pid);
  let written: number;
  try {
    written = statSync(file).mtimeMs;
  } catch {
    return false;
  }
  return started === null || written + 1000 >= started;
}

/** PID of the live process holding `dir`'s lock, or null. */
export function lockHolder(dir: string): number | null {
  const file = new QueueLayout(dir).lock;
  const text = readText(file);
  const id = text === null ? null : parseLock(text);
  return id && holds(id, file) ? id.pid : null;
}

/** Lock files this process holds now: one of ours not in here is stale (left by an earlier instance). */
const heldHere = new Set<string>();

/**
 * One process per queue directory: `.lock.pid` is created exclusively and names its owner (PID,
 * start time, boot). A lock whose owner is gone (see `holds`) is stale and taken over.
 */
export class DirectoryLock {
  private constructor(readonly file: string) {}

  static async acquire(dir: string): Promise<DirectoryLock> {
    const file = new QueueLayout(dir).lock;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const fh = await open(file, 'wx', 0o640);
        try {
          await fh.writeFile(formatLock(ownIdentity()));
          await fh.sync();
        } finally {
          await fh.close();
        }
        heldHere.add(file);
        return new DirectoryLock(file);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const id = parseLock(await readFile(file, 'utf8').catch(() => ''));
      // opened twice in this process
      if (id && id.pid === process.pid && heldHere.has(file)) throw new QueueLockedError(dir, id.pid);
      if (id && id.pid !== process.pid && holds(id, file)) throw new QueueLockedError(dir, id.pid);
      await unlink(file).catch(() => undefined); // stale: its process is gone
    }
    throw new Error(`could not take the lock ${file}`);
  }

  async release(): Promise<void> {
    heldHere.delete(this.file);
    await unlink(this.file).catch(() => undefined);
  }
}
