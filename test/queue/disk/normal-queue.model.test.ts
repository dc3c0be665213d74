import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/log.js';
import { NormalQueue, type NormalQueueOptions } from '../../../src/queue/disk/normal-queue.js';
import { LogRecord } from '../../../src/record.js';
import { removeDir, tempDir } from '../../helpers/agent.js';
import { testOrigin } from '../../helpers/records.js';
import { SourceCounters } from '../../../src/stats.js';

const counters = new SourceCounters();
const _stats = counters.of('in');
const origin = testOrigin({ source: 'in', from: '192.0.2.1', counters });
const rec = (i: number) => new LogRecord(Buffer.from(`<13>n ${i}`), 0, origin);
const idOf = (r: LogRecord) => Number(r.raw.toString().slice(6));

type Op =
  | { op: 'push'; n: number }
  | { op: 'take'; n: number }
  | { op: 'ack'; n: number }
  | { op: 'rewind' }
  | { op: 'reopen' };
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ op: fc.constant('push' as const), n: fc.integer({ min: 1, max: 12 }) }) },
  { weight: 5, arbitrary: fc.record({ op: fc.constant('take' as const), n: fc.integer({ min: 1, max: 12 }) }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('ack' as const), n: fc.integer({ min: 1, max: 12 }) }) },
  { weight: 1, arbitrary: fc.constant({ op: 'rewind' as const }) },
  { weight: 1, arbitrary: fc.constant({ op: 'reopen' as const }) },
);

const MEMORY = 8; // qout_size + mem_buf_length: small, so the file part comes and goes often
const opts = (): NormalQueueOptions => ({
  maxSize: 1 << 20,
  memBufSize: 1 << 16,
  sync: 'interval',
  syncInterval: 2,
  full: 'block',
  logger: silentLogger(),
  counters,
  qoutSize: 3,
  memBufLength: MEMORY - 3,
  memBytes: 1 << 20,
});

/** Takes up to `n`, waiting a little for records still being loaded from the file. */
async function takeSome(q: NormalQueue, n: number): Promise<LogRecord[]> {
  for (let tries = 0; tries < 50; tries++) {
    const got = q.take(n);
    if (got.length > 0) return got;
    await Promise.race([q.waitForRecords(), new Promise((r) => setTimeout(r, 5))]);
  }
  return [];
}

describe('NormalQueue against a model: memory, then the file, then memory again', () => {
  it('hands every record out once, in order, never holds more than qout_size + mem_buf_length in memory, and goes ' +
    'back to memory once the file drains', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 80 }), async (ops) => {
        const dir = tempDir();
        let q = await NormalQueue.open('m', dir, opts());
        try {
          let next = 0; // the next record id to push
          let acked = 0; // ids below are acknowledged
          let handed = 0; // ids below were handed out (acked <= handed)
          for (const o of ops) {
            if (o.op === 'push') {
              // Whatever fits in memory goes there, also while the file holds older records:
              // committed at once (undefined), no file write.
              const fits = q.stats().memoryRecords + o.n <= MEMORY;
              const p = q.push(Array.from({ length: o.n }, (_, i) => rec(next + i)));
              if (fits) expect(p).toBeUndefined();
              await p;
              next += o.n;
            } else if (o.op === 'take') {
              const want = Math.min(o.n, next - handed);
              const got = want > 0 ? await takeSome(q, want) : q.take(o.n);
              // Exactly the next ids, in order: nothing skipped, repeated or reordered.
              expect(got.map(idOf)).toEqual(Array.from({ length: got.length }, (_, i) => handed + i));
              if (want > 0) expect(got.length).toBeGreaterThan(0);
              handed += got.length;
            } else if (o.op === 'ack') {
              const n = Math.min(o.n, handed - acked);
              q.ack(n);
              acked += n;
            } else if (o.op === 'rewind') {
              q.rewind();
              handed = acked;
            } else {
              await q.dispose();
              q = await NormalQueue.open('m', dir, opts());
              handed = acked;
            }
            const st = q.stats();
            expect(st.records).toBe(next - acked);
            expect(st.memoryRecords).toBeLessThanOrEqual(MEMORY);
          }
          // Drain: the rest comes out in order, and once the file is empty new records stay in memory.
          q.ack(handed - acked);
          acked = handed;
          while (handed < next) {
            const got = await takeSome(q, 100);
            expect(got.length).toBeGreaterThan(0);
            expect(got.map(idOf)).toEqual(Array.from({ length: got.length }, (_, i) => handed + i));
            handed += got.length;
            q.ack(got.length);
            acked = handed;
          }
          expect(q.stats()).toMatchObject({ records: 0, memoryRecords: 0 });
          expect(q.push([rec(next)])).toBeUndefined(); // memory: committed at once, no file write
          expect(q.stats()).toMatchObject({ records: 1, memoryRecords: 1 });
        } finally {
          await q.dispose();
          removeDir(dir);
        }
      }),
      { numRuns: 60, seed: 20261129 },
    );
  }, 120_000);
});
