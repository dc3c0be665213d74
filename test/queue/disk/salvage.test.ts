import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/log.js';
import { QUEUE_FILE, ReliableQueue } from '../../../src/queue/disk/reliable-queue.js';
import { checkFrame, DATA_START, RECORD_HEADER, RECORD_MAGIC, scanForSalvage, writeFrame } from '../../../src/queue/disk/ring-file.js';
import { LogRecord, newSourceStats } from '../../../src/record.js';
import { removeDir, tempDir } from '../../helpers/agent.js';
import { SimulatedDisk } from '../../helpers/simulated-disk.js';

const REGION = 6000;

/**
 * The model: every intact frame found by walking the region, kept in a map by sequence number,
 * the newest incarnation winning (then the later position). Simple, and it holds every record in
 * memory at once, which is what the real scan must not do.
 */
function modelSalvage(region: Buffer, minSeq: number): { seq: number; payload: string }[] {
  const found = new Map<number, { incarnation: number; payload: string }>();
  const magic = Buffer.alloc(4);
  magic.writeUInt32LE(RECORD_MAGIC, 0);
  let at = 0;
  for (;;) {
    const hit = region.indexOf(magic, at);
    if (hit < 0) break;
    const f = checkFrame(region, hit, REGION);
    if (f.kind === 'record') {
      const prev = found.get(f.seq);
      if (f.seq >= minSeq && (!prev || prev.incarnation <= f.incarnation)) {
        found.set(f.seq, { incarnation: f.incarnation, payload: region.subarray(hit + RECORD_HEADER, hit + RECORD_HEADER + f.length).toString('hex') });
      }
      at = hit + RECORD_HEADER + f.length;
    } else {
      at = hit + 1;
    }
  }
  return [...found.entries()].sort((a, b) => a[0] - b[0]).map(([seq, r]) => ({ seq, payload: r.payload }));
}

/** One write of consecutive records, as the ring makes them: at a place, from a sequence number, in one incarnation. */
const writeArb = fc.record({
  at: fc.integer({ min: 0, max: REGION - 1 }),
  firstSeq: fc.integer({ min: 0, max: 40 }),
  incarnation: fc.integer({ min: 1, max: 3 }),
  sizes: fc.array(fc.integer({ min: 0, max: 120 }), { minLength: 1, maxLength: 6 }),
});

describe('salvage scan', () => {
  it('finds what a scan holding every record in memory finds, in order, in batches no larger than asked, over overlapping writes and flipped bytes', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(writeArb, { minLength: 1, maxLength: 30 }),
        fc.array(fc.integer({ min: 0, max: REGION - 1 }), { maxLength: 5 }),
        fc.integer({ min: 0, max: 10 }),
        fc.constantFrom(64, 300, 1 << 20),
        async (writes, flips, minSeq, batchBytes) => {
          const region = Buffer.alloc(REGION);
          for (const w of writes) {
            let at = w.at;
            w.sizes.forEach((size, i) => {
              if (at + RECORD_HEADER + size > REGION) return;
              writeFrame(region, at, RECORD_MAGIC, w.firstSeq + i, w.incarnation, Buffer.alloc(size, (w.firstSeq + i) * 7 + w.incarnation));
              at += RECORD_HEADER + size;
            });
          }
          for (const f of flips) region[f] = region[f]! ^ 0x20;
          const disk = new SimulatedDisk();
          disk.setBytes(Buffer.concat([Buffer.alloc(DATA_START), region]));
          const scan = await scanForSalvage(disk.file(), REGION, minSeq);
          const got: { seq: number; payload: string }[] = [];
          for await (const batch of scan.batches(batchBytes)) {
            expect(batch.length).toBeGreaterThan(0);
            // A batch holds at most batchBytes of frames, unless a single record alone is larger.
            if (batch.length > 1) expect(batch.reduce((n, r) => n + RECORD_HEADER + r.payload.length, 0) - RECORD_HEADER - batch.at(-1)!.payload.length).toBeLessThan(batchBytes);
            for (const r of batch) got.push({ seq: r.seq, payload: r.payload.toString('hex') });
          }
          const want = modelSalvage(region, minSeq);
          expect(got).toEqual(want);
          expect(scan.records).toBe(want.length);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('ReliableQueue salvage', () => {
  let dir: string;
  afterEach(() => removeDir(dir));

  it('builds the fresh file beside the damaged one and swaps them only when done; a copy left by a crash is overwritten', async () => {
    dir = tempDir();
    const stats = newSourceStats();
    const origin = { source: 'in', from: 'h', format: 'syslog' as const, lenient: true, stats };
    const opts = { maxSize: 1 << 20, memBufSize: 1 << 16, sync: 'always' as const, syncInterval: 5, full: 'block' as const, logger: silentLogger(), statsOf: () => stats };
    let q = await ReliableQueue.open('out', dir, opts);
    await q.push(Array.from({ length: 3000 }, (_, i) => new LogRecord(Buffer.from(`<13>record ${i}`), 0, origin)));
    await q.dispose();
    const file = path.join(dir, QUEUE_FILE);
    const bytes = readFileSync(file);
    bytes.fill(0x5a, 0, 1024); // both header slots
    writeFileSync(file, bytes);
    writeFileSync(`${file}.salvage`, 'half a salvage from a crash');
    q = await ReliableQueue.open('out', dir, opts);
    expect(q.corruption).toMatchObject({ rotated: 1, salvaged: 3000 });
    expect(existsSync(`${file}.salvage`)).toBe(false);
    expect(readdirSync(dir).filter((f) => f.startsWith(`${QUEUE_FILE}.corrupted-`))).toHaveLength(1);
    const got: string[] = [];
    for (let i = 0; i < 100 && got.length < 3000; i++) {
      const batch = q.take(3000 - got.length);
      if (batch.length === 0) await Promise.race([q.waitForRecords(), new Promise((r) => setTimeout(r, 50))]);
      got.push(...batch.map((r) => r.raw.toString()));
    }
    expect(got).toEqual(Array.from({ length: 3000 }, (_, i) => `<13>record ${i}`));
    await q.dispose();
  });
});
