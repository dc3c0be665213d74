import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync, utimesSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { QueueLockedError } from '../../../src/queue/disk/directory-lock.js';
import { ReliableQueue, type ReliableQueueOptions } from '../../../src/queue/disk/reliable-queue.js';
import { QUEUE_FILE } from '../../../src/queue/layout.js';
import { LogRecord, type RecordOrigin } from '../../../src/record.js';
import { removeDir, tempDir, waitFor } from '../../helpers/agent.js';
import { FaultyDisk } from '../../helpers/simulated-disk.js';
import { testOrigin, testQueueOptions } from '../../helpers/records.js';
import { SourceCounters } from '../../../src/stats.js';

const counters = new SourceCounters();
const _stats = counters.of('tcp_in');
const origin = testOrigin({ counters });
const textOrigin: RecordOrigin = {
  source: 'app',
  from: '/var/log/app.log',
  format: 'text',
  lenient: false,
  counters,
  hostname: 'h1',
  appName: 'app',
  facility: 3,
  severity: 6,
};

function opts(extra: Partial<ReliableQueueOptions> = {}): ReliableQueueOptions {
  return testQueueOptions({ counters, ...extra });
}

const rec = (i: number, o = origin) => new LogRecord(Buffer.from(`<13>message ${i}`), 1_700_000_000_000 + i, o);

async function takeAll(q: ReliableQueue, n: number): Promise<LogRecord[]> {
  const out: LogRecord[] = [];
  const deadline = Date.now() + 5000;
  while (out.length < n && Date.now() < deadline) {
    const got = q.take(n - out.length);
    if (got.length === 0) await Promise.race([q.waitForRecords(), new Promise((r) => setTimeout(r, 50))]);
    out.push(...got);
  }
  return out;
}

/** A 400-byte record named by `tag` and `i` (`A3`), for the tests that fill a small ring. */
const big = (tag: string, i: number) => new LogRecord(Buffer.from(`<13>${tag}${i} ${'z'.repeat(400)}`), 0, origin);

/** What became of a push: committed, refused (and why), or still waiting after 3 s. */
const outcome = (p: Promise<void>) =>
  Promise.race([
    p.then(
      () => 'committed',
      (e: Error) => `refused: ${e.message}`,
    ),
    new Promise((r) => setTimeout(() => r('still waiting'), 3000)),
  ]);

/** Everything the queue hands out until it stops producing for a moment. */
async function takeAvailable(q: ReliableQueue): Promise<LogRecord[]> {
  const out: LogRecord[] = [];
  for (let idle = 0; idle < 3; ) {
    const got = q.take(100);
    if (got.length === 0) {
      idle++;
      await Promise.race([q.waitForRecords(), new Promise((r) => setTimeout(r, 10))]);
    } else {
      idle = 0;
      out.push(...got);
    }
  }
  return out;
}

describe('ReliableQueue', () => {
  let dir: string;
  afterEach(() => removeDir(dir));

  it(
    'reads ahead at most 4 MiB of a large backlog, even with a larger mem_buf_size, and still hands out all of ' + 'it',
    async () => {
      dir = tempDir();
      const q = await ReliableQueue.open('out', dir, opts({ maxSize: 64 << 20, memBufSize: 64 << 20 }));
      const body = 'x'.repeat(1000);
      const n = 12_000; // about 12 MB of records
      for (let i = 0; i < n; i += 1000) {
        await q.push(
          Array.from(
            { length: 1000 },
            (_, j) => new LogRecord(Buffer.from(`<13>${String(i + j).padStart(6, '0')} ${body}`), 0, origin),
          ),
        );
      }
      const first = await takeAll(q, 1);
      await waitFor('the read cache to fill', () => q.stats().memoryBytes > 3 << 20);
      await new Promise((r) => setTimeout(r, 50));
      expect(q.stats().memoryBytes).toBeLessThanOrEqual((4 << 20) + (1 << 20));
      const rest = await takeAll(q, n - 1);
      expect([...first, ...rest].map((r) => Number(r.raw.subarray(4, 10).toString()))).toEqual(
        Array.from({ length: n }, (_, i) => i),
      );
      await q.dispose();
    },
  );

  it(
    'reports itself congested while more than its write-behind waits for the disk, counts those bytes as memory, ' +
      'and lets waiters go once written',
    async () => {
      dir = tempDir();
      const disk = new FaultyDisk();
      const q = await ReliableQueue.open('out', dir, opts({ memBufSize: 64 << 10, openFile: disk.open }));
      disk.holdWrites();
      const release = () => disk.releaseWrites();
      const body = 'y'.repeat(1000);
      const batch = (from: number) =>
        Array.from({ length: 40 }, (_, i) => new LogRecord(Buffer.from(`<13>${from + i} ${body}`), 0, origin));
      void q.push(batch(0)); // about 40 KB: under the 64 KiB write-behind
      expect(q.congested()).toBe(false);
      expect(q.isFull()).toBe(false);
      void q.push(batch(40)); // about 80 KB waiting for the disk
      expect(q.congested()).toBe(true);
      expect(q.isFull()).toBe(false); // congestion is not fullness: full policies do not drop for it
      expect(q.stats().memoryBytes).toBeGreaterThan(80_000);
      let waited = false;
      const wait = q.waitUncongested().then(() => (waited = true));
      await new Promise((r) => setTimeout(r, 30));
      expect(waited).toBe(false);
      release();
      await wait;
      expect(q.congested()).toBe(false);
      const got = await takeAll(q, 80);
      expect(got.map((r) => Number(r.raw.toString().split(' ')[0]!.slice(4)))).toEqual(
        Array.from({ length: 80 }, (_, i) => i),
      );
      expect(q.stats().memoryBytes).toBeLessThan(90_000); // only the records handed out remain in memory
      await q.dispose();
    },
  );

  it('commits after fsync, hands records out in order and frees them on ack', async () => {
    dir = tempDir();
    const q = await ReliableQueue.open('out', dir, opts());
    const committed = q.push([rec(1), rec(2), rec(3, textOrigin)]);
    expect(committed).toBeInstanceOf(Promise);
    await committed;
    const got = await takeAll(q, 3);
    expect(got.map((r) => r.raw.toString())).toEqual(['<13>message 1', '<13>message 2', '<13>message 3']);
    expect(got[0]!.receivedAt).toBe(1_700_000_000_001);
    expect(got[0]!.origin).toMatchObject({ source: 'tcp_in', from: '192.0.2.9', format: 'syslog', lenient: true });
    expect(got[0]!.origin.counters).toBe(counters);
    expect(got[2]!.origin).toMatchObject({
      source: 'app',
      format: 'text',
      hostname: 'h1',
      appName: 'app',
      facility: 3,
      severity: 6,
    });
    q.ack(2);
    expect(q.stats()).toMatchObject({ records: 1, inFlight: 1, pushed: 3, acked: 2 });
    await q.dispose();
  });

  it('replays every unacknowledged record after a restart, in order, and not the acknowledged ones', async () => {
    dir = tempDir();
    let q = await ReliableQueue.open('out', dir, opts());
    await q.push(Array.from({ length: 100 }, (_, i) => rec(i)));
    const first = await takeAll(q, 40);
    q.ack(30); // 30 acknowledged, 10 in flight: those are sent again
    await q.dispose();
    q = await ReliableQueue.open('out', dir, opts());
    const again = await takeAll(q, 70);
    expect(first).toHaveLength(40);
    expect(again.map((r) => r.raw.toString())).toEqual(Array.from({ length: 70 }, (_, i) => `<13>message ${i + 30}`));
    expect(q.take(10)).toEqual([]);
    await q.dispose();
  });

  it('sends a rewound batch again', async () => {
    dir = tempDir();
    const q = await ReliableQueue.open('out', dir, opts());
    await q.push([rec(1), rec(2)]);
    expect((await takeAll(q, 2)).length).toBe(2);
    q.rewind();
    expect((await takeAll(q, 2)).map((r) => r.raw.toString())).toEqual(['<13>message 1', '<13>message 2']);
    await q.dispose();
  });

  it("refuses a second opener with the holder's PID, and takes over a stale lock", async () => {
    dir = tempDir();
    const q = await ReliableQueue.open('out', dir, opts());
    await expect(ReliableQueue.open('out', dir, opts())).rejects.toThrow(QueueLockedError);
    await expect(ReliableQueue.open('out', dir, opts())).rejects.toThrow(
      `queue directory ${dir} is held by PID ${process.pid}`,
    );
    await q.dispose();
    // A lock left by a process that is gone.
    const dead = spawn(process.execPath, ['-e', '0']);
    const pid = dead.pid!;
    await new Promise((r) => dead.on('exit', r));
    writeFileSync(path.join(dir, '.lock.pid'), `${pid}\n`);
    const again = await ReliableQueue.open('out', dir, opts());
    expect(readFileSync(path.join(dir, '.lock.pid'), 'utf8').split('\n')[0]).toBe(String(process.pid));
    await again.dispose();
    expect(existsSync(path.join(dir, '.lock.pid'))).toBe(false);
  });

  it(
    'takes over a lock left by a power loss whose PID now belongs to another live process, and refuses one whose ' +
      'holder still runs',
    async () => {
      dir = tempDir();
      const other = spawn('sleep', ['30']);
      try {
        const pid = other.pid!;
        await waitFor('the process to start', () => existsSync(`/proc/${pid}/stat`));
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
        const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
        const lock = path.join(dir, '.lock.pid');
        const opensOver = async (text: string, mtime?: Date) => {
          writeFileSync(lock, text);
          if (mtime) utimesSync(lock, mtime, mtime);
          const q = await ReliableQueue.open('out', dir, opts());
          expect(readFileSync(lock, 'utf8').split('\n')[0]).toBe(String(process.pid));
          await q.dispose();
        };
        // Written in an earlier boot: whatever now runs under that PID is not its holder.
        await opensOver(`${pid}\nstart=${start}\nboot=00000000-0000-0000-0000-000000000000\n`);
        // This boot, but the PID's process started at another time: a reused PID.
        await opensOver(`${pid}\nstart=${Number(start) + 1}\nboot=${boot}\n`);
        // A lock from before start times were recorded, older than the process now at its PID.
        await opensOver(`${pid}\n`, new Date(Date.now() - 3_600_000));
        // The holder named exactly (this boot, its start time): refused, naming it.
        writeFileSync(lock, `${pid}\nstart=${start}\nboot=${boot}\n`);
        await expect(ReliableQueue.open('out', dir, opts())).rejects.toThrow(`is held by PID ${pid}`);
      } finally {
        other.kill();
      }
    },
  );

  it('reports full and, under drop_newest, drops and counts instead of growing', async () => {
    dir = tempDir();
    const q = await ReliableQueue.open('out', dir, opts({ maxSize: 4096 + 8192, full: 'drop_newest' }));
    const big = (i: number) => new LogRecord(Buffer.alloc(1000, 0x41 + (i % 26)), 0, origin);
    await q.push(Array.from({ length: 20 }, (_, i) => big(i)));
    expect(q.isFull()).toBe(true);
    const st = q.stats();
    expect(st.pushed).toBeLessThan(20);
    expect(st.dropped.queue_full).toBe(20 - st.pushed);
    await q.dispose();
  });

  it('rotates a file whose header is destroyed, salvages its records and keeps going', async () => {
    dir = tempDir();
    let q = await ReliableQueue.open('out', dir, opts());
    await q.push(Array.from({ length: 10 }, (_, i) => rec(i)));
    await q.dispose();
    const file = path.join(dir, QUEUE_FILE);
    const bytes = readFileSync(file);
    bytes.fill(0x5a, 0, 1024); // both header slots
    writeFileSync(file, bytes);
    q = await ReliableQueue.open('out', dir, opts());
    expect(q.corruption).toMatchObject({ rotated: 1, salvaged: 10 });
    expect(readdirSync(dir).filter((f) => f.startsWith(`${QUEUE_FILE}.corrupted-`))).toHaveLength(1);
    expect((await takeAll(q, 10)).map((r) => r.raw.toString())).toEqual(
      Array.from({ length: 10 }, (_, i) => `<13>message ${i}`),
    );
    await q.dispose();
  });

  it('opens whatever single byte is flipped or wherever the file is cut, and returns only real records', async () => {
    dir = tempDir();
    const seed = await ReliableQueue.open('out', dir, opts({ maxSize: 4096 + 4096 }));
    await seed.push(Array.from({ length: 12 }, (_, i) => rec(i)));
    const taken = await takeAll(seed, 3);
    seed.ack(taken.length);
    await seed.dispose();
    const pristine = readFileSync(path.join(dir, QUEUE_FILE));
    const valid = new Set(Array.from({ length: 12 }, (_, i) => `<13>message ${i}`));
    await fc.assert(
      fc.asyncProperty(
        fc.nat(pristine.length - 1),
        fc.integer({ min: 1, max: 255 }),
        fc.boolean(),
        async (at, xor, cut) => {
          const d = tempDir();
          try {
            const b = Buffer.from(pristine);
            if (cut) writeFileSync(path.join(d, QUEUE_FILE), b.subarray(0, at));
            else {
              b[at]! ^= xor;
              writeFileSync(path.join(d, QUEUE_FILE), b);
            }
            const q = await ReliableQueue.open('out', d, opts({ maxSize: 4096 + 4096 }));
            const got = await takeAvailable(q);
            for (const r of got) expect(valid.has(r.raw.toString())).toBe(true);
            const seqs = got.map((r) => Number(r.raw.toString().split(' ')[1]));
            expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
            await q.dispose();
          } finally {
            removeDir(d);
          }
        },
      ),
      { numRuns: 150 },
    );
  });
});

void waitFor;

describe('ReliableQueue, damaged files: what is counted lost, and the ring id', () => {
  let dir: string;
  afterEach(() => removeDir(dir));

  it(
    'counts, record for record, what a file cut short lost: inside the header area, and inside the ' + 'records',
    async () => {
      dir = tempDir();
      const seed = await ReliableQueue.open('out', dir, opts({ maxSize: 1 << 20 }));
      await seed.push(Array.from({ length: 500 }, (_, i) => rec(i)));
      const acked = await takeAll(seed, 20);
      seed.ack(acked.length);
      await seed.dispose();
      const pristine = readFileSync(path.join(dir, QUEUE_FILE));
      // Cut after both header slots but before the records; then at seeded places inside the records.
      let x = 7;
      const cuts = [700, 4096, ...Array.from({ length: 6 }, () => 4096 + ((x = (x * 48271) % 2147483647) % 20_000))];
      for (const cut of cuts) {
        const d = tempDir();
        try {
          writeFileSync(path.join(d, QUEUE_FILE), pristine.subarray(0, cut));
          const q = await ReliableQueue.open('out', d, opts({ maxSize: 1 << 20 }));
          const got = (await takeAvailable(q)).map((r) => r.raw.toString());
          const c = q.stats().corruption;
          expect(c.rotated, `cut at ${cut}`).toBe(1);
          // 480 records were unacknowledged: each is either handed out now or counted lost.
          expect(got.length + c.lostRecords, `cut at ${cut}`).toBe(480);
          if (cut <= 4096) expect(c.lostRecords).toBe(480);
          else expect(c.lostBytes).toBeGreaterThan(0);
          await q.dispose();
        } finally {
          removeDir(d);
        }
      }
    },
  );

  it(
    "takes its ring id from the file's header: a salvaged file never goes by the old id, whatever queue.json " + 'says',
    async () => {
      dir = tempDir();
      const q1 = await ReliableQueue.open('out', dir, opts());
      await q1.push(Array.from({ length: 10 }, (_, i) => rec(i)));
      const oldId = q1.durableId;
      await q1.dispose();
      // Damage both header slots: the next open rotates the file and salvages its records.
      const file = path.join(dir, QUEUE_FILE);
      const b = readFileSync(file);
      b.fill(0xab, 0, 1024);
      writeFileSync(file, b);
      const q2 = await ReliableQueue.open('out', dir, opts());
      const newId = q2.durableId;
      expect(newId).not.toBe(oldId);
      expect(newId).toMatch(/^[0-9a-f-]{36}$/);
      await q2.dispose();
      // A crash between the renames and the queue.json write leaves the old id there.
      const meta = path.join(dir, 'queue.json');
      writeFileSync(meta, readFileSync(meta, 'utf8').replace(newId, oldId));
      const q3 = await ReliableQueue.open('out', dir, opts());
      expect(q3.durableId).toBe(newId);
      expect((await takeAll(q3, 10)).map((r) => r.raw.toString())).toEqual(
        Array.from({ length: 10 }, (_, i) => `<13>message ${i}`),
      );
      await q3.dispose();
    },
  );
});

describe('ReliableQueue on a full disk', () => {
  it(
    'takes records again once it has drained, while the disk stays full (into blocks its file already ' + 'holds)',
    async () => {
      const fs = tempDir();
      const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', fs], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`mount failed (this test needs root): ${r.stderr}`);
      try {
        const q = await ReliableQueue.open('out', path.join(fs, 'q'), opts({ maxSize: 1 << 20, sync: 'always' }));
        const big = (i: number) => new LogRecord(Buffer.from(`<13>message ${i} ${'z'.repeat(900)}`), 0, origin);
        // 300 KB written (the file's first blocks), all delivered.
        await q.push(Array.from({ length: 300 }, (_, i) => big(i)));
        q.ack((await takeAll(q, 300)).length);
        await new Promise((res) => setTimeout(res, 50));
        // Fill what is left of the disk.
        spawnSync('dd', ['if=/dev/zero', `of=${path.join(fs, 'filler')}`, 'bs=64k'], { encoding: 'utf8' });
        // Still full: the next records go to the start of the file, which it already holds.
        await q.push(Array.from({ length: 50 }, (_, i) => big(1000 + i)));
        const again = await takeAll(q, 50);
        expect(again.map((x) => x.raw.toString().split(' ')[1])).toEqual(
          Array.from({ length: 50 }, (_, i) => String(1000 + i)),
        );
        await q.dispose();
      } finally {
        spawnSync('umount', ['-l', fs]);
        removeDir(fs);
      }
    },
  );
});

describe('ReliableQueue, full: block, pushes that wait for room', () => {
  // A batch that did not fit waits for room; pushes made meanwhile wait behind it. When room comes,
  // a push made just then (by a producer that was itself waiting for room) must not overtake those
  // still waiting: an exactly-once receiver keeps each stream's highest position, and would drop
  // the overtaken lines as already written. Each run makes the late push after another number of
  // microtask turns, to land anywhere in the hand-over.
  it('keeps call order, whatever turn of the event loop the room comes in', async () => {
    for (let turns = 0; turns < 24; turns++) {
      const dir = tempDir();
      try {
        const q = await ReliableQueue.open('out', dir, opts({ maxSize: 4096 + 64 * 1024, sync: 'always' }));
        const batch = (tag: string, n: number) => Array.from({ length: n }, (_, i) => big(tag, i));
        // A fills the ring past "full" and does not fit whole: its rest waits for room.
        const a = q.push(batch('A', 200));
        const b = q.push(batch('B', 5)); // waits behind A's rest
        let c: Promise<void> | undefined;
        const late = q.waitForSpace().then(async () => {
          for (let t = 0; t < turns; t++) await null;
          c = q.push(batch('C', 5));
        });
        const seen: string[] = [];
        for (let round = 0; round < 200 && seen.length < 210; round++) {
          const got = q.take(1000);
          if (got.length === 0) {
            await Promise.race([q.waitForRecords(), new Promise((r) => setTimeout(r, 20))]);
            continue;
          }
          for (const r of got) seen.push(r.raw.toString().split(' ')[0]!.slice(4));
          q.ack(got.length);
        }
        await Promise.all([a, b, late]);
        await c;
        const want = [...batch('A', 200), ...batch('B', 5), ...batch('C', 5)].map((r) =>
          r.raw.toString().split(' ')[0]!.slice(4),
        );
        expect(seen, `late push after ${turns} turns`).toEqual(want);
        await q.dispose();
      } finally {
        removeDir(dir);
      }
    }
  });
});

describe('ReliableQueue, full: block, the part written fails', () => {
  // The rest of a batch waits for room. When the part written fails its commit, the producer must
  // hear at once, not once there is room: until it hears, a later batch of its own that waits for
  // room in the router could be appended when room comes, ahead of this one sent again.
  it('refuses the batch as soon as its part written fails, while there is still no room', async () => {
    const dir = tempDir();
    try {
      const disk = new FaultyDisk();
      const q = await ReliableQueue.open(
        'out',
        dir,
        opts({ maxSize: 4096 + 64 * 1024, sync: 'always', openFile: disk.open }),
      );
      await q.push(Array.from({ length: 100 }, (_, i) => big('F', i))); // most of the ring, never acknowledged
      disk.failWrites = 'ENOSPC';
      const a = q.push(Array.from({ length: 100 }, (_, i) => big('A', i)))!;
      const b = q.push([big('B', 0)])!; // held behind A's rest
      expect(await outcome(a)).toMatch(/^refused: ENOSPC/);
      expect(await outcome(b)).toMatch(/^refused: ENOSPC/);
      disk.failWrites = null;
      await q.dispose();
    } finally {
      removeDir(dir);
    }
  });
});

describe('ReliableQueue, full: block, closed while a batch waits for room', () => {
  it('refuses the rest of the batch and the pushes held behind it (never appends after close)', async () => {
    const dir = tempDir();
    try {
      const q = await ReliableQueue.open('out', dir, opts({ maxSize: 4096 + 64 * 1024, sync: 'always' }));
      const a = q.push(Array.from({ length: 200 }, (_, i) => big('A', i)))!; // does not fit: its rest waits
      const b = q.push([big('B', 0)])!;
      await q.close();
      expect(await outcome(a)).toMatch(/^refused: queue out closed/);
      expect(await outcome(b)).toMatch(/^refused: queue out closed/);
      await q.dispose();
    } finally {
      removeDir(dir);
    }
  });
});

describe('ReliableQueue created on a full disk', () => {
  it('a start that fails leaves no ring file behind: the next start makes a clean one, with nothing to rotate', async () => {
    const dir = tempDir();
    try {
      const disk = new FaultyDisk();
      disk.failWrites = 'ENOSPC';
      await expect(ReliableQueue.open('out', dir, opts({ openFile: disk.open }))).rejects.toThrow(/ENOSPC/);
      expect(disk.openFiles()).toBe(0);
      expect(readdirSync(dir).filter((f) => f.startsWith(QUEUE_FILE))).toEqual([]);
      disk.failWrites = null;
      const q = await ReliableQueue.open('out', dir, opts({ openFile: disk.open }));
      // Not taken for a damaged file whose loss nothing can say.
      expect(q.corruption.rotated).toBe(0);
      expect(readdirSync(dir).filter((f) => f.startsWith(QUEUE_FILE))).toEqual([QUEUE_FILE]);
      await q.push([rec(1), rec(2)]);
      expect((await takeAll(q, 2)).map((r) => r.raw.toString())).toEqual(['<13>message 1', '<13>message 2']);
      await q.dispose();
    } finally {
      removeDir(dir);
    }
  });
});

describe('ReliableQueue on a disk whose fsync fails', () => {
  it(
    'refuses what producers push while it recovers from a failed fsync: every commit it reports holds, record for ' +
      'record',
    async () => {
      const dir = tempDir();
      try {
        const disk = new FaultyDisk();
        const q = await ReliableQueue.open('out', dir, opts({ sync: 'always', openFile: disk.open }));
        const committed: number[] = [];
        const refused: number[] = [];
        const push = (ids: number[]) => {
          const c = q.push(ids.map((i) => rec(i)));
          return (c ?? Promise.resolve()).then(
            () => void committed.push(...ids),
            () => void refused.push(...ids),
          );
        };
        await push([0, 1]);
        // The disk fails the next fsync. A producer that pushes again as soon as it hears of the
        // failure (in the same turn of the event loop) pushes while the queue still recovers.
        disk.failSyncs = 'EIO';
        const resent: Promise<void>[] = [];
        const first = q.push([rec(2), rec(3)]);
        await first!.then(
          () => void committed.push(2, 3),
          () => {
            refused.push(2, 3);
            disk.failSyncs = null;
            resent.push(push([4, 5]));
          },
        );
        await Promise.all(resent);
        await push([6]);
        expect(refused).toContain(2);
        // What the queue holds is exactly what it said was committed, in order.
        const held = (await takeAvailable(q)).map((r) => Number(r.raw.toString().split(' ')[1]));
        expect(held).toEqual(committed.sort((a, b) => a - b));
        await q.dispose();
      } finally {
        removeDir(dir);
      }
    },
  );

  // After a failed sync the next header names a new incarnation: records written after it are found
  // by no recovery scan until that header is on disk. When the data's fsync works and that header's
  // write fails, the producers hear their commit failed, and send again: the queue must not keep
  // the records as well.
  it('forgets a batch whose data reached the disk when the header that alone could name it failed', async () => {
    const dir = tempDir();
    try {
      const disk = new FaultyDisk();
      const q = await ReliableQueue.open('out', dir, opts({ syncInterval: 60_000, openFile: disk.open }));
      const id = (r: LogRecord) => Number(r.raw.toString().split(' ')[1]);
      const first = q.push([rec(0)])!;
      disk.failSyncs = 'EIO';
      await expect(q.syncNow()).rejects.toThrow('EIO');
      expect(await outcome(first)).toMatch(/^refused: EIO/);
      disk.failSyncs = null;
      const second = q.push([rec(1), rec(2)])!;
      await q.settled(); // its records written; the fsync will work, the header's write will not
      disk.failWrites = 'ENOSPC';
      await expect(q.syncNow()).rejects.toThrow('ENOSPC');
      expect(await outcome(second)).toMatch(/^refused: ENOSPC/);
      disk.failWrites = null;
      const third = q.push([rec(3)]);
      await q.syncNow();
      await third;
      expect((await takeAvailable(q)).map(id)).toEqual([3]);
      await q.dispose();
      const reopened = await ReliableQueue.open('out', dir, opts());
      expect((await takeAvailable(reopened)).map(id)).toEqual([3]);
      await reopened.dispose();
    } finally {
      removeDir(dir);
    }
  });

  it('hands out what is committed after a sync failed just as the drained ring moved to its next lap', async () => {
    const dir = tempDir();
    try {
      const disk = new FaultyDisk();
      const q = await ReliableQueue.open('out', dir, opts({ syncInterval: 60_000, openFile: disk.open }));
      const id = (r: LogRecord) => Number(r.raw.toString().split(' ')[1]);
      // Part of a lap written and drained: the ring is empty, its tail in the middle of the lap.
      const first = q.push(Array.from({ length: 50 }, (_, i) => rec(i)));
      await q.syncNow();
      await first;
      q.ack((await takeAll(q, 50)).length);
      // The sync that makes the acknowledgement durable moves the empty ring to the start of its
      // next lap, and fails (a disk error).
      disk.failSyncs = 'EIO';
      await expect(q.syncNow()).rejects.toThrow('EIO');
      disk.failSyncs = null;
      // What is pushed now is committed and must come out.
      const again = q.push([rec(100), rec(101), rec(102)]);
      await q.syncNow();
      await again;
      expect((await takeAvailable(q)).map(id)).toEqual([100, 101, 102]);
      await q.dispose();
      // And after a restart.
      const reopened = await ReliableQueue.open('out', dir, opts());
      expect((await takeAvailable(reopened)).map(id)).toEqual([100, 101, 102]);
      await reopened.dispose();
    } finally {
      removeDir(dir);
    }
  });
});

describe('ReliableQueue, corruption found while running', () => {
  let dir: string;
  afterEach(() => removeDir(dir));

  it('rotates, resends every valid record, and keeps what is pushed during the rotation', async () => {
    dir = tempDir();
    const disk = new FaultyDisk();
    const q = await ReliableQueue.open('out', dir, opts({ memBufSize: 256, openFile: disk.open }));
    await q.push(Array.from({ length: 20 }, (_, i) => rec(i)));
    // Pushed while the damaged file is being rotated (as the fresh file is made): must land in the
    // fresh file, not the old one.
    let pushedDuring: Promise<void> | undefined;
    disk.onOpen = (file, create) => {
      if (create && file.endsWith('.salvage'))
        pushedDuring ??= q.push(Array.from({ length: 10 }, (_, i) => rec(20 + i)));
    };
    // Damage record 10's payload in place, behind the queue's back.
    const file = path.join(dir, QUEUE_FILE);
    const bytes = readFileSync(file);
    const at = bytes.indexOf(Buffer.from('<13>message 10'));
    expect(at).toBeGreaterThan(0);
    const fd = await import('node:fs/promises').then((m) => m.open(file, 'r+'));
    await fd.write(Buffer.from('X'), 0, 1, at + 5);
    await fd.close();
    const got: string[] = [];
    const deadline = Date.now() + 5000;
    while (q.corruption.rotated === 0 && Date.now() < deadline) {
      const batch = q.take(4);
      got.push(...batch.map((r) => r.raw.toString()));
      if (batch.length === 0) await Promise.race([q.waitForRecords(), new Promise((r) => setTimeout(r, 5))]);
    }
    expect(pushedDuring).toBeInstanceOf(Promise);
    expect(q.corruption.rotated).toBe(1);
    await pushedDuring;
    got.push(...(await takeAvailable(q)).map((r) => r.raw.toString()));
    const unique = new Set(got);
    const expected = Array.from({ length: 30 }, (_, i) => `<13>message ${i}`).filter((m) => m !== '<13>message 10');
    for (const m of expected) expect(unique.has(m)).toBe(true);
    expect(unique.has('<13>message 10')).toBe(false);
    expect(readdirSync(dir).filter((f) => f.startsWith(`${QUEUE_FILE}.corrupted-`))).toHaveLength(1);
    await q.dispose();
    // Nothing was acknowledged: all 29 valid records are still in the fresh file.
    const again = await ReliableQueue.open('out', dir, opts());
    expect((await takeAvailable(again)).map((r) => r.raw.toString())).toEqual(expected);
    await again.dispose();
  });
});

describe('ReliableQueue, max_size changed', () => {
  let dir: string;
  afterEach(() => removeDir(dir));

  it(
    'copies the backlog into a file of the new size, or keeps the old size when the backlog would not ' + 'fit',
    async () => {
      dir = tempDir();
      let q = await ReliableQueue.open('out', dir, opts({ maxSize: 1 << 20 }));
      await q.push(Array.from({ length: 3000 }, (_, i) => rec(i)));
      await q.dispose();
      const file = path.join(dir, QUEUE_FILE);
      q = await ReliableQueue.open('out', dir, opts({ maxSize: 2 << 20 }));
      expect(statSync(file).size).toBe(2 << 20);
      expect(q.corruption.rotated).toBe(0);
      const taken = await takeAll(q, 100);
      q.ack(taken.length);
      await q.dispose();
      // 2900 records of about 60 bytes do not fit in 64 KiB: the file keeps its size, nothing is lost.
      q = await ReliableQueue.open('out', dir, opts({ maxSize: 64 << 10 }));
      expect(statSync(file).size).toBe(2 << 20);
      const rest = await takeAll(q, 2900);
      expect(rest.map((r) => r.raw.toString())).toEqual(
        Array.from({ length: 2900 }, (_, i) => `<13>message ${100 + i}`),
      );
      await q.dispose();
    },
  );
});

describe('ReliableQueue in a process with nothing else to do', () => {
  it('keeps the process alive until a pending commit is synced', () => {
    const dir = tempDir();
    try {
      const dist = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../../dist');
      const script = `
        import { ReliableQueue } from '${dist}/queue/disk/reliable-queue.js';
        import { LogRecord } from '${dist}/record.js';
        import { SourceCounters } from '${dist}/stats.js';
        import { pino } from 'pino';
        const counters = new SourceCounters();
        const q = await ReliableQueue.open('q', ${JSON.stringify(dir)}, {
          maxSize: 1 << 20, memBufSize: 1 << 16, sync: 'interval', syncInterval: 50, full: 'block',
          logger: pino({ level: 'silent' }), counters});
        const origin = { source: 's', from: 'f', format: 'syslog', lenient: false, counters };
        await q.push([new LogRecord(Buffer.from('x'), 0, origin)]);
        console.log('committed');
        await q.dispose();
      `;
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
        encoding: 'utf8',
        timeout: 20_000,
        cwd: path.resolve(dist, '..'),
      });
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe('committed');
      expect(r.status).toBe(0);
    } finally {
      removeDir(dir);
    }
  });
});

describe('ReliableQueue, full: drop_oldest', () => {
  let dir: string;
  afterEach(() => removeDir(dir));

  it(
    'makes room by dropping the oldest unsent records, counts them, and keeps the newest in order, ' + 'durably',
    async () => {
      dir = tempDir();
      const small = opts({ maxSize: 4096 + 8192, full: 'drop_oldest' });
      let q = await ReliableQueue.open('out', dir, small);
      let next = 0;
      for (let b = 0; b < 40; b++) await q.push(Array.from({ length: 10 }, () => rec(next++)));
      const st = q.stats();
      expect(st.dropped.queue_full).toBeGreaterThan(0);
      expect(st.records + st.dropped.queue_full!).toBe(400);
      const kept = st.records;
      await q.dispose();
      q = await ReliableQueue.open('out', dir, small);
      const got = (await takeAll(q, kept)).map((r) => r.raw.toString());
      // The newest `kept` records, contiguous, ending with the last one pushed.
      expect(got).toEqual(Array.from({ length: kept }, (_, i) => `<13>message ${400 - kept + i}`));
      await q.dispose();
    },
  );

  it('drops the newest instead while the destination holds the oldest in flight', async () => {
    dir = tempDir();
    const q = await ReliableQueue.open('out', dir, opts({ maxSize: 4096 + 8192, full: 'drop_oldest' }));
    await q.push(Array.from({ length: 50 }, (_, i) => rec(i)));
    const inFlight = await takeAll(q, 5);
    expect(inFlight).toHaveLength(5);
    for (let b = 0; b < 30; b++) await q.push(Array.from({ length: 10 }, (_, i) => rec(1000 + b * 10 + i)));
    q.ack(5);
    const rest = (await takeAvailable(q)).map((r) => r.raw.toString());
    expect(rest.slice(0, 45)).toEqual(Array.from({ length: 45 }, (_, i) => `<13>message ${5 + i}`));
    expect(q.stats().dropped.queue_full).toBeGreaterThan(0);
    await q.dispose();
  });
});

describe('ReliableQueue, prealloc', () => {
  it('writes the whole file at creation with prealloc, and leaves it sparse without', async () => {
    const dirs = [tempDir(), tempDir()];
    try {
      const size = 8 << 20;
      for (const [i, prealloc] of [true, false].entries()) {
        const q = await ReliableQueue.open('out', dirs[i]!, opts({ maxSize: size, prealloc }));
        await q.dispose();
      }
      const allocated = dirs.map((d) => statSync(path.join(d, QUEUE_FILE)).blocks * 512);
      expect(statSync(path.join(dirs[0]!, QUEUE_FILE)).size).toBe(size);
      expect(allocated[0]).toBeGreaterThanOrEqual(size);
      expect(allocated[1]).toBeLessThan(size / 2);
    } finally {
      for (const d of dirs) removeDir(d);
    }
  });
});
