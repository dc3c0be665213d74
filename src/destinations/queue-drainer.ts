import { setTimeout as sleep } from 'node:timers/promises';
import type { LogRecord } from '../record.js';
import type { DeadLetter } from './dead-letters.js';
import { DeliveryLoop } from './delivery-loop.js';
import { isRecordShaped, reasonOf, sameRecord, type Rejected } from './failures.js';
import { type DestinationContext, type DestinationStats, newDestinationStats } from './types.js';

/**
 * Delivery one batch at a time (`file`, `syslog`): take a batch from the queue, deliver it,
 * acknowledge it, or put it back and wait (backoff with jitter) before trying again.
 */
export abstract class QueueDrainer extends DeliveryLoop {
  readonly stats: DestinationStats = newDestinationStats();
  /** After a failure that may be a record's, the records of that batch left to send one at a time. */
  private isolate = 0;
  /** The record sent alone that failed last, and how often in a row. Cleared by a success. */
  private suspect: { record: LogRecord; attempts: number } | null = null;

  constructor(
    ctx: DestinationContext,
    backoff: { initial: number; max: number },
    private readonly batchSize: number,
  ) {
    super(ctx, backoff);
  }

  /**
   * Delivers the batch or throws; on success its records leave the queue. Records it can never
   * deliver (a path the file system refuses, a message it cannot encode) are returned, not thrown:
   * they are set aside as dead letters and the rest of the batch counts as delivered.
   */
  protected abstract deliver(records: LogRecord[]): Promise<Rejected[] | undefined>;
  protected async run(): Promise<void> {
    while (!this.stopped) {
      const batch = this.queue.take(this.isolate > 0 ? 1 : this.batchSize);
      if (batch.length === 0) {
        if (this.draining) return;
        await this.queue.waitForRecords();
        continue;
      }
      this.countReplayed(batch.length);
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
        this.owedReplay(batch.length); // one batch at a time: exactly these come out again
        const wait = this.backoff.next();
        this.logFailure(err, wait);
        await this.pause(wait);
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

  private logFailure(err: unknown, waitMs: number): void {
    this.logRetry(
      { reason: err instanceof Error ? err.message : String(err), retry_in_ms: waitMs },
      'delivery failed; records stay queued and will be retried',
    );
  }
}
