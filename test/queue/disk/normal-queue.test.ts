import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { NormalQueue, type NormalQueueOptions } from '../../../src/queue/disk/normal-queue.js';
import { MEMORY_FILE, QUEUE_FILE } from '../../../src/queue/layout.js';
import { LogRecord } from '../../../src/record.js';
import { removeDir, scratchDir } from '../../helpers/agent.js';
import { testOrigin, testQueueOptions } from '../../helpers/records.js';
import { SourceCounters } from '../../../src/stats.js';

const counters = new SourceCounters();
const _stats = counters.of('in');
const origin = testOrigin({ source: 'in', from: '192.0.2.1', counters });
const rec = (i: number) => new LogRecord(Buffer.from(`<13>normal ${i}`), 1_700_000_000_000 + i, origin);
const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);
const texts = (rs: LogRecord[]) => rs.map((r) => r.raw.toString());
const expected = (from: number, to: number) => range(from, to).map((i) => `<13>normal ${i}`);

function opts(extra: Partial<NormalQueueOptions> = {}): NormalQueueOptions {
  return {
    ...testQueueOptions({ counters }),
    qoutSize: 5,
    memBufLength: 10,
    memBytes: 1 << 20,
    ...extra,
  };
}

/** Takes until `n` records came out or nothing more comes. */
async function drain(q: NormalQueue, n: number, batch = 4, ack = true): Promise<LogRecord[]> {
  const out: LogRecord[] = [];
  const deadline = Date.now() + 5000;
  while (out.length < n && Date.now() < deadline) {
    const got = q.take(Math.min(batch, n - out.length));
    if (got.length === 0) {
      await Promise.race([q.waitForRecords(), new Promise((r) => setTimeout(r, 20))]);
      continue;
    }
    if (ack) q.ack(got.length);
    out.push(...got);
  }
  return out;
}

describe('NormalQueue', () => {
  let dir: string;

  it(
    'keeps records in memory until qout + overflow are full, then spills to the file, and hands them out in ' + 'order',
    async () => {
      dir = scratchDir();
      const q = await NormalQueue.open('out', dir, opts());
      expect(q.push(range(0, 15).map(rec))).toBeUndefined(); // all in memory: committed at once
      expect(q.stats()).toMatchObject({ mode: 'normal', records: 15, memoryRecords: 15, diskBytes: 0 });
      const spilled = q.push(range(15, 40).map(rec));
      expect(spilled).toBeInstanceOf(Promise); // the file part commits after its fsync
      await spilled;
      expect(q.stats()).toMatchObject({ records: 40, memoryRecords: 15 });
      expect(q.stats().diskBytes).toBeGreaterThan(0);
      // While older records are in the file, new ones wait behind them in memory, which has room again.
      const got = await drain(q, 5);
      expect(texts(got)).toEqual(expected(0, 5));
      const diskBytes = q.stats().diskBytes;
      expect(q.push(range(40, 45).map(rec))).toBeUndefined();
      expect(q.stats()).toMatchObject({ records: 40, memoryRecords: 15, diskBytes });
      const rest = await drain(q, 40);
      expect(texts(rest)).toEqual(expected(5, 45));
      expect(q.stats()).toMatchObject({ records: 0, memoryRecords: 0, acked: 45, pushed: 45 });
      // Once the file is empty, memory is used again.
      expect(q.push([rec(45)])).toBeUndefined();
      await q.dispose();
    },
  );

  it('acknowledges across the memory and file parts, and a rewind hands both out again', async () => {
    dir = scratchDir();
    const q = await NormalQueue.open('out', dir, opts({ qoutSize: 2, memBufLength: 2 }));
    await q.push(range(0, 8).map(rec));
    const first = await drain(q, 6, 6, false); // 4 from memory, 2 from the file
    expect(texts(first)).toEqual(expected(0, 6));
    q.ack(5);
    q.rewind();
    expect(texts(await drain(q, 3))).toEqual(expected(5, 8));
    await q.dispose();
  });

  it(
    'saves the memory part at a clean shutdown and reads it back first, so a restart loses nothing and keeps the ' +
      'order',
    async () => {
      dir = scratchDir();
      let q = await NormalQueue.open('out', dir, opts());
      await q.push(range(0, 30).map(rec)); // 15 in memory, 15 in the file
      const inFlight = await drain(q, 3, 3, false); // handed out, not acknowledged: kept too
      expect(inFlight).toHaveLength(3);
      await q.dispose();
      expect(existsSync(path.join(dir, MEMORY_FILE))).toBe(true);
      q = await NormalQueue.open('out', dir, opts());
      expect(existsSync(path.join(dir, MEMORY_FILE))).toBe(false);
      expect(q.stats()).toMatchObject({ records: 30, memoryRecords: 15 });
      expect(texts(await drain(q, 30))).toEqual(expected(0, 30));
      await q.dispose();
      // Nothing left for a third start.
      q = await NormalQueue.open('out', dir, opts());
      expect(q.stats().records).toBe(0);
      await q.dispose();
    },
  );

  it('keeps only what was in the file when the process dies without shutting down', async () => {
    dir = scratchDir();
    const q = await NormalQueue.open('out', dir, opts());
    await q.push(range(0, 30).map(rec));
    // A crash: no dispose, so memory is never saved. A second opener would see our lock; copy the files instead.
    const copy = scratchDir();
    try {
      await new Promise((r) => setTimeout(r, 20)); // past a sync
      writeFileSync(path.join(copy, QUEUE_FILE), readFileSync(path.join(dir, QUEUE_FILE)));
      const after = await NormalQueue.open('out', copy, opts());
      const got = texts(await drain(after, 15));
      expect(got).toEqual(expected(15, 30)); // the 15 = qout_size + mem_buf_length in memory are the loss
      await new Promise((r) => setTimeout(r, 30));
      expect(after.take(100)).toEqual([]);
      expect(after.stats().records).toBe(0);
      await after.dispose();
    } finally {
      removeDir(copy);
      await q.dispose();
    }
  });

  it('salvages a damaged memory file, moves it aside and starts', async () => {
    dir = scratchDir();
    let q = await NormalQueue.open('out', dir, opts());
    await q.push(range(0, 10).map(rec));
    await q.dispose();
    const file = path.join(dir, MEMORY_FILE);
    const bytes = readFileSync(file);
    bytes.fill(0x77, 0, 1024); // both header slots
    writeFileSync(file, bytes);
    q = await NormalQueue.open('out', dir, opts());
    expect(q.stats().corruption).toMatchObject({ rotated: 1, salvaged: 10 });
    expect(readdirSync(dir).some((f) => f.startsWith(`${MEMORY_FILE}.corrupted-`))).toBe(true);
    expect(texts(await drain(q, 10))).toEqual(expected(0, 10));
    await q.dispose();
  });
});
