import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DATA_START, QueueCorruptError, RECORD_HEADER, RingFile } from '../../../src/queue/disk/ring-file.js';
import { SimulatedDisk } from '../../helpers/simulated-disk.js';

type Op =
  | { op: 'append'; sizes: number[] }
  | { op: 'ack'; n: number }
  | { op: 'sync'; lazy: boolean }
  | { op: 'syncCrash'; lazy: boolean }
  | { op: 'failWrite'; lazy: boolean }
  | { op: 'failSync'; which: number; lazy: boolean }
  | { op: 'reopen' }
  | { op: 'crash'; torn: number; keep: boolean[] };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      op: fc.constant('append' as const),
      sizes: fc.array(fc.integer({ min: 0, max: 300 }), { minLength: 1, maxLength: 8 }),
    }),
  },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('ack' as const), n: fc.integer({ min: 1, max: 10 }) }) },
  // `lazy`: the header after the records' fsync gets none of its own (RingFile.sync).
  { weight: 3, arbitrary: fc.record({ op: fc.constant('sync' as const), lazy: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('syncCrash' as const), lazy: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('failWrite' as const), lazy: fc.boolean() }) },
  // The data's fsync fails, or the header's.
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant('failSync' as const),
      which: fc.constantFrom(1, 2),
      lazy: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ op: 'reopen' as const }) },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('crash' as const),
      torn: fc.double({ min: 0, max: 1, noNaN: true }),
      keep: fc.array(fc.boolean(), { maxLength: 8 }),
    }),
  },
);

const CAPACITY = 4096; // small, so that the ring wraps many times

function payloadFor(seq: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (seq * 31 + i * 7) & 0xff;
  return b;
}

async function readAll(ring: RingFile) {
  return ring.read(ring.head, ring.headSeq, Number.MAX_SAFE_INTEGER);
}

describe('RingFile against a model, with crashes', () => {
  it('never loses a synced, unacknowledged record and never returns garbage', async () => {
    // Fixed-size records line up with the previous lap's, the hardest case for telling old from new;
    // frames whose size divides the capacity end exactly at the ring's end, lap after lap.
    const dividing = [64, 128, 256, 512].map((f) => f - RECORD_HEADER);
    await fc.assert(
      fc.asyncProperty(
        fc.array(opArb, { minLength: 1, maxLength: 120 }),
        fc.option(fc.constantFrom(0, 40, 100, 500, ...dividing)),
        async (ops, fixed) => {
          const disk = new SimulatedDisk();
          // Each ring gets a file of its own: once it is "dead" (a crash), what it still writes is dropped.
          let generation = 0;
          let failNext = false; // the next write fails (EIO), as a disk error would
          let failSyncIn = 0; // the fsync this many from now fails (EIO)
          const fileFor = () => {
            const mine = ++generation;
            const f = disk.file();
            const write = (...a: Parameters<typeof f.write>) => {
              if (mine !== generation) return Promise.resolve();
              if (failNext) {
                failNext = false;
                return Promise.reject(Object.assign(new Error('EIO'), { code: 'EIO' }));
              }
              return f.write(...a);
            };
            const sync = () => {
              if (mine !== generation) return Promise.resolve();
              if (failSyncIn > 0 && --failSyncIn === 0)
                return Promise.reject(Object.assign(new Error('EIO'), { code: 'EIO' }));
              return f.sync();
            };
            return { ...f, write, sync };
          };
          let ring = await RingFile.create(fileFor(), { capacity: CAPACITY });
          // The model: payload size of every record by sequence; what is synced; what is acknowledged.
          const sizes = new Map<number, number>();
          const failed = new Map<number, number[]>(); // sizes once appended at a sequence whose write failed
          let syncedSeq = 0; // records < syncedSeq were durable at the last completed sync
          let ackedSeq = 0; // records < ackedSeq are acknowledged (in memory)
          let durableAckSeq = 0; // the acknowledged head at the last completed sync
          // After a lazy sync the header naming the head is not durable yet: the head known durable
          // stays where it was (it may come back after a crash, never go past the acknowledged).
          const synced = () => {
            if (!ring.headerPending) durableAckSeq = ackedSeq;
          };

          /** Opens the ring a crash left: every record durable before it (below `durable`) survives. */
          const reopenAfterCrash = async (durable: number) => {
            ({ ring } = await RingFile.open(fileFor(), { capacity: CAPACITY }));
            // The head may go back (acknowledgements not yet on disk are replayed), never forward.
            expect(ring.headSeq).toBeGreaterThanOrEqual(durableAckSeq);
            expect(ring.headSeq).toBeLessThanOrEqual(ackedSeq);
            // Every synced record survives; unsynced ones may, but only whole.
            expect(ring.tailSeq).toBeGreaterThanOrEqual(durable);
            for (const seq of [...sizes.keys()]) if (seq >= ring.tailSeq) sizes.delete(seq);
            ackedSeq = durableAckSeq = ring.headSeq;
            syncedSeq = ring.tailSeq;
          };
          for (const o of ops) {
            if (o.op === 'append') {
              const payloads = o.sizes.map((s, i) => payloadFor(ring.tailSeq + i, fixed ?? s));
              const r = ring.append(payloads);
              if (r)
                payloads.forEach((p, i) => {
                  sizes.set(r.firstSeq + i, p.length);
                });
            } else if (o.op === 'ack') {
              const recs = await readAll(ring);
              const take = recs.slice(0, o.n);
              if (take.length > 0) {
                ring.setHead(take.at(-1)!.end, take.at(-1)!.seq + 1);
                ackedSeq = ring.headSeq;
              }
            } else if (o.op === 'sync') {
              await ring.sync(undefined, o.lazy);
              syncedSeq = ring.tailSeq;
              synced();
            } else if (o.op === 'failWrite' || o.op === 'failSync') {
              // A write or an fsync fails: the sync says so, and the appends not yet durable are
              // forgotten (their producers hear of it); what comes next carries a new incarnation.
              if (o.op === 'failWrite') failNext = true;
              else failSyncIn = o.which;
              // A write fails on an append; an fsync also where there is none, when the sync only
              // moves an empty ring to its next lap or writes a header.
              if (o.op === 'failWrite') {
                const r = ring.append([payloadFor(ring.tailSeq, fixed ?? 10)]);
                if (r) sizes.set(r.firstSeq, fixed ?? 10);
              }
              // Records the sync says are durable (before a header whose fsync then fails) must
              // survive a crash; the others of a failed sync need not: their producers hear it failed.
              let durableEarly = -1;
              const ok = await ring
                .sync(() => void (durableEarly = ring.syncedTailSeq), o.lazy)
                .then(
                  () => true,
                  () => false,
                );
              failNext = false;
              failSyncIn = 0;
              if (ok) synced();
              syncedSeq = ok ? ring.syncedTailSeq : Math.max(syncedSeq, durableEarly);
              if (ring.failed) await ring.recover();
              // Appends whose commit failed may still come back after a crash, before a header with the
              // new incarnation is on disk: whole and as written (the producer was told they failed and
              // sent them again: a duplicate, never a loss or garbage).
              for (const [seq, size] of [...sizes.entries()]) {
                if (seq < ring.tailSeq) continue;
                failed.set(seq, [...(failed.get(seq) ?? []), size]);
                sizes.delete(seq);
              }
            } else if (o.op === 'syncCrash') {
              // Power fails the moment the sync says its records are durable (before its header, when
              // it says so early): every record it called durable must come back.
              let durable = -1;
              await ring.sync(() => {
                if (durable >= 0) return;
                durable = ring.syncedTailSeq;
                disk.crash(() => 0);
                generation++;
              }, o.lazy);
              if (durable < 0) continue; // nothing to write: no crash
              await reopenAfterCrash(Math.max(durable, syncedSeq));
            } else if (o.op === 'reopen') {
              await ring.close();
              syncedSeq = ring.tailSeq;
              synced();
              ({ ring } = await RingFile.open(fileFor(), { capacity: CAPACITY }));
              expect(ring.headSeq).toBe(ackedSeq);
              expect(ring.tailSeq).toBe(syncedSeq);
            } else {
              await ring.settled(); // the writes reach the page cache; the crash decides what the disk keeps
              disk.crash(
                (len) => Math.floor(len * o.torn),
                (i) => o.keep[i] ?? false,
              );
              await reopenAfterCrash(syncedSeq);
            }
            // Nothing is ever written past the ring's end.
            await ring.settled();
            expect(disk.bytes().length).toBe(DATA_START + CAPACITY);
            // Whatever is durable and unacknowledged reads back exactly.
            const recs = await readAll(ring);
            expect(recs.map((r) => r.seq)).toEqual(Array.from({ length: recs.length }, (_, i) => ring.headSeq + i));
            for (const r of recs) {
              const could = [sizes.get(r.seq), ...(failed.get(r.seq) ?? [])].filter((x) => x !== undefined);
              expect(
                could.some((size) => r.payload.equals(payloadFor(r.seq, size))),
                `record ${r.seq}`,
              ).toBe(true);
            }
            expect(recs.length).toBe(ring.syncedTailSeq - ring.headSeq);
          }
        },
      ),
      {
        numRuns: 400,
        // Found by this test: a failed write moved to the next incarnation, which no header named
        // before the crash; the next process took the same one, and a later recovery adopted the
        // first process's bytes as its own records.
        examples: [
          [
            [
              { op: 'failWrite', lazy: false },
              { op: 'append', sizes: [0, 0, 0] },
              { op: 'crash', torn: 0.625, keep: [] },
              { op: 'append', sizes: [0] },
              { op: 'syncCrash', lazy: false },
            ],
            null,
          ],
          [
            [
              { op: 'failWrite', lazy: false },
              { op: 'append', sizes: [0] },
              { op: 'append', sizes: [0] },
              { op: 'crash', torn: 0, keep: [true] },
              { op: 'crash', torn: 0, keep: [] },
              { op: 'append', sizes: [0] },
            ],
            null,
          ],
        ],
      },
    );
  });

  it('reports a ring whose headers are both destroyed as corrupt instead of guessing', async () => {
    const disk = new SimulatedDisk();
    const ring = await RingFile.create(disk.file(), { capacity: CAPACITY });
    ring.append([Buffer.from('x')]);
    await ring.close();
    const b = Buffer.from(disk.bytes());
    b.fill(0xab, 0, 1024);
    disk.setBytes(b);
    await expect(RingFile.open(disk.file(), { capacity: CAPACITY })).rejects.toBeInstanceOf(QueueCorruptError);
  });
});

describe('RingFile crash cases', () => {
  it("does not take the rest of an older lap's record past a clean shutdown's tail for a torn write", async () => {
    const disk = new SimulatedDisk();
    let ring = await RingFile.create(disk.file(), { capacity: 1000 });
    // Lap one: 300-byte frames, all acknowledged. Lap two: 130-byte frames, kept, so the tail stops
    // inside an old record.
    ring.append([300, 300, 300].map((f, i) => payloadFor(i, f - RECORD_HEADER)));
    await ring.sync();
    const recs = await readAll(ring);
    ring.setHead(recs.at(-1)!.end, 3);
    await ring.sync();
    ring.append([130, 130, 130, 130, 130].map((f, i) => payloadFor(3 + i, f - RECORD_HEADER)));
    await ring.sync();
    expect(ring.tail % 1000).toBe(650);
    for (let round = 0; round < 3; round++) {
      await ring.close();
      const opened = await RingFile.open(disk.file(), { capacity: 1000 });
      expect(opened.report.tornRecords).toBe(0);
      expect(opened.report.tornBytes).toBe(0);
      ring = opened.ring;
      expect((await readAll(ring)).map((r) => r.seq)).toEqual([3, 4, 5, 6, 7]);
    }
    await ring.close();
  });

  it(
    "writes a batch that crosses the ring's end exactly at a record boundary in two places, not past the " + 'end',
    async () => {
      const disk = new SimulatedDisk();
      const ring = await RingFile.create(disk.file(), { capacity: 1000 });
      const p = (seq: number) => payloadFor(seq, 100 - RECORD_HEADER);
      ring.append(Array.from({ length: 8 }, (_, i) => p(i)));
      await ring.sync();
      const first = await readAll(ring);
      ring.setHead(first.at(-1)!.end, 8);
      await ring.sync();
      // Records 8 and 9 fill the lap exactly; 10 and 11 start the next one at offset 0.
      expect(ring.append([p(8), p(9), p(10), p(11)])).not.toBeNull();
      await ring.sync();
      expect(disk.bytes().length).toBe(DATA_START + 1000);
      const recs = await readAll(ring);
      expect(recs.map((r) => r.seq)).toEqual([8, 9, 10, 11]);
      for (const r of recs) expect(r.payload.equals(p(r.seq))).toBe(true);
      const { ring: back } = await RingFile.open(disk.file(), { capacity: 1000 });
      expect((await readAll(back)).map((r) => r.seq)).toEqual([8, 9, 10, 11]);
    },
  );

  const fill = (ring: RingFile, n: number, size: number) =>
    ring.append(Array.from({ length: n }, (_, i) => payloadFor(ring.tailSeq + i, size)));

  it('does not reuse space whose acknowledgement is not on disk yet', async () => {
    const disk = new SimulatedDisk();
    const ring = await RingFile.create(disk.file(), { capacity: 1000 });
    expect(fill(ring, 9, 76)).not.toBeNull(); // 9 x 100 bytes
    await ring.sync();
    const recs = await readAll(ring);
    ring.setHead(recs[6]!.end, 7); // acknowledged in memory only
    // Until a sync writes that head, only the 100 free bytes may be used.
    expect(fill(ring, 2, 76)).toBeNull();
    expect(fill(ring, 1, 76)).not.toBeNull();
    await ring.settled();
    disk.crash(
      () => Number.MAX_SAFE_INTEGER,
      () => true,
    ); // every unsynced write reached the disk
    const { ring: back } = await RingFile.open(disk.file(), { capacity: 1000 });
    expect(back.headSeq).toBe(0); // the acknowledgement was lost: replay, never skip
    const again = await readAll(back);
    expect(again.map((r) => r.seq)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    for (const r of again) expect(r.payload.equals(payloadFor(r.seq, 76))).toBe(true);
  });

  it('after a lazy sync, reuses the space its header frees only once the next sync made that header durable', async () => {
    const disk = new SimulatedDisk();
    const ring = await RingFile.create(disk.file(), { capacity: 1000 });
    expect(fill(ring, 8, 76)).not.toBeNull(); // 8 x 100 bytes
    await ring.sync();
    const recs = await readAll(ring);
    ring.setHead(recs[5]!.end, 6);
    expect(fill(ring, 1, 76)).not.toBeNull(); // seq 8
    // The records' fsync, then a header naming head 6 with no fsync of its own.
    await ring.sync(undefined, true);
    expect(ring.headerPending).toBe(true);
    expect(ring.durableHead).toBe(0);
    expect(fill(ring, 2, 76)).toBeNull(); // only the 100 bytes never used are free
    expect(fill(ring, 1, 76)).not.toBeNull(); // seq 9
    // The next records' fsync makes that header durable too: its head's space is free now.
    await ring.sync(undefined, true);
    expect(ring.durableHead).toBe(recs[5]!.end);
    expect(fill(ring, 6, 76)).not.toBeNull(); // seq 10-15, over seqs 0-5
    await ring.settled();
    // Every write not synced is lost: the last header (head 10) too.
    disk.crash(() => 0);
    const { ring: back } = await RingFile.open(disk.file(), { capacity: 1000 });
    expect(back.headSeq).toBe(6);
    const again = await readAll(back);
    expect(again.map((r) => r.seq)).toEqual([6, 7, 8, 9]);
    for (const r of again) expect(r.payload.equals(payloadFor(r.seq, 76))).toBe(true);
  });

  it("does not adopt a previous lap's record that lines up with the tail", async () => {
    const disk = new SimulatedDisk();
    const ring = await RingFile.create(disk.file(), { capacity: 1000 });
    for (let lap = 0; lap < 3; lap++) {
      fill(ring, 5, 76);
      await ring.sync();
      const recs = await readAll(ring);
      ring.setHead(recs.at(-1)!.end, recs.at(-1)!.seq + 1);
      await ring.sync();
    }
    const tailSeq = ring.tailSeq;
    await ring.settled();
    disk.crash(() => 0);
    const { ring: back, report } = await RingFile.open(disk.file(), { capacity: 1000 });
    expect(back.tailSeq).toBe(tailSeq);
    expect(report.recoveredRecords).toBe(0);
    expect(await readAll(back)).toEqual([]);
  });

  it('recovers records synced after the last header and discards a torn last write, counting it', async () => {
    const disk = new SimulatedDisk();
    const ring = await RingFile.create(disk.file(), { capacity: 4096 });
    fill(ring, 3, 50);
    await ring.sync();
    fill(ring, 2, 50);
    await ring.settled();
    disk.crash((len) => Math.floor(len * 0.75)); // the unsynced batch is one write: torn inside its second record
    const { ring: back, report } = await RingFile.open(disk.file(), { capacity: 4096 });
    expect(back.tailSeq).toBe(4); // the whole first record of the torn batch is kept
    expect((await readAll(back)).map((r) => r.seq)).toEqual([0, 1, 2, 3]);
    expect(report.tornRecords).toBe(1);
    expect(report.tornBytes).toBeGreaterThan(0);
  });

  it('a sync covers only the appends made before it: one made while it waits is left to the next', async () => {
    const disk = new SimulatedDisk({ slowWrites: true });
    const ring = await RingFile.create(disk.file(), { capacity: 4096 });
    fill(ring, 3, 50);
    const first = ring.sync(); // waits for the first batch's write
    fill(ring, 3, 50); // appended while that write is in flight
    await first;
    // The second batch was not written when the fsync ran: the reader must not be let at it yet.
    expect(ring.syncedTailSeq).toBe(3);
    // Whatever the header names must be on disk: a power cut now must not lose it (the second
    // batch may come back too, found by the recovery scan, but only whole and valid).
    disk.crash(() => 0);
    const { ring: back } = await RingFile.open(disk.file(), { capacity: 4096 });
    const got = await readAll(back);
    expect(got.map((r) => r.seq).slice(0, 3)).toEqual([0, 1, 2]);
    for (const r of got) expect(r.payload.equals(payloadFor(r.seq, 50))).toBe(true);
  });
});
