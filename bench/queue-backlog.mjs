// npm run bench:backlog: how a reliable queue behaves with a large backlog.
//  1. Recovery time: open a queue holding 1 MiB, then 1 GiB of unacknowledged 200-byte records
//     (after a clean close), median of 5 opens; after a crash the recovery scan adds at most what was
//     written in the last sync interval (see docs/queue-format.md, Recovery).
//  2. Memory: fill a queue with BACKLOG_GIB (default 2) GiB while the destination is down (records
//     are taken and rewound, as a failing destination does), and report the peak RSS.
//  3. Salvage: a full 1 GiB queue file whose two header slots are destroyed is opened; the time
//     to rotate and salvage it, and the peak RSS while doing so.
// Runs each part in a fresh child process so that RSS figures are its own.
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';

const self = fileURLToPath(import.meta.url);
const root = process.env.BENCH_DIR ?? os.tmpdir();
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

async function queueModule() {
  const { ReliableQueue } = await import('../dist/queue/disk/reliable-queue.js');
  const { LogRecord } = await import('../dist/record.js');
  const { SourceCounters } = await import('../dist/stats.js');
  const counters = new SourceCounters();
  const origin = { source: 'tcp_in', from: '127.0.0.1', format: 'syslog', lenient: false, counters };
  const raw = Buffer.alloc(200, 0x61);
  const batch = Array.from({ length: 1000 }, () => new LogRecord(raw, Date.now(), origin));
  const open = (dir, maxSize) =>
    ReliableQueue.open('bench', dir, {
      maxSize,
      memBufSize: 64 * MiB,
      sync: 'interval',
      syncInterval: 50,
      full: 'block',
      logger: pino({ level: 'silent' }),
      counters,
    });
  return { open, batch };
}

/** Pushes until `bytes` of backlog are in the file; with `failing`, a consumer takes and rewinds meanwhile. */
async function fill(q, batch, bytes, failing) {
  let stop = false;
  const consumer = failing
    ? (async () => {
        while (!stop) {
          const got = q.take(4000);
          if (got.length === 0) await Promise.race([q.waitForRecords(), new Promise((r) => setTimeout(r, 20))]);
          else q.rewind(); // the destination failed: everything goes back
        }
      })()
    : null;
  const inFlight = [];
  while (q.stats().diskBytes < bytes) {
    const c = q.push(batch);
    if (c) inFlight.push(c);
    if (inFlight.length >= 64) await inFlight.shift();
  }
  await Promise.all(inFlight);
  stop = true;
  await consumer;
}

async function child(kind, arg) {
  const { open, batch } = await queueModule();
  if (kind === 'recovery') {
    const backlog = Number(arg);
    const dir = mkdtempSync(path.join(root, 'sluice-bench-backlog-'));
    try {
      let q = await open(dir, backlog + 64 * MiB);
      await fill(q, batch, backlog, false);
      const records = q.stats().records;
      await q.dispose();
      const times = [];
      for (let i = 0; i < 5; i++) {
        const t0 = process.hrtime.bigint();
        q = await open(dir, backlog + 64 * MiB);
        const t1 = process.hrtime.bigint();
        // First record available to the destination.
        while (q.take(1).length === 0) await q.waitForRecords();
        const t2 = process.hrtime.bigint();
        times.push([Number(t1 - t0) / 1e6, Number(t2 - t0) / 1e6]);
        q.rewind();
        await q.dispose();
      }
      times.sort((a, b) => a[0] - b[0]);
      console.log(JSON.stringify({ backlog, records, openMs: times[2][0], firstRecordMs: times[2][1] }));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  } else if (kind === 'salvage') {
    const size = Number(arg);
    const dir = mkdtempSync(path.join(root, 'sluice-bench-backlog-'));
    try {
      let q = await open(dir, size);
      const inFlight = [];
      while (q.stats().diskBytes < size - 8 * MiB) {
        const c = q.push(batch);
        if (c) inFlight.push(c);
        if (inFlight.length >= 64) await inFlight.shift();
      }
      await Promise.all(inFlight);
      const records = q.stats().records;
      await q.dispose();
      const fd = openSync(path.join(dir, 'queue.sq'), 'r+');
      writeSync(fd, Buffer.alloc(1024, 0x5a), 0, 1024, 0); // both header slots
      closeSync(fd);
      global.gc?.();
      const rssBefore = process.memoryUsage().rss;
      let peak = rssBefore;
      const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
      const t0 = process.hrtime.bigint();
      q = await open(dir, size);
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      clearInterval(sampler);
      peak = Math.max(peak, process.memoryUsage().rss);
      const salvaged = q.corruption.salvaged;
      await q.dispose();
      console.log(JSON.stringify({ size, records, salvaged, seconds, rssBefore, peakRss: peak }));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  } else {
    const backlog = Number(arg);
    const dir = mkdtempSync(path.join(root, 'sluice-bench-backlog-'));
    let peak = 0;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 50);
    try {
      const t0 = Date.now();
      let q = await open(dir, backlog + 256 * MiB);
      await fill(q, batch, backlog, true);
      const fillPeak = Math.max(peak, process.memoryUsage().rss);
      const records = q.stats().records;
      await q.dispose();
      // Restart with the backlog in place; the destination is still down for 5 s.
      peak = 0;
      q = await open(dir, backlog + 256 * MiB);
      const until = Date.now() + 5000;
      while (Date.now() < until) {
        const got = q.take(4000);
        if (got.length === 0) await Promise.race([q.waitForRecords(), new Promise((r) => setTimeout(r, 20))]);
        else q.rewind();
      }
      const reopenPeak = Math.max(peak, process.memoryUsage().rss);
      await q.dispose();
      console.log(
        JSON.stringify({
          backlog,
          records,
          fillSeconds: (Date.now() - t0) / 1000,
          fillPeakRss: fillPeak,
          reopenPeakRss: reopenPeak,
          maxRss: process.resourceUsage().maxRSS * 1024,
        }),
      );
    } finally {
      clearInterval(sampler);
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

if (process.argv[2]) {
  await child(process.argv[2], process.argv[3]);
} else {
  const run = (...args) =>
    JSON.parse(
      execFileSync(process.execPath, ['--expose-gc', self, ...args], { encoding: 'utf8', maxBuffer: 1 << 20 })
        .trim()
        .split('\n')
        .pop(),
    );
  const small = run('recovery', String(1 * MiB));
  const large = run('recovery', String(1 * GiB));
  const gib = Number(process.env.BACKLOG_GIB ?? 2);
  const mem = run('memory', String(gib * GiB));
  const mb = (b) => `${(b / MiB).toFixed(0)} MB`;
  console.log('reliable queue with a backlog, 200-byte records, sync: interval 50ms');
  console.log('');
  console.log('| backlog | records | open (median of 5) | first record ready |');
  console.log('|---|---:|---:|---:|');
  for (const r of [small, large])
    console.log(
      `| ${mb(r.backlog)} | ${r.records.toLocaleString('en')} | ${r.openMs.toFixed(1)} ms | ` +
        `${r.firstRecordMs.toFixed(1)} ms |`,
    );
  console.log(`\nopen time ratio 1 GiB / 1 MiB: ${(large.openMs / small.openMs).toFixed(2)}`);
  console.log('');
  console.log(`| ${gib} GiB backlog, destination down | value |`);
  console.log('|---|---:|');
  console.log(`| records | ${mem.records.toLocaleString('en')} |`);
  console.log(`| time to fill | ${mem.fillSeconds.toFixed(1)} s |`);
  console.log(`| peak RSS while filling | ${mb(mem.fillPeakRss)} |`);
  console.log(`| peak RSS after a restart, 5 s of failed sends | ${mb(mem.reopenPeakRss)} |`);
  console.log(`| max RSS of the process | ${mb(mem.maxRss)} (target < 200 MB) |`);
  const salv = run('salvage', String(1 * GiB));
  console.log('');
  console.log('| full 1 GiB queue file, both headers destroyed | value |');
  console.log('|---|---:|');
  console.log(`| records in it | ${salv.records.toLocaleString('en')} |`);
  console.log(`| records salvaged | ${salv.salvaged.toLocaleString('en')} |`);
  console.log(`| time to rotate and salvage (open) | ${salv.seconds.toFixed(1)} s |`);
  console.log(`| peak RSS while salvaging | ${mb(salv.peakRss)} (${mb(salv.rssBefore)} before) |`);
}
