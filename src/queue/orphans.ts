import { existsSync, readdirSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import type { Destination } from '../destinations/types.js';
import type { Logger } from '../log.js';
import { SourceCounters } from '../stats.js';
import { NormalQueue } from './disk/normal-queue.js';
import { ReliableQueue } from './disk/reliable-queue.js';
import { readMetaSync, type QueueMeta } from './disk/queue-directory.js';
import { QUEUE_FILES, QueueLayout, queuesRoot } from './layout.js';
import type { DestinationQueue } from './types.js';

/** Queue directories left by destinations that are no longer configured, and how to empty them. */

export interface Orphan {
  name: string;
  dir: string;
}

/** Directories under `<stateDir>/queues/` holding a queue file that no configured destination owns. */
export function findOrphans(stateDir: string, configured: Iterable<string>): Orphan[] {
  const root = queuesRoot(stateDir);
  if (!existsSync(root)) return [];
  const known = new Set(configured);
  return readdirSync(root)
    .filter((name) => !known.has(name))
    .map((name) => ({ name, dir: path.join(root, name) }))
    .filter((o) => {
      const l = new QueueLayout(o.dir);
      return statSync(o.dir).isDirectory() && (existsSync(l.ring) || existsSync(l.memory));
    });
}

/**
 * Opens a queue directory as what it was (normal or reliable, at its file's size), taking its lock.
 * What happens to its records (drops, repairs) is counted in `counters` under their sources' names.
 */
export async function openExistingQueue(
  name: string,
  dir: string,
  logger: Logger,
  counters = new SourceCounters(),
): Promise<DestinationQueue> {
  const layout = new QueueLayout(dir);
  // No metadata (an older sluice, or a salvaged file): a reliable queue of the file's size.
  const meta: Partial<QueueMeta> = readMetaSync(dir) ?? {};
  const file = layout.ring;
  const maxSize = existsSync(file) ? statSync(file).size : (meta.max_size ?? 1 << 20);
  const options = {
    maxSize,
    memBufSize: 16 << 20,
    sync: 'interval' as const,
    syncInterval: 50,
    full: 'block' as const,
    logger,
    counters,
  };
  if (meta.mode === 'normal' || existsSync(layout.memory)) {
    return NormalQueue.open(name, dir, { ...options, qoutSize: 1000, memBufLength: 10_000, memBytes: 64 << 20 });
  }
  return ReliableQueue.open(name, dir, options);
}

/**
 * Removes the files of a queue that is empty, and the directory when nothing else is in it (a
 * `.corrupted-*` file, kept as evidence, keeps the directory). Returns what was removed.
 */
export async function removeDrainedQueue(dir: string): Promise<string[]> {
  const removed: string[] = [];
  for (const f of QUEUE_FILES) {
    if (existsSync(path.join(dir, f))) {
      await rm(path.join(dir, f), { force: true });
      removed.push(f);
    }
  }
  if (readdirSync(dir).length === 0) {
    await rm(dir, { recursive: true, force: true });
    removed.push(`${path.basename(dir)}/`);
  }
  return removed;
}

export interface Drain {
  orphan: Orphan;
  destination: Destination;
  queue: DestinationQueue;
  /** Records in the orphan when the drain started. */
  initial: number;
  /** Resolves once the orphan is empty (and its directory removed), or the drain was stopped. */
  done: Promise<{ drained: boolean; left: number }>;
  stop(timeoutMs: number): Promise<void>;
}

/**
 * Sends everything in an orphan queue through a new instance of a destination (its own connection),
 * freeing records as that destination confirms them. Once empty, the directory is removed (and
 * logged): its records were delivered, so nothing is lost by it.
 */
export async function startDrain(
  orphan: Orphan,
  destName: string,
  /**
   * A new instance of the destination `destName`, sending from `queue` (built by the caller: this layer knows no
   * destination types).
   */
  makeDestination: (name: string, queue: DestinationQueue, logger: Logger) => Destination,
  logger: Logger,
  /** The agent's counters: its records' fates count under their sources' names, as a live queue's do. */
  counters = new SourceCounters(),
  pollMs = 100,
): Promise<Drain> {
  const log = logger.child({ orphan: orphan.name, into: destName });
  const queue = await openExistingQueue(orphan.name, orphan.dir, log, counters);
  const destination = makeDestination(`${destName}<-${orphan.name}`, queue, log);
  const initial = queue.stats().records;
  log.info({ records: initial, dir: orphan.dir }, 'draining an orphan queue');
  destination.start();
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let finish: (r: { drained: boolean; left: number }) => void = () => undefined;
  const done = new Promise<{ drained: boolean; left: number }>((resolve) => (finish = resolve));
  const check = async (): Promise<void> => {
    if (stopped) return;
    if (queue.stats().records > 0) {
      timer = setTimeout(() => void check(), pollMs);
      return;
    }
    stopped = true;
    await destination.stop(1000);
    await queue.dispose();
    const removed = await removeDrainedQueue(orphan.dir);
    log.info(
      { records: initial, dir: orphan.dir, removed },
      'orphan queue drained: every record was delivered; removed its queue files',
    );
    finish({ drained: true, left: 0 });
  };
  timer = setTimeout(() => void check(), 0);
  return {
    orphan,
    destination,
    queue,
    initial,
    done,
    stop: async (timeoutMs: number) => {
      if (stopped) {
        await done;
        return;
      }
      stopped = true;
      clearTimeout(timer);
      const left = await destination.stop(timeoutMs);
      await queue.dispose();
      if (left > 0) log.info({ records: left }, 'orphan queue not fully drained; the rest stays on disk');
      finish({ drained: left === 0, left });
    },
  };
}
