import { setTimeout as sleep } from 'node:timers/promises';
import { RateLimitedLog } from '../log.js';
import { cancellableSleep, ExponentialBackoff } from '../net/backoff.js';
import type { LogRecord } from '../record.js';
import { SetAside, type DeadLetter } from './dead-letters.js';
import { isRecordShaped, reasonOf, sameRecord, type Rejected } from './failures.js';
import { type Destination, type DestinationContext, type DestinationStats, newDestinationStats } from './types.js';

/**
 * The send loop every destination shares: take a batch from the queue, deliver it, acknowledge
 * it, or put it back and wait (backoff with jitter) before trying again. One batch at a time.
 */
export abstract class QueueDrainer implements Destination {
  readonly stats: DestinationStats = newDestinationStats();
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
  /** After a failure that may be a record's, the records of that batch left to send one at a time. */
  private isolate = 0;
  /** The record sent alone that failed last, and how often in a row. Cleared by a success. */
  private suspect: { record: LogRecord; attempts: number } | null = null;
  private readonly aside: SetAside;

  constructor(
    protected readonly ctx: DestinationContext,
    backoff: { initial: number; max: number },
    private readonly batchSize: number,
  ) {
    this.name = ctx.name;
    this.queue = ctx.queue;
    this.backoff = new ExponentialBackoff(backoff.initial, backoff.max);
    this.aside = new SetAside(ctx, () => this.stats);
  }

  abstract describe(): string;
  /**
   * Delivers the batch or throws; on success its records leave the queue. Records it can never
   * deliver (a path the file system refuses, a message it cannot encode) are returned, not thrown:
   * they are set aside as dead letters and the rest of the batch counts as delivered.
   */
  protected abstract deliver(records: LogRecord[]): Promise<Rejected[] | undefined>;
  /** Releases sockets and files; `force` cuts short anything in progress. */
  protected abstract release(force: boolean): Promise<void>;

  start(): void {
    this.loopDone ??= this.loop();
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      const batch = this.queue.take(this.isolate > 0 ? 1 : this.batchSize);
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
      // Expired records at the head go at once, whether or not the destination is up (they are
      // set aside because it was down for too long).
      if (await this.setAsideExpiredHead(batch, epoch)) continue;
      try {
        // Expired records further in (received out of order) are set aside unsent too.
        const letters: DeadLetter[] = this.aside.expired(batch);
        const gone = new Set(letters.map((l) => l.record));
        const live = gone.size > 0 ? batch.filter((r) => !gone.has(r)) : batch;
        const rejected = live.length > 0 ? ((await this.deliver(live)) ?? []) : [];
        for (const r of rejected)
          letters.push({
            ...r,
            attempts: 1 + (this.suspect && sameRecord(this.suspect.record, r.record) ? this.suspect.attempts : 0),
          });
        // Set aside (durably) before the batch leaves the queue: a crash in between sends it again.
        if (letters.length > 0) await this.aside.put(letters);
        // Rotated meanwhile (see DestinationQueue.epoch): these come out again from the fresh file.
        if (this.queue.epoch !== epoch) continue;
        this.queue.ack(batch.length);
        this.stats.delivered += batch.length - letters.length;
        this.backoff.reset();
        this.suspect = null;
        this.isolate = Math.max(0, this.isolate - batch.length);
      } catch (err) {
        if (this.stopped) {
          this.queue.rewind();
          return;
        }
        this.stats.failures++;
        if (await this.blame(batch, err, epoch)) continue;
        this.queue.rewind();
        this.toReplay = batch.length; // one batch at a time: exactly these come out again
        const wait = this.backoff.next();
        this.logFailure(err, wait);
        const sleep = cancellableSleep(wait);
        this.sleeping = sleep;
        await sleep.promise;
        this.sleeping = null;
      }
    }
  }

  /** True when the batch began with expired records: they were set aside and acknowledged, the rest put back. */
  private async setAsideExpiredHead(batch: LogRecord[], epoch: number): Promise<boolean> {
    const expired = this.aside.expiredHead(batch);
    if (expired.length === 0) return false;
    try {
      await this.aside.put(expired);
    } catch (err) {
      this.queue.rewind();
      this.logFailure(err, 0);
      await sleep(1000);
      return true;
    }
    if (this.queue.epoch === epoch) this.queue.ack(expired.length);
    this.queue.rewind(); // the rest of the batch comes out again
    return true;
  }

  /**
   * A failure that may be a record's (see isRecordShaped): a batch of several is sent again one
   * record at a time, so that the one to blame is found; a record alone that fails so
   * `max_record_attempts` times in a row is set aside and the queue goes on. True when the record
   * was set aside (acknowledged): the loop goes on at once.
   */
  private async blame(batch: LogRecord[], err: unknown, epoch: number): Promise<boolean> {
    if (!isRecordShaped(err)) {
      this.suspect = null;
      return false;
    }
    if (batch.length > 1) {
      this.isolate = batch.length;
      this.suspect = null;
      return false;
    }
    const r = batch[0]!;
    if (this.suspect && sameRecord(this.suspect.record, r)) this.suspect.attempts++;
    else this.suspect = { record: r, attempts: 1 };
    if (this.suspect.attempts < this.aside.maxRecordAttempts) return false;
    try {
      await this.aside.put([
        {
          record: r,
          reason: reasonOf(err),
          error: err instanceof Error ? err.message : String(err),
          attempts: this.suspect.attempts,
        },
      ]);
    } catch (e) {
      this.ctx.logger.error(
        { err: (e as Error).message },
        'cannot set a record aside as a dead letter; it stays queued',
      );
      return false;
    }
    this.suspect = null;
    this.isolate = Math.max(0, this.isolate - 1);
    if (this.queue.epoch !== epoch) return true; // rotated: it comes out again from the fresh file
    this.queue.ack(1);
    this.backoff.reset();
    return true;
  }

  /** One line per failure, at most one a second; the lines left out are counted in the next. */
  private logFailure(err: unknown, waitMs: number): void {
    const reason = err instanceof Error ? err.message : String(err);
    this.quiet.log('failure', (extra) =>
      this.ctx.logger.warn(
        { reason, retry_in_ms: waitMs, queued: this.queue.stats().records, ...extra },
        'delivery failed; records stay queued and will be retried',
      ),
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
