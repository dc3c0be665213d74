import { RateLimitedLog } from '../log.js';
import { cancellableSleep, ExponentialBackoff } from '../net/backoff.js';
import type { LogRecord } from '../record.js';
import type { Destination, DestinationContext, DestinationStats } from './types.js';

/**
 * The send loop every destination shares: take a batch from the queue, deliver it, acknowledge
 * it, or put it back and wait (backoff with jitter) before trying again. One batch at a time.
 */
export abstract class QueueDrainer implements Destination {
  readonly stats: DestinationStats = { sent: 0, delivered: 0, failures: 0, replayed: 0, reconnectAttempts: 0, reconnects: 0, connected: false };
  readonly name: string;
  readonly queue: DestinationContext['queue'];
  protected readonly backoff: ExponentialBackoff;
  private loopDone: Promise<void> | null = null;
  private draining = false;
  protected stopped = false;
  private sleeping: { cancel: () => void } | null = null;
  private readonly quiet = new RateLimitedLog();
  /** Records that were in a failed batch and will come out of the queue again. */
  private toReplay = 0;

  constructor(
    protected readonly ctx: DestinationContext,
    backoff: { initial: number; max: number },
    private readonly batchSize: number,
  ) {
    this.name = ctx.name;
    this.queue = ctx.queue;
    this.backoff = new ExponentialBackoff(backoff.initial, backoff.max);
  }

  abstract describe(): string;
  /** Delivers the batch or throws; on success its records leave the queue. */
  protected abstract deliver(records: LogRecord[]): Promise<void>;
  /** Releases sockets and files; `force` cuts short anything in progress. */
  protected abstract release(force: boolean): Promise<void>;

  start(): void {
    this.loopDone ??= this.loop();
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      const batch = this.queue.take(this.batchSize);
      if (batch.length === 0) {
        if (this.draining) return;
        await this.queue.waitForRecords();
        continue;
      }
      if (this.toReplay > 0) {
        const again = Math.min(this.toReplay, batch.length);
        this.stats.replayed += again;
        this.toReplay -= again;
      }
      const epoch = this.queue.epoch;
      try {
        await this.deliver(batch);
        // Rotated meanwhile (see DestinationQueue.epoch): these come out again from the fresh file.
        if (this.queue.epoch !== epoch) continue;
        this.queue.ack(batch.length);
        this.stats.delivered += batch.length;
        this.backoff.reset();
      } catch (err) {
        this.queue.rewind();
        this.toReplay = batch.length; // one batch at a time: exactly these come out again
        if (this.stopped) return;
        this.stats.failures++;
        const wait = this.backoff.next();
        this.logFailure(err, wait);
        const sleep = cancellableSleep(wait);
        this.sleeping = sleep;
        await sleep.promise;
        this.sleeping = null;
      }
    }
  }

  /** One line per failure, at most one a second; the lines left out are counted in the next. */
  private logFailure(err: unknown, waitMs: number): void {
    const reason = err instanceof Error ? err.message : String(err);
    this.quiet.log('failure', (extra) =>
      this.ctx.logger.warn({ reason, retry_in_ms: waitMs, queued: this.queue.stats().records, ...extra }, 'delivery failed; records stay queued and will be retried'),
    );
  }

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
    return this.queue.stats().records;
  }
}
