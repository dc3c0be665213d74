import { RateLimitedLog } from '../log.js';
import { cancellableSleep, ExponentialBackoff } from '../net/backoff.js';
import { SetAside } from './dead-letters.js';
import type { Destination, DestinationContext, DestinationStats } from './types.js';

/**
 * What the windowed destinations (`relp`, `sluice`) share: one session at a time keeps records in
 * flight until the far end answers for them. When a session breaks, everything unanswered goes back
 * to the queue and comes out again in the next session, after a backoff with jitter.
 */
export abstract class SessionDestination implements Destination {
  abstract readonly stats: DestinationStats;
  readonly name: string;
  readonly queue: DestinationContext['queue'];
  protected readonly backoff: ExponentialBackoff;
  protected stopped = false;
  protected draining = false;
  /** Failures are logged at most once a second, with the number left out. */
  protected readonly quiet = new RateLimitedLog();
  /** Records that were in flight when a session broke: the next ones sent are repeats. */
  private toReplay = 0;
  private loopDone: Promise<void> | null = null;
  private sleeping: ReturnType<typeof cancellableSleep> | null = null;
  private asideOf: SetAside | null = null;

  constructor(
    protected readonly ctx: DestinationContext,
    backoff: { initial: number; max: number },
  ) {
    this.name = ctx.name;
    this.queue = ctx.queue;
    this.backoff = new ExponentialBackoff(backoff.initial, backoff.max);
  }

  abstract describe(): string;

  /** Where this destination sets records aside (made on first use: `stats` is the subclass's). */
  protected get aside(): SetAside {
    return (this.asideOf ??= new SetAside(this.ctx, () => this.stats));
  }
  /** Runs sessions until stopped, or until draining has sent everything. */
  protected abstract loop(): Promise<void>;
  /** Cuts the current connection at once. */
  protected abstract cut(): void;

  start(): void {
    this.loopDone ??= this.loop();
  }

  /** Waits `ms` before the next session; stop cuts it short. */
  protected async pause(ms: number): Promise<void> {
    this.sleeping = cancellableSleep(ms);
    await this.sleeping.promise;
    this.sleeping = null;
  }

  /**
   * A session ended with `unanswered` records sent and not acknowledged: they go back to the queue
   * ahead of any still owed from an earlier break, and the next ones sent are repeats. Added, not
   * set: a session that fails before sending anything leaves the count as it was.
   */
  protected sessionEnded(unanswered: number): void {
    this.toReplay += unanswered;
  }

  /** `n` records owed a resend were freed unsent (the far end already had them). */
  protected skippedReplays(n: number): void {
    this.toReplay = Math.max(0, this.toReplay - n);
  }

  /**
   * A check for one session: it throws once the queue has forgotten what it handed out (see
   * DestinationQueue.epoch), so that no acknowledgement of this session frees records of the next.
   */
  protected queueStillHolds(): () => void {
    const epoch = this.queue.epoch;
    return () => {
      if (this.queue.epoch !== epoch)
        throw new Error('the queue file was rotated and salvaged: sending its records again in a new session');
    };
  }

  /**
   * Between sessions (nothing in flight): records older than the queue's `max_age` at its head are
   * set aside as `expired`, so that an outage longer than that does not keep them.
   */
  protected async expireHead(): Promise<void> {
    for (;;) {
      const batch = this.queue.take(256);
      if (batch.length === 0) return;
      const expired = this.aside.expiredHead(batch);
      try {
        if (expired.length > 0) {
          await this.aside.put(expired);
          this.queue.ack(expired.length);
        }
      } catch (err) {
        this.ctx.logger.error(
          { err: (err as Error).message },
          'cannot set expired records aside as dead letters; they stay queued',
        );
        return;
      } finally {
        this.queue.rewind();
      }
      if (expired.length < batch.length) return;
    }
  }

  /** Counts `n` records sent; the first ones after a broken session are counted as replayed too. */
  protected countSent(n: number): void {
    this.stats.sent += n;
    if (this.toReplay > 0) {
      const again = Math.min(this.toReplay, n);
      this.stats.replayed += again;
      this.toReplay -= again;
    }
  }

  /** Drains for at most `timeoutMs`, then cuts the connection; returns the records left queued. */
  async stop(timeoutMs: number): Promise<number> {
    this.draining = true;
    this.sleeping?.cancel();
    await this.queue.close();
    const loop = this.loopDone ?? Promise.resolve();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([loop, new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
    this.stopped = true;
    this.sleeping?.cancel();
    this.cut();
    await loop.catch(() => undefined);
    this.queue.rewind();
    return this.queue.stats().records;
  }
}
