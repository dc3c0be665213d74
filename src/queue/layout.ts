import path from 'node:path';

/**
 * The on-disk layout of the queues, in one place: every queue lives in its own directory under
 * `<state_dir>/queues/`, named after its destination, and holds these files. The agent, the offline
 * tools (`sluice queue`, `sluice check`) and the orphan handling all find them through here.
 */

/** The ring file of a reliable queue, or of a normal queue's overflow (docs/queue-format.md). */
export const QUEUE_FILE = 'queue.sq';
/** What the directory belongs to (destination, mode, max_size, ring id), for the offline tools. */
export const META_FILE = 'queue.json';
/** A normal queue's memory, saved at shutdown and read back at the next start. */
export const MEMORY_FILE = 'memory.sq';
/** The directory's owner (PID, boot id and start time): one process per queue directory. */
export const LOCK_FILE = '.lock.pid';
/** The files that make a queue; anything else in its directory (a `.corrupted-*` file) is evidence. */
export const QUEUE_FILES = [QUEUE_FILE, META_FILE, MEMORY_FILE, LOCK_FILE] as const;
const CORRUPTED = '.corrupted-';

/** `<state_dir>/queues`: one directory per destination with a disk queue. */
export function queuesRoot(stateDir: string): string {
  return path.join(stateDir, 'queues');
}

/** The directory of a destination's disk queue. */
export function queueDir(stateDir: string, destination: string): string {
  return path.join(queuesRoot(stateDir), destination);
}

/** The paths of one queue directory's files. */
export class QueueLayout {
  readonly ring: string;
  readonly meta: string;
  readonly memory: string;
  readonly lock: string;
  /** A ring of a new max_size being filled from the old one. */
  readonly resizing: string;
  /** A fresh ring being filled with what a damaged one still holds. */
  readonly salvaging: string;
  /** A new ring until its header is on disk. */
  readonly creating: string;

  constructor(readonly dir: string) {
    this.ring = path.join(dir, QUEUE_FILE);
    this.meta = path.join(dir, META_FILE);
    this.memory = path.join(dir, MEMORY_FILE);
    this.lock = path.join(dir, LOCK_FILE);
    this.resizing = `${this.ring}.resize`;
    this.salvaging = `${this.ring}.salvage`;
    this.creating = `${this.ring}.new`;
  }

  static of(stateDir: string, destination: string): QueueLayout {
    return new QueueLayout(queueDir(stateDir, destination));
  }

  /** Where a damaged `file` of this directory is kept, renamed, as evidence: `<file>.corrupted-<UTC time>`. */
  static corrupted(file: string, at = new Date()): string {
    return `${file}${CORRUPTED}${at.toISOString().replace(/[:.]/g, '-')}`;
  }

  /** True for the name of a damaged file kept as evidence. */
  static isCorrupted(name: string): boolean {
    return name.includes(CORRUPTED);
  }
}
