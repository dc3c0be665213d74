import { rename, rm, stat } from 'node:fs/promises';
import { QueueLayout } from '../layout.js';
import type { LogRecord } from '../../record.js';
import { MemoryQueue } from '../memory-queue.js';
import {
  noCorruption,
  type CorruptionStats,
  type DestinationQueue,
  type FullPolicy,
  type QueueStats,
} from '../types.js';
import { openFsQueueFile } from './queue-file.js';
import { encodedSize, encodeInto, RecordDecoder } from '../../protocol/record-codec.js';
import { ReliableQueue, type ReliableQueueOptions } from './reliable-queue.js';
import { DATA_START, QueueCorruptError, readNewestHeader, RECORD_HEADER, RingFile } from './ring-file.js';
import { salvageRecords } from './salvage.js';
import { fsyncDir } from '../../util/fs.js';

export interface NormalQueueOptions extends ReliableQueueOptions {
  /** Records in the output buffer, ready for the destination (handed-out ones included). */
  qoutSize: number;
  /** Records in the in-memory overflow behind it. */
  memBufLength: number;
  /** Most message bytes the two memory parts hold together. */
  memBytes: number;
}

/** Where a clean shutdown leaves the records that were only in memory. */

/**
 * The normal mode: records stay in memory (the output buffer, then the overflow: at most
 * `qoutSize + memBufLength` records) and go to the queue file only when memory is full. A crash
 * loses at most the memory part; a clean shutdown writes it to `memory.sq`, which the next start
 * reads back ahead of the file.
 *
 * Order is kept with three parts, handed out in this order: `mem` (older than anything in the
 * file), the file, and `back` (newer than anything in the file: records that came while the file
 * still held some, and memory had room). Once the file is empty, `back` joins `mem`, and the queue
 * is all memory again: a burst that overflowed costs disk writes for the overflow only, not for
 * everything after it. When memory fills while the file holds records, `back` goes to the file
 * first (it is older than what comes next), then the new records.
 */
export class NormalQueue implements DestinationQueue {
  readonly fullPolicy: FullPolicy;

  /** See DestinationQueue.epoch: only the file part can be rotated. */
  get epoch(): number {
    return this.overflow.epoch;
  }
  private memInFlight = 0;
  private diskInFlight = 0;
  private readers: (() => void)[] = [];
  private memArmed = false;
  private diskArmed = false;
  private closed = false;
  private restored = 0;
  /** Records newer than every record in the file, not handed out yet (see the class comment). */
  private back: LogRecord[] = [];
  private backBytes = 0;
  private readonly ownCorruption: CorruptionStats = noCorruption();

  private constructor(
    readonly name: string,
    readonly dir: string,
    private readonly mem: MemoryQueue,
    private readonly overflow: ReliableQueue,
    private readonly options: NormalQueueOptions,
  ) {
    this.fullPolicy = options.full;
  }

  static async open(name: string, dir: string, options: NormalQueueOptions): Promise<NormalQueue> {
    const overflow = await ReliableQueue.open(name, dir, { ...options, mode: 'normal' });
    const mem = new MemoryQueue(name, {
      maxRecords: options.qoutSize + options.memBufLength,
      maxBytes: options.memBytes,
      full: 'block',
    });
    const q = new NormalQueue(name, dir, mem, overflow, options);
    try {
      await q.restoreMemory();
    } catch (err) {
      await overflow.dispose();
      throw err;
    }
    return q;
  }

  /** Records the last clean shutdown saved from memory go first: they are older than the file's. */
  private async restoreMemory(): Promise<void> {
    const file = new QueueLayout(this.dir).memory;
    const size = await stat(file).then(
      (s) => s.size,
      () => -1,
    );
    if (size < 0) return;
    const capacity = size - DATA_START;
    const decoder = new RecordDecoder(this.options.counters);
    const records: LogRecord[] = [];
    if (capacity > 0) {
      const qf = await openFsQueueFile(file, false);
      try {
        const { ring } = await RingFile.open(qf, { capacity, fsync: false });
        for (let pos = ring.head, seq = ring.headSeq; pos < ring.syncedTail; ) {
          const recs = await ring.read(pos, seq, 4 << 20);
          if (recs.length === 0) break;
          for (const r of recs) records.push(decoder.decode(Buffer.from(r.payload)));
          pos = recs[recs.length - 1]!.end;
          seq = recs[recs.length - 1]!.seq + 1;
        }
      } catch (err) {
        if (!(err instanceof QueueCorruptError)) throw err;
        const said = await readNewestHeader(qf);
        const salvage = await salvageRecords(qf, capacity).catch(() => ({ records: [], unreadableBytes: capacity }));
        records.length = 0;
        for (const r of salvage.records) records.push(decoder.decode(r.payload));
        const moved = QueueLayout.corrupted(file);
        await rename(file, moved);
        this.ownCorruption.rotated++;
        this.ownCorruption.salvaged += records.length;
        const lost = said ? Math.max(0, said.tailSeq - said.headSeq - records.length) : null;
        this.ownCorruption.lostRecords += lost ?? 0;
        this.ownCorruption.lostBytes += salvage.unreadableBytes;
        this.options.logger.error(
          {
            queue: this.name,
            reason: err.reason,
            moved_to: moved,
            records_salvaged: records.length,
            records_lost: lost ?? 'unknown (no readable header)',
            unreadable_bytes: salvage.unreadableBytes,
          },
          'the records saved from memory at the last shutdown are damaged: kept every valid one; the unreadable ' +
            'bytes are lost',
        );
      } finally {
        await qf.close().catch(() => undefined);
      }
    }
    if (records.length > 0) this.mem.push(records);
    this.restored = records.length;
    await rm(file, { force: true });
    await fsyncDir(this.dir);
    this.options.logger.info(
      { queue: this.name, records: records.length },
      'read back the records the last shutdown saved from memory',
    );
  }

  isFull(): boolean {
    return this.overflow.isFull();
  }

  push(records: LogRecord[], awaited = false): Promise<void> | undefined {
    if (records.length === 0 || this.closed) return undefined;
    if (this.overflow.size === 0) {
      this.backToMemory();
      const n = this.mem.room(records);
      if (n > 0) {
        this.mem.push(n === records.length ? records : records.slice(0, n));
        this.wakeReaders();
        if (n === records.length) return undefined;
      }
      return this.overflow.push(n === 0 ? records : records.slice(n), awaited);
    }
    // The file holds records: these go behind them, in memory while it has room.
    const n = this.backRoom(records);
    if (n === records.length) {
      this.toBack(records);
      return undefined;
    }
    // Memory is full: what waits behind the file goes into it first, then this batch.
    const toFile = this.takeBack();
    for (const r of records) toFile.push(r);
    return this.overflow.push(toFile, awaited);
  }

  /** How many of `records` fit in memory behind the file (memory's bounds cover `mem` and `back` together). */
  private backRoom(records: LogRecord[]): number {
    const maxRecords = this.options.qoutSize + this.options.memBufLength;
    const used = this.mem.length + this.back.length;
    let bytes = this.mem.heldBytes + this.backBytes;
    let n = 0;
    while (n < records.length && used + n < maxRecords && bytes + records[n]!.raw.length <= this.options.memBytes)
      bytes += records[n++]!.raw.length;
    return n;
  }

  private toBack(records: LogRecord[]): void {
    for (const r of records) {
      this.back.push(r);
      this.backBytes += r.raw.length;
    }
  }

  private takeBack(): LogRecord[] {
    const b = this.back;
    this.back = [];
    this.backBytes = 0;
    return b;
  }

  /** The file is empty: `back` is next in line, and joins memory's output. */
  private backToMemory(): void {
    if (this.back.length === 0 || this.overflow.size !== 0) return;
    const b = this.takeBack();
    this.mem.push(b);
    this.wakeReaders();
  }

  waitForSpace(): Promise<void> {
    return this.overflow.waitForSpace();
  }

  congested(): boolean {
    return this.overflow.congested();
  }

  waitUncongested(): Promise<void> {
    return this.overflow.waitUncongested();
  }

  overloaded(): boolean {
    return this.overflow.overloaded();
  }

  countDrop(reason: string, n: number): void {
    this.overflow.countDrop(reason, n);
  }

  countStall(): void {
    this.overflow.countStall();
  }

  take(max: number): LogRecord[] {
    if (this.back.length > 0 && this.mem.waiting === 0) this.backToMemory();
    const fromMem = this.mem.take(max);
    this.memInFlight += fromMem.length;
    // The file's records are newer than every record in memory: only once memory has none waiting.
    if (fromMem.length === max || this.mem.waiting > 0) return fromMem;
    const fromDisk = this.overflow.take(max - fromMem.length);
    this.diskInFlight += fromDisk.length;
    if (fromMem.length === 0) return fromDisk;
    return fromDisk.length === 0 ? fromMem : fromMem.concat(fromDisk);
  }

  ack(count: number): void {
    const m = Math.min(count, this.memInFlight);
    if (m > 0) {
      this.mem.ack(m);
      this.memInFlight -= m;
    }
    const d = Math.min(count - m, this.diskInFlight);
    if (d > 0) {
      this.overflow.ack(d);
      this.diskInFlight -= d;
      // The file's last records are acknowledged: what waited behind them is next.
      this.backToMemory();
    }
  }

  rewind(): void {
    this.mem.rewind();
    this.overflow.rewind();
    this.memInFlight = 0;
    this.diskInFlight = 0;
  }

  waitForRecords(): Promise<void> {
    this.backToMemory();
    if (this.mem.waiting > 0 || this.closed) return Promise.resolve();
    const p = new Promise<void>((resolve) => this.readers.push(resolve));
    if (!this.memArmed) {
      this.memArmed = true;
      void this.mem.waitForRecords().then(() => {
        this.memArmed = false;
        this.wakeReaders();
      });
    }
    if (!this.diskArmed) {
      this.diskArmed = true;
      void this.overflow.waitForRecords().then(() => {
        this.diskArmed = false;
        this.wakeReaders();
      });
    }
    return p;
  }

  private wakeReaders(): void {
    if (this.readers.length === 0) return;
    const w = this.readers;
    this.readers = [];
    for (const f of w) f();
  }

  stats(): QueueStats {
    const m = this.mem.stats();
    const d = this.overflow.stats();
    const dropped = { ...d.dropped };
    const c = d.corruption;
    const o = this.ownCorruption;
    return {
      mode: 'normal',
      records: m.records + this.back.length + d.records,
      bytes: m.bytes + this.backBytes + d.bytes,
      memoryRecords: m.records + this.back.length,
      memoryBytes: m.memoryBytes + this.backBytes + d.memoryBytes,
      diskBytes: d.diskBytes,
      inFlight: m.inFlight + d.inFlight,
      capacityRecords: Number.POSITIVE_INFINITY,
      capacityBytes: d.capacityBytes,
      // A record moved from `back` to `mem` or the file is counted there; only those still in `back` are added.
      pushed: m.pushed - this.restored + d.pushed + this.back.length,
      acked: m.acked + d.acked,
      dropped,
      stalls: d.stalls,
      oldestReceivedAt: m.oldestReceivedAt ?? d.oldestReceivedAt,
      corruption: {
        rotated: c.rotated + o.rotated,
        salvaged: c.salvaged + o.salvaged,
        lostRecords: c.lostRecords + o.lostRecords,
        lostBytes: c.lostBytes + o.lostBytes,
        tornRecords: c.tornRecords,
      },
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.mem.close();
    await this.overflow.close();
    this.wakeReaders();
  }

  /**
   * Saves what is only in memory to `memory.sq` (fsynced, then renamed into place), then closes the
   * file. What waited behind the file's records goes into the file, behind them.
   */
  async dispose(): Promise<void> {
    const back = this.takeBack();
    const spilled = back.length > 0 ? this.overflow.push(back) : undefined;
    await this.close();
    try {
      await spilled;
      await this.saveMemory();
    } finally {
      await this.overflow.dispose();
    }
  }

  private async saveMemory(): Promise<void> {
    const records = this.mem.unacked();
    if (records.length === 0) return;
    const sizes = records.map(encodedSize);
    const capacity = sizes.reduce((n, s) => n + RECORD_HEADER + s, 0);
    const tmp = `${new QueueLayout(this.dir).memory}.tmp`;
    const ring = await RingFile.create(await openFsQueueFile(tmp, true), { capacity });
    if (!ring.appendWith(sizes, (i, buf, at) => encodeInto(records[i]!, buf, at)))
      throw new Error('memory records do not fit their own file');
    await ring.close(); // syncs
    await rename(tmp, new QueueLayout(this.dir).memory);
    await fsyncDir(this.dir);
    this.options.logger.info(
      { queue: this.name, records: records.length },
      'saved the records held in memory for the next start',
    );
  }
}
