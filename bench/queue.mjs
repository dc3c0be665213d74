// npm run bench:queue: append, read and ack of 200-byte records through the reliable queue, with
// sync: interval (50 ms), fsync for real. Producer and consumer run together, as in the agent.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { ReliableQueue } from '../dist/queue/disk/reliable-queue.js';
import { LogRecord } from '../dist/record.js';
import { SourceCounters } from '../dist/stats.js';

const N = Number(process.env.BENCH_RECORDS ?? 2_000_000);
const BATCH = 1000;
const dir = mkdtempSync(path.join(process.env.BENCH_DIR ?? os.tmpdir(), 'sluice-bench-queue-'));
const counters = new SourceCounters();
const origin = { source: 'tcp_in', from: '127.0.0.1', format: 'syslog', lenient: false, counters };
const raw = Buffer.alloc(200, 0x61);
const batch = Array.from({ length: BATCH }, () => new LogRecord(raw, Date.now(), origin));

const q = await ReliableQueue.open('bench', dir, {
  maxSize: 1024 ** 3,
  memBufSize: 64 * 1024 ** 2,
  sync: 'interval',
  syncInterval: 50,
  full: 'block',
  logger: pino({ level: 'silent' }),
  counters,
});

const t0 = process.hrtime.bigint();
let consumed = 0;
const consumer = (async () => {
  while (consumed < N) {
    const got = q.take(BATCH * 4);
    if (got.length === 0) {
      await q.waitForRecords();
      continue;
    }
    consumed += got.length;
    q.ack(got.length);
  }
})();
const inFlight = [];
for (let sent = 0; sent < N; sent += BATCH) {
  if (q.isFull()) await q.waitForSpace();
  const c = q.push(batch);
  if (c) inFlight.push(c);
  // Like a source with many connections: at most a few hundred batches wait for their fsync.
  if (inFlight.length >= 256) await inFlight.shift();
}
await Promise.all(inFlight);
const tWrite = process.hrtime.bigint();
await consumer;
const t1 = process.hrtime.bigint();
await q.dispose();
rmSync(dir, { recursive: true, force: true });

const secs = Number(t1 - t0) / 1e9;
const bytes = N * raw.length;
console.log(
  `reliable queue, ${N.toLocaleString('en')} records of ${raw.length} bytes, sync: interval 50ms (fsync), in ${dir}`,
);
console.log(`| measure | value |`);
console.log(`|---|---:|`);
console.log(`| append+commit, read, ack | ${Math.round(N / secs).toLocaleString('en')} records/s |`);
console.log(`| payload throughput | ${(bytes / secs / 1e6).toFixed(1)} MB/s |`);
console.log(`| all appends committed after | ${(Number(tWrite - t0) / 1e9).toFixed(2)} s |`);
console.log(`| total | ${secs.toFixed(2)} s |`);
console.log(`| peak RSS | ${Math.round(process.resourceUsage().maxRSS / 1024)} MB |`);
