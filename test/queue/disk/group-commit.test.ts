import { describe, expect, it } from 'vitest';
import { GroupCommit, type SyncMode } from '../../../src/queue/disk/group-commit.js';
import type { QueueFile } from '../../../src/queue/disk/queue-file.js';
import { RingFile } from '../../../src/queue/disk/ring-file.js';
import { SimulatedDisk } from '../../helpers/simulated-disk.js';

/** A ring on a simulated disk whose fsyncs are counted, and fail while `failing` is set. */
async function setup(mode: SyncMode, interval = 1000) {
  const disk = new SimulatedDisk();
  const base = disk.file();
  const state = { syncs: 0, failing: false };
  const file: QueueFile = {
    ...base,
    sync: async () => {
      state.syncs++;
      await new Promise((r) => setImmediate(r)); // an fsync takes a while: others append meanwhile
      if (state.failing) throw Object.assign(new Error('EIO: injected'), { code: 'EIO' });
      await base.sync();
    },
  };
  const ring = await RingFile.create(file, { capacity: 1 << 16 });
  const events: string[] = [];
  const commits = new GroupCommit(mode, interval, {
    ring: () => ring,
    synced: (wrote) => events.push(`synced ${wrote}`),
    failed: (err, lost) => events.push(`failed ${(err as NodeJS.ErrnoException).code} lost ${lost}`),
  });
  const append = (n = 1) => {
    for (let i = 0; i < n; i++) ring.append([Buffer.from(`r${i}`)]);
    return commits.commitFor(true);
  };
  return { ring, commits, state, events, append, disk };
}

const settled = (p: Promise<void> | undefined) =>
  p!.then(
    () => 'ok',
    (e: NodeJS.ErrnoException) => e.code ?? 'error',
  );

describe('GroupCommit', () => {
  it('always: producers that append while a sync runs share the next one, not one each', async () => {
    const { commits, state, append } = await setup('always');
    try {
      const first = append();
      // 50 producers arrive while the first sync runs.
      const rest = Array.from({ length: 50 }, () => append());
      await Promise.all([first, ...rest]);
      const before = state.syncs;
      expect(before).toBeGreaterThanOrEqual(2); // the data fsync of the first group, then of the rest
      expect(before).toBeLessThanOrEqual(6); // a sync (data and header) or two, not fifty
    } finally {
      commits.stop();
    }
  });

  it('a failed sync fails every producer of its group, also those that asked during it; the next works', async () => {
    const { commits, state, events, append, ring } = await setup('always');
    try {
      state.failing = true;
      const a = append(3);
      const b = append(2); // asked while the failing sync runs
      expect(await settled(a)).toBe('EIO');
      expect(await settled(b)).toBe('EIO');
      expect(events.some((e) => /^failed EIO lost [1-5]$/.test(e))).toBe(true);
      // Forgotten, not committed: the ring holds nothing the producers were not told about.
      await commits.now().catch(() => undefined);
      expect(ring.syncedTailSeq).toBe(ring.tailSeq);
      state.failing = false;
      const c = append(1);
      expect(await settled(c)).toBe('ok');
      expect(events.at(-1)).toBe('synced true');
    } finally {
      commits.stop();
    }
  });

  it('interval: a commit waits for the timer, or, asked soon(), for the next turn; never: no commit to wait for', async () => {
    const slow = await setup('interval', 60_000);
    try {
      const p = slow.append();
      let done = false;
      void p!.then(() => (done = true));
      await new Promise((r) => setTimeout(r, 30));
      expect(done).toBe(false); // the interval is a minute away
      slow.commits.soon();
      await p;
      expect(slow.state.syncs).toBeGreaterThan(0);
    } finally {
      slow.commits.stop();
    }
    const never = await setup('never', 60_000);
    try {
      expect(never.append()).toBeUndefined();
      expect(never.commits.commitFor(false)).toBeUndefined();
    } finally {
      never.commits.stop();
    }
  });
});
