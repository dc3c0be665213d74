import type { RingFile } from './ring-file.js';

export type SyncMode = 'always' | 'interval' | 'never';

interface Waiter {
  resolve: () => void;
  reject: (err: Error) => void;
}

export interface GroupCommitHooks {
  /** The ring to sync (a rotation replaces it). */
  ring(): RingFile;
  /** After every sync that worked; `wrote`: it made records or acknowledgements durable. */
  synced(wrote: boolean): void;
  /**
   * After a failed sync, once the ring has recovered: the producers of the group have heard, and
   * `lost` appends (not yet durable) were forgotten.
   */
  failed(err: Error, lost: number): void;
  /**
   * Asked before each sync: true lets the ring write the new header without a sync of its own
   * after the records' sync (RingFile.sync), when nothing waits for the space it frees.
   */
  lazyHeader?(): boolean;
}

/**
 * Group commit: one sync of the ring at a time; every append made while one runs is covered by the
 * next, and its producer hears once the sync that covered it is done. `always` syncs as soon as
 * something waits, `interval` every `interval` ms (and at once for a producer that waits for its
 * commit, see `soon`), `never` orders writes without fsync.
 */
export class GroupCommit {
  private waiters: Waiter[] = [];
  private running: Promise<void> | null = null;
  private again = false;
  private timer: NodeJS.Timeout | null = null;
  /** A `soon` sync is scheduled. */
  private scheduled = false;

  constructor(
    private readonly mode: SyncMode,
    interval: number,
    private readonly hooks: GroupCommitHooks,
  ) {
    if (mode === 'interval' || mode === 'never') {
      this.timer = setInterval(() => void this.now().catch(() => undefined), Math.max(1, interval));
      this.timer.unref();
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** A promise for the sync that will cover what was just appended (none when nothing was). */
  commitFor(appended: boolean): Promise<void> | undefined {
    if (!appended) return undefined;
    if (this.mode === 'never') {
      // Readable once "synced" (no fsync in this mode): let the reader see it at once.
      void this.now().catch(() => undefined);
      return undefined;
    }
    const p = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (this.mode === 'always') void this.now().catch(() => undefined);
    else this.timer?.ref(); // a pending commit keeps the process alive until its sync
    return p;
  }

  /**
   * `sync: interval`, a producer waiting for its commit (RELP, sluice, file sources): its sync
   * starts in the next turn of the event loop, or right after the one running, not at the next
   * interval. A sender with a window, all of it waiting, then waits about one fsync, not half an
   * interval. Measured with librelp's sender (window 128): waiting for a 1 ms pause in appends first
   * was slower, because its windows arrive in one or two reads and the timer's wait (1 to 1.5 ms)
   * cost more than the fsync itself.
   */
  soon(): void {
    if (this.mode !== 'interval') return;
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.now().catch(() => undefined);
    });
  }

  /** Syncs now, or after the sync running (which then runs once more). Rejects when the sync fails. */
  now(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = this.loop().finally(() => {
      this.running = null;
      if (this.waiters.length === 0) this.timer?.unref();
      // A failed sync ends its loop early: commits asked for meanwhile (after its recovery) still get theirs.
      else if (this.again || this.mode === 'always') void this.now().catch(() => undefined);
    });
    return this.running;
  }

  private async loop(): Promise<void> {
    do {
      this.again = false;
      const waiters = this.waiters;
      this.waiters = [];
      const ring = this.hooks.ring();
      try {
        // Committed once the records are on disk: the header that follows need not be waited for.
        const wrote = await ring.sync(() => {
          for (const w of waiters) w.resolve();
        }, this.hooks.lazyHeader?.() ?? false);
        for (const w of waiters) w.resolve();
        this.hooks.synced(wrote);
      } catch (err) {
        // Nothing of this group is committed: its producers hear so (a file source reads those
        // lines again), the unsynced appends are forgotten, and the next batch writes afresh.
        // Until then the ring refuses appends (see RingFile.sync), so none is forgotten unheard.
        for (const w of this.waiters.splice(0)) waiters.push(w);
        for (const w of waiters) w.reject(err as Error);
        const lost = ring.tailSeq - ring.syncedTailSeq;
        await ring.recover();
        this.hooks.failed(err as Error, lost);
        throw err;
      }
      // `interval`: commits that came during the sync wait for the interval, unless a producer
      // waits for them (`soon` asked again).
    } while (this.again || (this.mode !== 'interval' && this.waiters.length > 0));
  }
}
