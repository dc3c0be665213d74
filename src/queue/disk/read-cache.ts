import type { LogRecord } from '../../record.js';
import { QueueCorruptError, RECORD_HEADER, type RingFile } from './ring-file.js';

export interface ReadCacheSource {
  /** The ring to read (a rotation replaces it). */
  ring(): RingFile;
  decode(payload: Buffer): LogRecord;
  /** Bytes of records read ahead of the destination at most. */
  readAhead: number;
  /** A record failed its checks while being read: the queue rotates the file (and resets this cache). */
  corrupt(err: QueueCorruptError): Promise<void>;
  /** Any other read error: logged; the next take tries again. */
  readFailed(err: Error): void;
}

/**
 * The records of a reliable queue between its file and its destination: read ahead from the ring
 * (up to `readAhead` bytes), handed out in order by `take`, and remembered by their end positions
 * until acknowledged, so that `ack` can move the ring's head and `rewind` can hand them out again.
 */
export class ReadCache {
  // Records loaded from disk, not yet handed out, with their end positions.
  private ready: LogRecord[] = [];
  private readyEnds: number[] = [];
  private readyBytes = 0;
  private readyHead = 0;
  // Handed out, not yet acknowledged.
  private inFlightEnds: number[] = [];
  private inFlightHead = 0;
  private inFlightBytes = 0;
  private inFlightSizes: number[] = [];
  private inFlightTimes: number[] = [];
  // Next record to load from disk.
  private loadPos = 0;
  private loadSeq = 0;
  private loading: Promise<void> | null = null;
  /** Bumped by every reset: a load of an earlier epoch keeps nothing it read. */
  private epoch = 0;
  private stopped = false;
  private waiters: (() => void)[] = [];

  constructor(private readonly source: ReadCacheSource) {}

  /** Bytes held: read ahead and handed out. */
  get bytes(): number {
    return this.readyBytes + this.inFlightBytes;
  }

  /** Records handed out and not yet acknowledged. */
  get inFlight(): number {
    return this.inFlightEnds.length - this.inFlightHead;
  }

  /** Forgets everything loaded or handed out; the next load starts at the ring's head. */
  reset(): void {
    this.epoch++;
    this.loading = null;
    this.ready = [];
    this.readyEnds = [];
    this.readyHead = 0;
    this.readyBytes = 0;
    this.inFlightEnds = [];
    this.inFlightSizes = [];
    this.inFlightTimes = [];
    this.inFlightHead = 0;
    this.inFlightBytes = 0;
    const ring = this.source.ring();
    this.loadPos = ring.head;
    this.loadSeq = ring.headSeq;
  }

  /**
   * After the ring recovered from a failed sync: a reader that followed the empty ring to its next lap follows it back
   * (nothing was read there).
   */
  followRing(): void {
    if (this.loadPos > this.source.ring().tail) this.reset();
  }

  /** Loads more once the ring has synced records not loaded yet. */
  synced(): void {
    if (this.loadPos < this.source.ring().syncedTail) this.startLoading();
  }

  take(max: number): LogRecord[] {
    const from = this.readyHead;
    const n = Math.min(max, this.ready.length - from);
    if (n === 0) {
      this.startLoading();
      return [];
    }
    const out = this.ready.slice(from, from + n);
    for (let i = 0; i < n; i++) {
      const size = out[i]!.raw.length;
      this.inFlightEnds.push(this.readyEnds[from + i]!);
      this.inFlightSizes.push(size);
      this.inFlightTimes.push(out[i]!.receivedAt);
      this.inFlightBytes += size;
      this.readyBytes -= size + RECORD_HEADER;
    }
    this.readyHead += n;
    if (this.readyHead === this.ready.length) {
      this.ready = [];
      this.readyEnds = [];
      this.readyHead = 0;
    } else if (this.readyHead > 4096 && this.readyHead * 2 > this.ready.length) {
      this.ready = this.ready.slice(this.readyHead);
      this.readyEnds = this.readyEnds.slice(this.readyHead);
      this.readyHead = 0;
    }
    if (this.readyBytes < this.source.readAhead / 2) this.startLoading();
    return out;
  }

  /** Forgets the oldest `count` records handed out; returns how many and where the last ends, for the ring's head. */
  ack(count: number): { n: number; end: number } | null {
    const n = Math.min(count, this.inFlightEnds.length - this.inFlightHead);
    if (n <= 0) return null;
    const lastIndex = this.inFlightHead + n - 1;
    const end = this.inFlightEnds[lastIndex]!;
    for (let i = this.inFlightHead; i <= lastIndex; i++) this.inFlightBytes -= this.inFlightSizes[i]!;
    this.inFlightHead += n;
    if (this.inFlightHead > 4096 && this.inFlightHead * 2 > this.inFlightEnds.length) {
      this.inFlightEnds = this.inFlightEnds.slice(this.inFlightHead);
      this.inFlightSizes = this.inFlightSizes.slice(this.inFlightHead);
      this.inFlightTimes = this.inFlightTimes.slice(this.inFlightHead);
      this.inFlightHead = 0;
    }
    return { n, end };
  }

  /** Hands out again, from the oldest unacknowledged record. */
  rewind(): void {
    this.reset();
    this.startLoading();
  }

  /** Resolves when there is something to take (or `release` is called). */
  waitForRecords(): Promise<void> {
    if (this.ready.length > this.readyHead) return Promise.resolve();
    this.startLoading();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Lets every `waitForRecords` go (the queue closed, or a rotation brought records back). */
  release(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Receive time of the oldest unacknowledged record, when it is in memory. */
  oldestReceivedAt(): number | null {
    if (this.inFlightEnds.length > this.inFlightHead) return this.inFlightTimes[this.inFlightHead]!;
    // Nothing in flight: everything before the first loaded record is acknowledged.
    if (this.ready.length > this.readyHead) return this.ready[this.readyHead]!.receivedAt;
    return null;
  }

  /** No more loads; waits for the one under way. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.epoch++;
    await this.loading;
  }

  startLoading(): void {
    if (this.loading || this.stopped) return;
    const epoch = this.epoch;
    this.loading = this.load(epoch)
      .catch(async (err: unknown) => {
        if (epoch !== this.epoch) return;
        if (err instanceof QueueCorruptError) await this.source.corrupt(err);
        else this.source.readFailed(err as Error);
      })
      .finally(() => {
        if (epoch === this.epoch) this.loading = null;
      });
  }

  private async load(epoch: number): Promise<void> {
    const ring = this.source.ring();
    // Only an empty ring's move to the next lap puts its head past what was loaded (see restartLap).
    if (this.loadPos < ring.head) {
      this.loadPos = ring.head;
      this.loadSeq = ring.headSeq;
    }
    const readAhead = this.source.readAhead;
    while (epoch === this.epoch && this.readyBytes < readAhead && this.loadPos < ring.syncedTail) {
      const recs = await ring.read(this.loadPos, this.loadSeq, Math.min(1 << 20, readAhead));
      if (epoch !== this.epoch || recs.length === 0) return;
      for (const r of recs) {
        const rec = this.source.decode(r.payload);
        rec.queueSeq = r.seq;
        this.ready.push(rec);
        this.readyEnds.push(r.end);
        this.readyBytes += rec.raw.length + RECORD_HEADER;
      }
      const last = recs[recs.length - 1]!;
      this.loadPos = last.end;
      this.loadSeq = last.seq + 1;
      this.release();
    }
  }
}
