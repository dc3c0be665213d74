import { RateLimitedLog } from '../log.js';
import { cancellableSleep, ExponentialBackoff } from '../net/backoff.js';
import { SetAside } from './dead-letters.js';
import type { Destination, DestinationContext, DestinationStats } from './types.js';

/**
 * What every destination's delivery shares, whatever it sends one batch at a time (`QueueDrainer`)
 * or keeps a window in flight (`SessionDestination`): one loop from start to stop, a backoff with
 * jitter between failed attempts, failures logged at most once a second, records set aside as dead
 * letters, replays counted, and a stop that drains for a while and then cuts the connection. A
 * destination supplies the loop's body (`run`) and how to let go of its connection (`release`).
 */
export abstract class DeliveryLoop implements Destination {
  abstract readonly stats: DestinationStats;
  readonly name: string;
  readonly queue: DestinationContext['queue'];
  protected readonly backoff: ExponentialBackoff;
  /** Set by stop once the drain time is over (or the loop ended): give up at once. */
  protected stopped = false;
  /** Set by stop: send what is queued, then end. */
  protected draining = false;
  /** Failures are logged at most once a second, with the number left out. */
  protected readonly quiet = new RateLimitedLog();
  /** Records sent and not confirmed when an attempt failed: the next ones sent are repeats. */
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

  /** The delivery loop: runs until stopped, or until draining has sent everything. */
  protected abstract run(): Promise<void>;
  /** Lets go of sockets and files; `force`: the drain time ran out, cut short what is in progress. */
  protected abstract release(force: boolean): Promise<void> | void;

  /** Where this destination sets records aside (made on first use: `stats` is the subclass's). */
  protected get aside(): SetAside {
    return (this.asideOf ??= new SetAside(this.ctx, () => this.stats));
  }

  start(): void {
    this.loopDone ??= this.run();
  }

  /** Waits `ms` before the next attempt; stop cuts it short. */
  protected async pause(ms: number): Promise<void> {
    const sleep = cancellableSleep(ms);
    this.sleeping = sleep;
    await sleep.promise;
    this.sleeping = null;
  }

  /**
   * An attempt failed with `unconfirmed` records sent and not confirmed: they go back to the queue
   * ahead of any still owed from an earlier failure, and the next ones sent are repeats. Added, not
   * set: an attempt that fails before sending anything leaves the count as it was.
   */
  protected owedReplay(unconfirmed: number): void {
    this.toReplay += unconfirmed;
  }

  /** `n` records owed a resend were freed unsent (the far end already had them). */
  protected skippedReplays(n: number): void {
    this.toReplay = Math.max(0, this.toReplay - n);
  }

  /** Counts `n` records sent again (of those owed a resend, at most). */
  protected countReplayed(n: number): void {
    const again = Math.min(this.toReplay, n);
    this.stats.replayed += again;
    this.toReplay -= again;
  }

  /** Counts `n` records sent; the first ones after a failed attempt are counted as replayed too. */
  protected countSent(n: number): void {
    this.stats.sent += n;
    this.countReplayed(n);
  }

  /** One warning per failure, at most one a second; the lines left out are counted in the next. */
  protected logRetry(fields: Record<string, unknown>, message: string): void {
    this.quiet.log('failure', (extra) =>
      this.ctx.logger.warn({ ...fields, queued: this.queue.stats().records, ...extra }, message),
    );
  }

  /** Drains for at most `timeoutMs`, then cuts the connection; returns the records left queued. */
  async stop(timeoutMs: number): Promise<number> {
    this.draining = true;
    this.sleeping?.cancel();
    await this.queue.close(); // wakes a loop waiting for records, so it can see the queue is empty
    const loop = this.loopDone ?? Promise.resolve();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      loop.then(() => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), timeoutMs))),
    ]);
    clearTimeout(timer);
    this.stopped = true;
    this.sleeping?.cancel();
    await this.release(timedOut);
    await loop.catch(() => undefined);
    this.queue.rewind(); // what was in flight stays queued
    return this.queue.stats().records;
  }
}
