import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/log.js';
import { ReliableQueue } from '../../../src/queue/disk/reliable-queue.js';
import { QUEUE_FILE } from '../../../src/queue/layout.js';
import {
  checkFrame,
  DATA_START,
  encodeHeader,
  RECORD_HEADER,
  RECORD_MAGIC,
  SLOT_OFFSETS,
  writeFrame,
} from '../../../src/queue/disk/ring-file.js';
import { salvageInto, scanForSalvage } from '../../../src/queue/disk/salvage.js';
import { LogRecord } from '../../../src/record.js';
import { scratchDir } from '../../helpers/agent.js';
import { SimulatedDisk } from '../../helpers/simulated-disk.js';
import { SourceCounters } from '../../../src/stats.js';

const REGION = 6000;

/**
 * The model: every intact frame found by walking the region, kept in a map by sequence number,
 * the newest incarnation winning (then the later position). Simple, and it holds every record in
 * memory at once, which is what the real scan must not do.
 */
function modelSalvage(region: Buffer, minSeq: number): { seq: number; payload: string }[] {
  const frames: { seq: number; incarnation: number; payload: string }[] = [];
  const magic = Buffer.alloc(4);
  magic.writeUInt32LE(RECORD_MAGIC, 0);
  let at = 0;
  for (;;) {
    const hit = region.indexOf(magic, at);
    if (hit < 0) break;
    const f = checkFrame(region, hit, REGION);
    if (f.kind === 'record') {
      if (f.seq >= minSeq)
        frames.push({
          seq: f.seq,
          incarnation: f.incarnation,
          payload: region.subarray(hit + RECORD_HEADER, hit + RECORD_HEADER + f.length).toString('hex'),
        });
      at = hit + RECORD_HEADER + f.length;
    } else {
      at = hit + 1;
    }
  }
  // A later incarnation starts where the durable records ended: one that has a record at or before
  // seq s supersedes every earlier incarnation's record from s on.
  const superseded = (r: { seq: number; incarnation: number }) =>
    frames.some((o) => o.incarnation > r.incarnation && o.seq <= r.seq);
  const found = new Map<number, { incarnation: number; payload: string }>();
  for (const r of frames) {
    if (superseded(r)) continue;
    const prev = found.get(r.seq);
    if (!prev || prev.incarnation <= r.incarnation) found.set(r.seq, r);
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
  it(
    'finds what a scan holding every record in memory finds, in order, in batches no larger than asked, over ' +
      'overlapping writes and flipped bytes',
    async () => {
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
                writeFrame(
                  region,
                  at,
                  RECORD_MAGIC,
                  w.firstSeq + i,
                  w.incarnation,
                  Buffer.alloc(size, (w.firstSeq + i) * 7 + w.incarnation),
                );
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
              if (batch.length > 1)
                expect(
                  batch.reduce((n, r) => n + RECORD_HEADER + r.payload.length, 0) -
                    RECORD_HEADER -
                    batch.at(-1)!.payload.length,
                ).toBeLessThan(batchBytes);
              for (const r of batch) got.push({ seq: r.seq, payload: r.payload.toString('hex') });
            }
            const want = modelSalvage(region, minSeq);
            expect(got).toEqual(want);
            expect(scan.records).toBe(want.length);
          },
        ),
        { numRuns: 300 },
      );
    },
  );
});

describe('ReliableQueue salvage', () => {
  let dir: string;

  it(
    'builds the fresh file beside the damaged one and swaps them only when done; a copy left by a crash is ' +
      'overwritten',
    async () => {
      dir = scratchDir();
      const counters = new SourceCounters();
      const _stats = counters.of('in');
      const origin = { source: 'in', from: 'h', format: 'syslog' as const, lenient: true, counters };
      const opts = {
        maxSize: 1 << 20,
        memBufSize: 1 << 16,
        sync: 'always' as const,
        syncInterval: 5,
        full: 'block' as const,
        logger: silentLogger(),
        counters,
      };
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
    },
  );
});

describe('salvage after a recovery that stopped at a damaged record', () => {
  it(
    "leaves out the older incarnation's records past that point: they would overtake the lines read " + 'again',
    async () => {
      const { RingFile } = await import('../../../src/queue/disk/ring-file.js');
      const disk = new SimulatedDisk();
      const CAP = 4096;
      const p = (tag: string) => Buffer.from(tag.padEnd(50, '.'));
      let ring = await RingFile.create(disk.file(), { capacity: CAP });
      ring.append([0, 1, 2, 3, 4].map((i) => p(`a${i}`)));
      await ring.sync(); // the header names seq 5 as the tail
      ring.append([5, 6, 7, 8, 9].map((i) => p(`a${i}`)));
      await ring.settled(); // written, never synced (their producer never heard of a commit)
      disk.crash(
        (len) => len,
        () => true,
      ); // the process dies; the page cache keeps every write
      // A flipped byte in seq 5: the recovery scan takes it for a torn write and stops there.
      const bytes = Buffer.from(disk.bytes());
      const at = bytes.indexOf(Buffer.from('a5....'));
      bytes[at + 3] = bytes[at + 3]! ^ 0x55;
      disk.setBytes(bytes);
      ({ ring } = await RingFile.open(disk.file(), { capacity: CAP }));
      expect(ring.tailSeq).toBe(5);
      // Before the new incarnation writes anything, its header alone (tail 5) says they are stale.
      const early: number[] = [];
      for await (const batch of (await scanForSalvage(disk.file(), CAP, 0)).batches())
        for (const r of batch) early.push(r.seq);
      expect(early).toEqual([0, 1, 2, 3, 4]);
      // The next process (a new incarnation) writes fewer records there than the old one had.
      ring.append([p('b5'), p('b6')]);
      await ring.sync();
      const scan = await scanForSalvage(disk.file(), CAP, 0);
      const got: string[] = [];
      for await (const batch of scan.batches())
        for (const r of batch) got.push(`${r.seq}:${r.payload.toString().replace(/\.+$/, '')}`);
      expect(got).toEqual(['0:a0', '1:a1', '2:a2', '3:a3', '4:a4', '5:b5', '6:b6']);
    },
  );
});

describe('salvage of a damaged record with an older copy of its sequence number elsewhere', () => {
  it("does not take the older incarnation's copy outside the header's region for it; the damaged one is lost, counted", async () => {
    const CAP = 8192;
    const file = Buffer.alloc(DATA_START + CAP);
    const payload = (tag: string) => Buffer.from(`${tag} ${'x'.repeat(40)}`);
    const frame = RECORD_HEADER + payload('live16').length;
    // The live region: sequences 16..20 of incarnation 2 from offset 0, named by the header.
    for (let i = 0; i < 5; i++)
      writeFrame(file, DATA_START + i * frame, RECORD_MAGIC, 16 + i, 2, payload(`live${16 + i}`));
    const tail = 5 * frame;
    // Past the tail (same frame size): what incarnation 1 wrote for 16 and 17 before a crash forgot it (never durable).
    for (let i = 0; i < 2; i++)
      writeFrame(file, DATA_START + tail + i * frame, RECORD_MAGIC, 16 + i, 1, payload(`old_${16 + i}`));
    const header = encodeHeader({
      generation: 7,
      incarnation: 2,
      capacity: CAP,
      head: CAP, // the second lap's start: offset 0
      headSeq: 16,
      tail: CAP + tail,
      tailSeq: 21,
      ringId: '00000000-0000-4000-8000-000000000001',
    });
    header.copy(file, SLOT_OFFSETS[7 % 2]);
    // The first live record is damaged: a byte of its payload flips.
    file[DATA_START + RECORD_HEADER + 2]! ^= 0x40;
    const disk = new SimulatedDisk();
    disk.setBytes(file);
    const scan = await scanForSalvage(disk.file(), CAP, 16);
    const found: string[] = [];
    for await (const batch of scan.batches())
      for (const r of batch) found.push(`${r.seq}:${r.payload.toString().split(' ')[0]}`);
    expect(found).toEqual(['17:live17', '18:live18', '19:live19', '20:live20']);
    const fresh = new SimulatedDisk();
    const report = await salvageInto(
      disk.file(),
      'fresh',
      { openFile: async () => fresh.file(), capacity: CAP, fsync: true },
      { pos: CAP, seq: 16 },
    );
    expect(report.kept).toBe(4);
    expect(report.lostRecords).toBe(1);
  });
});
