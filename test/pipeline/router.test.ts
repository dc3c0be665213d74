import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/config/load.js';
import { Router } from '../../src/pipeline/router.js';
import { silentLogger } from '../../src/log.js';
import { ReliableQueue } from '../../src/queue/disk/reliable-queue.js';
import { MemoryQueue } from '../../src/queue/memory-queue.js';
import type { FullPolicy } from '../../src/queue/types.js';
import { LogRecord } from '../../src/record.js';
import { removeDir, tempDir, waitFor } from '../helpers/agent.js';
import { FaultyDisk } from '../helpers/simulated-disk.js';
import { testOrigin } from '../helpers/records.js';
import { SourceCounters, type SourceStats } from '../../src/stats.js';

const counters = new SourceCounters();
const _stats = counters.of('s');
const origin = testOrigin({ source: 's', from: '10.0.0.1', lenient: false, counters });
const recs = (...raws: string[]) => raws.map((r) => new LogRecord(Buffer.from(r), Date.now(), origin));

function build(pipelines: string, dests: string[] = ['a', 'b'], full: FullPolicy = 'block', max = 1000) {
  const yaml = `
sources:
  s: { type: syslog_udp, address: "127.0.0.1:0" }
  t: { type: syslog_udp, address: "127.0.0.1:0" }
destinations:
${dests.map((d) => `  ${d}: { type: file, path: /tmp/${d}.log }`).join('\n')}
pipelines:
${pipelines}
`;
  const { config } = parseConfigText(yaml, 't.yaml', {});
  const queues = new Map(dests.map((d) => [d, new MemoryQueue(d, { maxRecords: max, maxBytes: 1 << 30, full })]));
  const counters = new SourceCounters();
  return { router: new Router(config.pipelines, queues, { counters }), queues, pipelines: config.pipelines, counters };
}

/** Asserts that the source is held back: `wait` is a promise, still pending a moment later. */
async function expectHeld(wait: Promise<void> | undefined): Promise<void> {
  expect(wait).toBeInstanceOf(Promise);
  let settled = false;
  void wait!.then(() => (settled = true));
  await new Promise((r) => setTimeout(r, 20));
  expect(settled).toBe(false);
}

/**
 * A router from source s into one reliable queue (16 KiB of write-behind) whose disk holds every
 * write until `release()`, as a stalled disk would.
 */
async function withHeldDisk(
  body: (t: { q: ReliableQueue; router: Router; release: () => void; udp: SourceStats }) => Promise<void>,
): Promise<void> {
  const dir = tempDir();
  try {
    const disk = new FaultyDisk();
    const q = await ReliableQueue.open('a', dir, {
      maxSize: 4 << 20,
      memBufSize: 16 << 10,
      sync: 'never',
      syncInterval: 5,
      full: 'drop_newest',
      logger: silentLogger(),
      counters,
      openFile: disk.open,
    });
    const routed = new SourceCounters();
    const router = new Router(build('  p: { from: [s], to: [a] }', ['a']).pipelines, new Map([['a', q]]), {
      counters: routed,
    });
    disk.holdWrites();
    await body({ q, router, release: () => disk.releaseWrites(), udp: routed.of('s') });
    await q.dispose();
  } finally {
    removeDir(dir);
  }
}

const raw = (q: MemoryQueue) => q.take(1_000_000).map((r) => r.raw.toString());

describe('Router', () => {
  it('fans out to every destination of a pipeline', () => {
    const { router, queues } = build('  p: { from: [s, t], to: [a, b] }');
    router.dispatch('s', recs('<13>x', '<14>y'), 'drop_after_timeout');
    expect(raw(queues.get('a')!)).toEqual(['<13>x', '<14>y']);
    expect(raw(queues.get('b')!)).toEqual(['<13>x', '<14>y']);
  });

  it('filters on facility, severity, host, app and message, all conditions together', () => {
    const { router, queues } = build(`
  auth: { from: [s], where: { facility: [auth, authpriv] }, to: [a] }
  urgent: { from: [s], where: { min_severity: err, host: "^web", app: "^nginx$", message: "timeout" }, to: [b] }
`);
    router.dispatch(
      's',
      recs(
        '<34>1 - db01 sshd - - - auth crit', // auth.crit
        '<83>1 - db01 sudo - - - authpriv err', // authpriv.err
        '<11>1 - web01 nginx - - - upstream timeout', // user.err
        '<12>1 - web01 nginx - - - upstream timeout', // user.warning: not urgent enough
        '<11>1 - db01 nginx - - - upstream timeout', // wrong host
        '<11>1 - web01 nginx - - - all fine', // wrong message
        'garbage', // unparseable: user.notice, no host, no app
      ),
      'drop_after_timeout',
    );
    expect(raw(queues.get('a')!)).toEqual([
      '<34>1 - db01 sshd - - - auth crit',
      '<83>1 - db01 sudo - - - authpriv err',
    ]);
    expect(raw(queues.get('b')!)).toEqual(['<11>1 - web01 nginx - - - upstream timeout']);
  });

  it('queues a record once per destination even when several pipelines lead there', () => {
    const { router, queues } = build(`
  one: { from: [s], where: { severity: [err] }, to: [a] }
  two: { from: [s], where: { facility: [user] }, to: [a] }
`);
    router.dispatch('s', recs('<11>both match', '<13>second only', '<36>none'), 'drop_after_timeout');
    expect(raw(queues.get('a')!)).toEqual(['<11>both match', '<13>second only']);
  });

  it(
    'makes waiting sources wait on a full block queue, and drops (counting) for sources that cannot ' + 'wait',
    async () => {
      const { router, queues, counters: routed } = build('  p: { from: [s], to: [a] }', ['a'], 'block', 2);
      const q = queues.get('a')!;
      expect(router.dispatch('s', recs('<13>1', '<13>2'), 'drop_after_timeout')).toBeUndefined();
      const s2 = routed.of('s');
      router.dispatch('s', recs('<13>udp'), 'no');
      expect(s2.dropped).toEqual({ queue_full: 1 });
      expect(q.stats().dropped).toEqual({ queue_full: 1 });
      const wait = router.dispatch('s', recs('<13>3'), 'drop_after_timeout')?.accepted;
      await expectHeld(wait);
      q.ack(q.take(2).length);
      await wait;
      expect(raw(q)).toEqual(['<13>3']);
    },
  );

  it(
    'after waiting for room, tells taken from durable: a batch whose write then fails is accepted, and only its ' +
      'commit fails',
    async () => {
      const { router, queues } = build('  p: { from: [s], to: [a] }', ['a'], 'block', 2);
      const q = queues.get('a')!;
      router.dispatch('s', recs('<13>1', '<13>2'), 'keep_waiting');
      // From here on, every batch is taken and then its write fails (a full disk).
      const push = q.push.bind(q);
      (q as { push: (batch: LogRecord[]) => Promise<void> | undefined }).push = (batch) => {
        push(batch);
        return new Promise<void>((_, reject) => setTimeout(() => reject(new Error('ENOSPC')), 5));
      };
      const d = router.dispatch('s', recs('<13>3'), 'keep_waiting')!;
      await expectHeld(d.accepted);
      q.ack(q.take(2).length);
      // `accepted` says the queue took the batch (the source may read on); the failure is the commit's
      // to report, so that the source sends the batch again rather than skip it.
      await expect(d.accepted).resolves.toBeUndefined();
      await expect(d.committed).rejects.toThrow('ENOSPC');
    },
  );

  it(
    'takes back a batch still waiting for room when its source withdraws it: not queued, not counted as ' + 'dropped',
    async () => {
      const { router, queues } = build('  p: { from: [s], to: [a] }', ['a'], 'block', 2);
      const q = queues.get('a')!;
      router.dispatch('s', recs('<13>1', '<13>2'), 'keep_waiting');
      const withdrawn = new AbortController();
      const d = router.dispatch('s', recs('<13>3'), 'keep_waiting', withdrawn.signal)!;
      await expectHeld(d.accepted);
      withdrawn.abort(); // the file source will read these lines again
      q.ack(q.take(2).length);
      await d.accepted;
      expect(q.take(10)).toEqual([]);
      expect(q.stats().dropped).toEqual({});
      expect(router.dispatch('s', recs('<13>4'), 'keep_waiting', withdrawn.signal)).toBeUndefined();
      expect(q.take(10)).toEqual([]);
    },
  );

  it(
    'makes waiting sources wait while a disk queue is behind on its writes, without dropping; sources that cannot ' +
      'wait go on',
    async () => {
      await withHeldDisk(async ({ q, router, release, udp }) => {
        const big = (tag: string) =>
          recs(...Array.from({ length: 20 }, (_, i) => `<13>${tag}${i} ${'z'.repeat(1000)}`));
        expect(router.dispatch('s', big('u'), 'no')?.accepted).toBeUndefined();
        const wait = router.dispatch('s', big('t'), 'drop_after_timeout')?.accepted;
        await expectHeld(wait);
        expect(q.stats().stalls).toBe(1);
        release();
        await wait;
        expect(q.stats().dropped).toEqual({});
        expect(udp.dropped).toEqual({});
        expect(q.stats().records).toBe(40);
      });
    },
  );

  it(
    'drops (counting disk_behind) for sources that cannot wait once a stalled disk has 16 times the write-behind ' +
      'waiting, and takes them again when it catches up',
    async () => {
      await withHeldDisk(async ({ q, router, release, udp }) => {
        // about 10 KB
        const batch = () => recs(...Array.from({ length: 10 }, (_, i) => `<13>${i} ${'u'.repeat(1000)}`));
        // 16 x 16 KiB = 256 KiB may wait for the disk, about 24 batches; the rest are dropped.
        for (let i = 0; i < 40; i++) router.dispatch('s', batch(), 'no');
        const kept = q.stats().records;
        expect(kept).toBeGreaterThan(200);
        expect(kept).toBeLessThan(300);
        expect(q.stats().memoryBytes).toBeGreaterThan(256 << 10);
        expect(q.stats().memoryBytes).toBeLessThan((256 << 10) + 12_000); // one batch past the line at most
        expect(udp.dropped).toEqual({ disk_behind: 400 - kept });
        expect(q.stats().dropped).toEqual({ disk_behind: 400 - kept });
        release();
        await waitFor('the writes', () => !q.congested());
        router.dispatch('s', batch(), 'no');
        expect(q.stats().records).toBe(kept + 10);
      });
    },
  );
});

describe('MemoryQueue full policies', () => {
  it('drop_newest keeps what is queued and counts the rest', () => {
    const q = new MemoryQueue('q', { maxRecords: 3, maxBytes: 1 << 20, full: 'drop_newest' });
    q.push(recs('1', '2'));
    q.push(recs('3', '4', '5'));
    expect(q.stats().dropped).toEqual({ queue_full: 2 });
    expect(raw(q)).toEqual(['1', '2', '3']);
  });

  it('drop_oldest makes room by dropping the oldest waiting records, never those in flight', () => {
    const q = new MemoryQueue('q', { maxRecords: 3, maxBytes: 1 << 20, full: 'drop_oldest' });
    q.push(recs('1', '2', '3'));
    expect(q.take(1).map((r) => r.raw.toString())).toEqual(['1']); // in flight
    q.push(recs('4', '5'));
    expect(q.stats().dropped).toEqual({ queue_full: 2 });
    q.rewind();
    expect(raw(q)).toEqual(['1', '4', '5']);
  });

  it('bounds bytes as well as records', () => {
    const q = new MemoryQueue('q', { maxRecords: 100, maxBytes: 10, full: 'drop_newest' });
    q.push(recs('aaaa', 'bbbb', 'cccc'));
    expect(q.stats()).toMatchObject({ records: 2, bytes: 8, dropped: { queue_full: 1 } });
  });

  it('hands records out once, takes them back on rewind and frees them on ack', () => {
    const q = new MemoryQueue('q', { maxRecords: 10, maxBytes: 1 << 20, full: 'block' });
    q.push(recs('a', 'b', 'c'));
    expect(q.take(2).map((r) => r.raw.toString())).toEqual(['a', 'b']);
    expect(q.take(5).map((r) => r.raw.toString())).toEqual(['c']);
    q.rewind();
    expect(q.take(5).map((r) => r.raw.toString())).toEqual(['a', 'b', 'c']);
    q.ack(2);
    q.rewind();
    expect(q.take(5).map((r) => r.raw.toString())).toEqual(['c']);
    expect(q.stats()).toMatchObject({ records: 1, inFlight: 1, acked: 2, pushed: 3 });
  });

  it(
    'lets a blocked producer go on only once a sixteenth of the queue is free, not at the first free ' + 'slot',
    async () => {
      const q = new MemoryQueue('q', { maxRecords: 64, maxBytes: 1 << 20, full: 'block' });
      q.push(recs(...Array.from({ length: 64 }, (_, i) => `r${i}`)));
      expect(q.isFull()).toBe(true);
      let resumed = false;
      void q.waitForSpace().then(() => (resumed = true));
      q.take(64);
      q.ack(3); // 61 queued: room for 3, less than 64 / 16
      await Promise.resolve();
      expect(resumed).toBe(false);
      q.ack(1); // 60 queued: a sixteenth is free
      await Promise.resolve();
      expect(resumed).toBe(true);
    },
  );
});
