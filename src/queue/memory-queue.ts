import type { LogRecord } from '../record.js';
import { countDrop } from '../stats.js';
import { noCorruption, type DestinationQueue, type FullPolicy, type QueueStats } from './types.js';

export interface MemoryQueueOptions {
  maxRecords: number;
  maxBytes: number;
  full: FullPolicy;
}

/**
 * Records in RAM, bounded by count and bytes. Lost if the process dies: the disk modes exist for that.
 * `items[head..readPos)` are handed out and unacknowledged, `items[readPos..]` wait to be taken.
 */
export class MemoryQueue implements DestinationQueue {
  readonly fullPolicy: FullPolicy;
  /** See DestinationQueue.epoch: a memory queue never forgets what it handed out. */
  readonly epoch = 0;
  private items: LogRecord[] = [];
  private head = 0;
  private readPos = 0;
  private bytes = 0;
  private inFlightBytes = 0;
  private pushed = 0;
  private acked = 0;
  private readonly dropped: Record<string, number> = {};
  private stalls = 0;
  private spaceWaiters: (() => void)[] = [];
  private recordWaiter: (() => void) | null = null;
  private closed = false;

  constructor(
    readonly name: string,
    private readonly options: MemoryQueueOptions,
  ) {
    this.fullPolicy = options.full;
  }

  get length(): number {
    return this.items.length - this.head;
  }

  /** Message bytes of the records held (handed out or not). */
  get heldBytes(): number {
    return this.bytes;
  }

  isFull(): boolean {
    return this.length >= this.options.maxRecords || this.bytes >= this.options.maxBytes;
  }

  push(records: LogRecord[]): undefined {
    if (records.length === 0) return undefined;
    let batch = records;
    if (this.fullPolicy !== 'block') batch = this.makeRoom(records);
    for (let i = 0; i < batch.length; i++) {
      const r = batch[i]!;
      this.items.push(r);
      this.bytes += r.raw.length;
    }
    this.pushed += batch.length;
    if (batch.length > 0 && this.recordWaiter) {
      const wake = this.recordWaiter;
      this.recordWaiter = null;
      wake();
    }
    return undefined;
  }

  /** Applies drop_newest / drop_oldest; returns the part of `records` to append. */
  private makeRoom(records: LogRecord[]): LogRecord[] {
    const { maxRecords, maxBytes } = this.options;
    let incomingBytes = 0;
    for (const r of records) incomingBytes += r.raw.length;
    if (this.length + records.length <= maxRecords && this.bytes + incomingBytes <= maxBytes) return records;
    if (this.fullPolicy === 'drop_newest') {
      const n = this.room(records);
      if (n < records.length) this.countDrop('queue_full', records.length - n);
      return n === records.length ? records : records.slice(0, n);
    }
    // drop_oldest: evict waiting (not in-flight) records, oldest first; if the batch alone is too big, keep its newest
    // part.
    let keepFrom = 0;
    let keepBytes = incomingBytes;
    while (keepFrom < records.length && (records.length - keepFrom > maxRecords || keepBytes > maxBytes)) {
      keepBytes -= records[keepFrom++]!.raw.length;
    }
    let evict = 0;
    let freed = 0;
    const waiting = this.items.length - this.readPos;
    while (
      evict < waiting &&
      (this.length - evict + records.length - keepFrom > maxRecords || this.bytes - freed + keepBytes > maxBytes)
    ) {
      freed += this.items[this.readPos + evict]!.raw.length;
      evict++;
    }
    if (evict > 0) {
      this.items.splice(this.readPos, evict);
      this.bytes -= freed;
    }
    const dropped = evict + keepFrom;
    if (dropped > 0) this.countDrop('queue_full', dropped);
    return keepFrom === 0 ? records : records.slice(keepFrom);
  }

  countDrop(reason: string, n: number): void {
    countDrop(this.dropped, reason, n);
  }

  countStall(): void {
    this.stalls++;
  }

  /** How many of `records` fit now (by count and bytes), from the first. */
  room(records: LogRecord[]): number {
    let n = 0;
    let b = this.bytes;
    while (
      n < records.length &&
      this.length + n < this.options.maxRecords &&
      b + records[n]!.raw.length <= this.options.maxBytes
    )
      b += records[n++]!.raw.length;
    return n;
  }

  /** Every record not yet acknowledged, oldest first (handed out or not). */
  unacked(): LogRecord[] {
    return this.items.slice(this.head);
  }

  /** Records waiting to be taken (not handed out). */
  get waiting(): number {
    return this.items.length - this.readPos;
  }

  waitForSpace(): Promise<void> {
    if (!this.isFull() || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.spaceWaiters.push(resolve));
  }

  /** Never: nothing waits to be written. */
  congested(): boolean {
    return false;
  }

  waitUncongested(): Promise<void> {
    return Promise.resolve();
  }

  overloaded(): boolean {
    return false;
  }

  take(max: number): LogRecord[] {
    const end = Math.min(this.items.length, this.readPos + max);
    if (end === this.readPos) return [];
    const out = this.items.slice(this.readPos, end);
    for (const r of out) this.inFlightBytes += r.raw.length;
    this.readPos = end;
    return out;
  }

  ack(count: number): void {
    const n = Math.min(count, this.readPos - this.head);
    let freed = 0;
    for (let i = this.head; i < this.head + n; i++) freed += this.items[i]!.raw.length;
    this.head += n;
    this.bytes -= freed;
    this.inFlightBytes -= freed;
    this.acked += n;
    // Compact now and then so that the array does not grow without end.
    if (this.head > 4096 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.readPos -= this.head;
      this.head = 0;
    }
    if (this.spaceWaiters.length > 0 && this.hasRoomToResume()) this.wakeProducers();
  }

  /**
   * Waiting producers resume only once a sixteenth of the queue is free again, not at the first
   * free slot: otherwise a source under flow control pauses and resumes for every acknowledgement
   * and reads its senders in tiny steps.
   */
  private hasRoomToResume(): boolean {
    const { maxRecords, maxBytes } = this.options;
    return (
      this.length <= maxRecords - Math.max(1, maxRecords >> 4) && this.bytes <= maxBytes - Math.max(1, maxBytes / 16)
    );
  }

  rewind(): void {
    this.readPos = this.head;
    this.inFlightBytes = 0;
    if (this.items.length > this.head && this.recordWaiter) {
      const wake = this.recordWaiter;
      this.recordWaiter = null;
      wake();
    }
  }

  waitForRecords(): Promise<void> {
    if (this.readPos < this.items.length || this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const prev = this.recordWaiter;
      this.recordWaiter = prev
        ? () => {
            prev();
            resolve();
          }
        : resolve;
    });
  }

  private wakeProducers(): void {
    const waiters = this.spaceWaiters;
    this.spaceWaiters = [];
    for (const w of waiters) w();
  }

  stats(): QueueStats {
    return {
      mode: 'memory',
      records: this.length,
      bytes: this.bytes,
      memoryRecords: this.length,
      memoryBytes: this.bytes,
      diskBytes: 0,
      inFlight: this.readPos - this.head,
      capacityRecords: this.options.maxRecords,
      capacityBytes: this.options.maxBytes,
      pushed: this.pushed,
      acked: this.acked,
      dropped: { ...this.dropped },
      stalls: this.stalls,
      oldestReceivedAt: this.length > 0 ? this.items[this.head]!.receivedAt : null,
      corruption: noCorruption(),
    };
  }

  async dispose(): Promise<void> {
    await this.close();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.wakeProducers();
    if (this.recordWaiter) {
      const wake = this.recordWaiter;
      this.recordWaiter = null;
      wake();
    }
  }
}
