import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Destination } from '../../src/destinations/types.js';
import { silentLogger } from '../../src/log.js';
import { ReliableQueue } from '../../src/queue/disk/reliable-queue.js';
import { QUEUE_FILE, queueDir } from '../../src/queue/layout.js';
import { findOrphans, removeDrainedQueue, startDrain } from '../../src/queue/orphans.js';
import type { DestinationQueue } from '../../src/queue/types.js';
import { LogRecord } from '../../src/record.js';
import { SourceCounters } from '../../src/stats.js';
import { newDestinationStats } from '../../src/destinations/types.js';
import { scratchDir, waitFor } from '../helpers/agent.js';
import { testOrigin, testQueueOptions } from '../helpers/records.js';

async function queueWith(state: string, name: string, n: number, origin = testOrigin()): Promise<string> {
  const dir = queueDir(state, name);
  const q = await ReliableQueue.open(name, dir, testQueueOptions());
  await q.push(Array.from({ length: n }, (_, i) => new LogRecord(Buffer.from(`<13>orphan ${i}`), 1000 + i, origin)));
  await q.dispose();
  return dir;
}

/** A destination that takes everything from its queue and remembers it, in order. */
function collector(queue: DestinationQueue, got: string[]): Destination {
  let running = true;
  const loop = async () => {
    while (running) {
      const batch = queue.take(10);
      if (batch.length === 0) {
        await Promise.race([queue.waitForRecords(), new Promise((r) => setTimeout(r, 20))]);
        continue;
      }
      for (const r of batch) got.push(r.raw.toString());
      queue.ack(batch.length);
    }
  };
  let done: Promise<void> | null = null;
  return {
    name: 'collector',
    queue,
    stats: newDestinationStats(),
    start: () => void (done ??= loop()),
    stop: async () => {
      running = false;
      await done;
      return queue.stats().records;
    },
    describe: () => 'collector',
  };
}

describe('orphan queues', () => {
  it('finds queue directories no configured destination owns, and nothing else', async () => {
    const state = scratchDir();
    await queueWith(state, 'kept', 1);
    await queueWith(state, 'retired', 1);
    mkdirSync(queueDir(state, 'empty-dir'), { recursive: true });
    writeFileSync(path.join(state, 'queues', 'stray-file'), 'x');
    expect(findOrphans(state, ['kept'])).toEqual([{ name: 'retired', dir: queueDir(state, 'retired') }]);
    expect(findOrphans(scratchDir(), ['kept'])).toEqual([]);
  });

  it('removes a drained queue and its directory, but keeps a directory that holds evidence', async () => {
    const state = scratchDir();
    const a = await queueWith(state, 'a', 0);
    expect(await removeDrainedQueue(a)).toEqual(expect.arrayContaining([QUEUE_FILE, 'a/']));
    expect(existsSync(a)).toBe(false);
    const b = await queueWith(state, 'b', 0);
    writeFileSync(path.join(b, 'queue.dat.corrupted-1'), 'evidence');
    const removed = await removeDrainedQueue(b);
    expect(removed).toContain(QUEUE_FILE);
    expect(removed).not.toContain('b/');
    expect(existsSync(path.join(b, 'queue.dat.corrupted-1'))).toBe(true);
  });

  it('drains an orphan through the destination it is given, in order, then removes it', async () => {
    const state = scratchDir();
    const dir = await queueWith(state, 'retired', 25, testOrigin({ source: 'old_source' }));
    const got: string[] = [];
    const counters = new SourceCounters();
    const drain = await startDrain(
      { name: 'retired', dir },
      'into',
      (name, queue) => {
        expect(name).toBe('into<-retired');
        return collector(queue, got);
      },
      silentLogger(),
      counters,
      10,
    );
    expect(drain.initial).toBe(25);
    expect(await drain.done).toEqual({ drained: true, left: 0 });
    expect(got).toEqual(Array.from({ length: 25 }, (_, i) => `<13>orphan ${i}`));
    await waitFor('the directory removed', () => !existsSync(dir));
  });

  it('stopped before it is empty, leaves the rest where it was', async () => {
    const state = scratchDir();
    const dir = await queueWith(state, 'retired', 5);
    const drain = await startDrain(
      { name: 'retired', dir },
      'into',
      (_name, queue) => ({ ...collector(queue, []), start: () => undefined }), // sends nothing
      silentLogger(),
    );
    await drain.stop(100);
    expect(await drain.done).toEqual({ drained: false, left: 5 });
    expect(existsSync(path.join(dir, QUEUE_FILE))).toBe(true);
  });
});
