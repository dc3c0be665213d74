import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { DeadLetter, DeadLetterSink, DeadLetterStats } from '../../src/destinations/dead-letters.js';
import { RecordError, type Rejected } from '../../src/destinations/failures.js';
import { QueueDrainer } from '../../src/destinations/queue-drainer.js';
import type { DestinationContext } from '../../src/destinations/types.js';
import { silentLogger } from '../../src/log.js';
import { ReliableQueue } from '../../src/queue/disk/reliable-queue.js';
import { LogRecord, type RecordOrigin } from '../../src/record.js';
import { removeDir, sleep, tempDir, waitFor } from '../helpers/agent.js';
import { SourceCounters } from '../../src/stats.js';

// The drainer against a destination that fails at random, record by record: every good record is
// delivered once and in order, every bad one lands in the dead letters exactly once, and none of
// it changes across a restart in the middle (the reliable queue reopened, the drainer new).

type Kind = 'good' | 'rejected' | 'throws' | 'flaky';

const origin: RecordOrigin = {
  source: 'in',
  from: '192.0.2.1',
  format: 'syslog',
  lenient: true,
  counters: new SourceCounters(),
};
const idOf = (r: LogRecord) => Number(/^<13>(\d+) /.exec(r.raw.toString())![1]);

/** What the far end has, shared by every drainer of a run. */
class World {
  delivered: number[] = [];
  letters: { id: number; reason: string }[] = [];
  /** Destination-wide outages still to come (ECONNRESET), drawn by the run. */
  outages: boolean[] = [];
}

class FlakyDestination extends QueueDrainer {
  constructor(
    ctx: DestinationContext,
    private readonly kinds: Map<number, Kind>,
    private readonly world: World,
    batchSize: number,
  ) {
    super(ctx, { initial: 1, max: 2 }, batchSize);
  }

  describe(): string {
    return 'flaky';
  }

  protected async deliver(records: LogRecord[]): Promise<Rejected[]> {
    await sleep(0);
    if (this.world.outages.shift()) throw Object.assign(new Error('connection reset'), { code: 'ECONNRESET' });
    const rejected: Rejected[] = [];
    const ok: number[] = [];
    for (const r of records) {
      const kind = this.kinds.get(idOf(r));
      // A record this destination throws on, every time (an encoding bug, say): the batch fails.
      if (kind === 'throws') throw new RecordError('encoding', `cannot encode ${idOf(r)}`);
      if (kind === 'rejected') rejected.push({ record: r, reason: 'EISDIR', error: 'is a directory' });
      else ok.push(idOf(r));
    }
    this.world.delivered.push(...ok);
    return rejected;
  }

  protected async release(): Promise<void> {}
}

class MemorySink implements DeadLetterSink {
  readonly describe = 'memory';
  constructor(private readonly world: World) {}
  async put(letters: DeadLetter[], stats: DeadLetterStats): Promise<void> {
    for (const l of letters) {
      this.world.letters.push({ id: idOf(l.record), reason: l.reason });
      stats.deadLettered[l.reason] = (stats.deadLettered[l.reason] ?? 0) + 1;
    }
  }
}

const kindArb = fc.constantFrom<Kind>('good', 'good', 'good', 'good', 'rejected', 'throws', 'flaky');

describe('QueueDrainer against per-record failures', () => {
  it('delivers every good record once and in order, and sets every bad one aside exactly once, across a ' +
    'restart', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(kindArb, { minLength: 1, maxLength: 80 }),
        fc.array(fc.boolean(), { maxLength: 40 }),
        fc.integer({ min: 1, max: 16 }),
        fc.integer({ min: 0, max: 79 }),
        async (kinds, outages, batchSize, restartAfter) => {
          const dir = tempDir('sluice-drainer-');
          const world = new World();
          world.outages = outages;
          const kindOf = new Map(kinds.map((k, i) => [i, k === 'flaky' ? 'good' : k] as const));
          const open = () =>
            ReliableQueue.open('d', dir, {
              maxSize: 1 << 20,
              memBufSize: 1 << 16,
              sync: 'interval',
              syncInterval: 1,
              full: 'block',
              logger: silentLogger(),
              counters: origin.counters,
            });
          const start = (q: ReliableQueue) => {
            const d = new FlakyDestination(
              {
                name: 'd',
                queue: q,
                logger: silentLogger(),
                hostname: 'h',
                setAside: { sink: new MemorySink(world), maxAge: 0, maxRecordAttempts: 3 },
              },
              kindOf,
              world,
              batchSize,
            );
            d.start();
            return d;
          };
          try {
            let q = await open();
            await q.push(kinds.map((_, i) => new LogRecord(Buffer.from(`<13>${i} x`), Date.now(), origin)));
            let d = start(q);
            const settled = () => world.delivered.length + world.letters.length >= kinds.length;
            // A restart part way: stop (the queue keeps what is not acknowledged), reopen, go on.
            await waitFor(
              'some progress',
              () => world.delivered.length + world.letters.length >= Math.min(restartAfter, kinds.length),
              10_000,
            );
            await d.stop(0);
            await q.dispose();
            q = await open();
            d = start(q);
            await waitFor('everything delivered or set aside', settled, 10_000);
            await d.stop(100);
            await q.dispose();
            const good = kinds.flatMap((k, i) => (k === 'good' || k === 'flaky' ? [i] : []));
            const bad = kinds.flatMap((k, i) => (k === 'rejected' || k === 'throws' ? [i] : []));
            // In order; a record may come twice only if a restart cut in after its delivery and before its
            // acknowledgement.
            const once = world.delivered.filter((id, i) => world.delivered.indexOf(id) === i);
            expect(once).toEqual(good);
            expect(world.delivered.length - once.length).toBeLessThanOrEqual(batchSize);
            expect(world.letters.map((l) => l.id).sort((a, b) => a - b)).toEqual(bad);
            for (const l of world.letters) expect(l.reason).toBe(kinds[l.id] === 'rejected' ? 'EISDIR' : 'encoding');
          } finally {
            removeDir(dir);
          }
        },
      ),
      { numRuns: 25, seed: 20261129 },
    );
  }, 120_000);
});
