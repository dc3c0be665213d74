import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rename, rm } from 'node:fs/promises';
import { fsyncDir, writeFileAtomic } from '../../util/fs.js';
import path from 'node:path';
import type { Logger } from '../../log.js';
import { countDrop, type LogRecord, type SourceStats } from '../../record.js';
import { noCorruption, type DestinationQueue, type FullPolicy, type QueueStats } from '../types.js';
import { DirectoryLock } from './directory-lock.js';
import { openFsQueueFile, type QueueFile } from './queue-file.js';
import { encodedSize, encodeInto, RecordDecoder } from './record-codec.js';
import { DATA_START, QueueCorruptError, readNewestHeader, RECORD_HEADER, RingFile, scanForSalvage } from './ring-file.js';

export type SyncMode = 'always' | 'interval' | 'never';

export interface ReliableQueueOptions {
  /** Size of the queue file, header included. */
  maxSize: number;
  /** Most bytes of records kept in memory ahead of the destination (the read cache; see READ_AHEAD_MAX). */
  memBufSize: number;
  sync: SyncMode;
  syncInterval: number;
  full: FullPolicy;
  /** Recorded in `queue.json` for the offline tools; `normal` when this is a normal queue's file part. */
  mode?: 'normal' | 'reliable';
  /** Write the whole file when creating it (a full disk shows at once). */
  prealloc?: boolean;
  logger: Logger;
  statsOf: (source: string) => SourceStats | undefined;
  /** Told of every failed write or fsync of the queue file, and of every sync that works (the load-shedding gate). */
  disk?: { failed(err: Error, what: string): void; ok(): void };
  /** Opens the queue's files (the ring, and the fresh file of a resize or salvage): the real file system unless a test puts a faulty disk under the queue. */
  openFile?: (path: string, create: boolean) => Promise<QueueFile>;
}

export const QUEUE_FILE = 'queue.sq';
/** What the queue directory belongs to, for `sluice queue ls|info` and orphan reports. */
export const META_FILE = 'queue.json';

export interface QueueMeta {
  destination: string;
  mode: 'normal' | 'reliable';
  max_size: number;
  /** Names the sequence numbers of this ring file; made anew with the file (rotation, resize). */
  ring_id?: string;
}

/**
 * The read cache holds at most this much, even with a larger mem_buf_size. Records read ahead live
 * long enough to reach V8's old generation: with 64 MiB (about 240k records of 200 bytes) the sender
 * spent 2.9-3.0 s of main-thread CPU per million records, with 4 MiB 2.4-2.6 s. Four 1 MiB reads
 * still cover several RELP windows or sluice batches.
 */
const READ_AHEAD_MAX = 4 << 20;

/**
 * Appended bytes not yet written to the file, above which the queue reports itself congested and
 * producers that can wait do (see `congested`). Without it, a sender faster than the disk filled
 * memory: 1M records from loggen into a reliable queue peaked at 760 MB of RSS.
 */
export const WRITE_BEHIND_MAX = 4 << 20;

/**
 * Producers that cannot wait (UDP) go on while the queue is congested, until this many times the
 * write-behind waits for the disk: then they drop, counted as `disk_behind`, instead of letting a
 * stalled disk fill memory.
 */
const OVERLOAD_FACTOR = 16;

/** Below this many free bytes the queue reports itself full, so that a batch still fits. */
const FULL_MARGIN = 256 * 1024;

interface Waiter {
  resolve: () => void;
  reject: (err: Error) => void;
}

/**
 * The reliable mode: every record is written to the ring file and fsynced (group commit) before
 * its producer is told it is committed; a record leaves the file only when its destination
 * acknowledges it. A crash loses nothing that was committed.
 */
export class ReliableQueue implements DestinationQueue {
  readonly fullPolicy: FullPolicy;
  /** See DestinationQueue.epoch. */
  epoch = 0;
  readonly file: string;
  private ring!: RingFile;
  private readonly decoder: RecordDecoder;
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
  private loadEpoch = 0;
  private commitWaiters: Waiter[] = [];
  private syncing: Promise<void> | null = null;
  private syncAgain = false;
  private syncTimer: NodeJS.Timeout | null = null;
  /** A syncSoon is scheduled. */
  private syncScheduled = false;
  private recordWaiters: (() => void)[] = [];
  private spaceWaiters: (() => void)[] = [];
  private pushed = 0;
  private acked = 0;
  private readonly dropped: Record<string, number> = {};
  private closed = false;
  private disposed = false;
  private lock: DirectoryLock | null = null;
  /** Set while the rest of a batch waits for room (`full: block`): later pushes wait behind it. */
  private waitingRest: Promise<void> | null = null;
  /** Set while a corrupt file is rotated or the oldest records are dropped: pushes wait their turn. */
  private rotation: Promise<unknown> | null = null;
  /** Corruption handled since start: files rotated, records salvaged and lost. */
  readonly corruption = noCorruption();
  private stalls = 0;
  /** The ring's size: `max_size` less the header, unless an existing file could not be resized. */
  private ringCapacity: number;
  private readonly openFile: (path: string, create: boolean) => Promise<QueueFile>;
  /** Bytes of records read ahead of the destination at most. */
  private readonly readAhead: number;
  /** Appended bytes waiting for their write, above which the queue is congested. */
  private readonly writeBehind: number;

  private constructor(
    readonly name: string,
    readonly dir: string,
    private readonly options: ReliableQueueOptions,
  ) {
    this.fullPolicy = options.full;
    this.openFile = options.openFile ?? openFsQueueFile;
    this.file = path.join(dir, QUEUE_FILE);
    this.decoder = new RecordDecoder(options.statsOf);
    this.ringCapacity = options.maxSize - DATA_START;
    this.readAhead = Math.min(options.memBufSize, READ_AHEAD_MAX);
    this.writeBehind = Math.min(options.memBufSize, WRITE_BEHIND_MAX);
  }

  /** Records in the file not yet acknowledged (handed out or not, synced or not). */
  get size(): number {
    return this.ring.tailSeq - this.ring.headSeq;
  }

  get capacity(): number {
    return this.ringCapacity;
  }

  /** Opens or creates the queue in `dir`; a damaged file is rotated and salvaged, never fatal. */
  static async open(name: string, dir: string, options: ReliableQueueOptions): Promise<ReliableQueue> {
    const q = new ReliableQueue(name, dir, options);
    await mkdir(dir, { recursive: true });
    q.lock = await DirectoryLock.acquire(dir);
    try {
      await q.openRing();
      await q.writeMeta();
    } catch (err) {
      await q.lock.release();
      throw err;
    }
    if (options.sync === 'interval' || options.sync === 'never') {
      q.syncTimer = setInterval(() => void q.syncNow().catch(() => undefined), Math.max(1, options.syncInterval));
      q.syncTimer.unref();
    }
    return q;
  }

  /** See DestinationQueue.durableId: the ring file's own id, from its header. */
  get durableId(): string {
    return this.ring.ringId;
  }

  /** The ring id that queue.json names: what a format 1 file, whose header has none, goes by. */
  private async metaRingId(): Promise<string> {
    try {
      return (JSON.parse(await readFile(path.join(this.dir, META_FILE), 'utf8')) as QueueMeta).ring_id ?? '';
    } catch {
      return '';
    }
  }

  /** queue.json, for the offline tools; the ring id in it is a copy of the header's. */
  private async writeMeta(): Promise<void> {
    const file = path.join(this.dir, META_FILE);
    const old = await readFile(file, 'utf8').catch(() => '');
    const meta: QueueMeta = { destination: this.name, mode: this.options.mode ?? 'reliable', max_size: this.options.maxSize, ring_id: this.durableId };
    const text = `${JSON.stringify(meta)}\n`;
    if (old !== text) await writeFileAtomic(file, text);
  }

  private async openRing(): Promise<void> {
    const fsync = this.options.sync !== 'never';
    let file;
    try {
      file = await this.openFile(this.file, false);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      this.ring = await RingFile.create(await this.openFile(this.file, true), { capacity: this.capacity, fsync, prealloc: this.options.prealloc === true, ringId: randomUUID() });
      return this.resetReader();
    }
    const size = await file.size();
    if (size !== DATA_START + this.capacity && size > DATA_START) file = await this.resize(file, size);
    try {
      const { ring, report } = await RingFile.open(file, { capacity: this.capacity, fsync, ringId: (await this.metaRingId()) || randomUUID() });
      this.ring = ring;
      if (report.tornRecords > 0) {
        this.corruption.tornRecords += report.tornRecords;
        this.options.logger.warn(
          { queue: this.name, torn_records: report.tornRecords, torn_bytes: report.tornBytes },
          'discarded a torn write at the end of the queue (a crash during an unsynced write; nothing committed was lost)',
        );
      }
      if (report.recoveredRecords > 0) this.options.logger.info({ queue: this.name, records: report.recoveredRecords }, 'recovered records synced after the last header');
    } catch (err) {
      if (!(err instanceof QueueCorruptError)) {
        await file.close();
        throw err;
      }
      await this.rotateAndSalvage(file, err);
    }
    this.resetReader();
  }

  /**
   * `max_size` changed since the file was made: copy the backlog into a file of the new size, or,
   * when it would not fit, keep the old size for now. A file that cannot be read as a ring is left
   * to the corruption handling.
   */
  private async resize(file: QueueFile, size: number): Promise<QueueFile> {
    const oldCapacity = size - DATA_START;
    let old: RingFile;
    try {
      old = (await RingFile.open(file, { capacity: oldCapacity, readOnly: true })).ring;
    } catch (err) {
      if (err instanceof QueueCorruptError) return file;
      throw err;
    }
    const backlog = old.tail - old.head;
    if (backlog > this.capacity - Math.min(FULL_MARGIN, this.capacity / 4)) {
      this.ringCapacity = oldCapacity;
      this.options.logger.warn(
        { queue: this.name, file_bytes: size, max_size: this.options.maxSize, backlog_bytes: backlog },
        'max_size is smaller than the backlog in the queue file: keeping the file at its size until it drains and sluice restarts',
      );
      return file;
    }
    const tmp = `${this.file}.resize`;
    // A new file: its sequence numbers start again, so it gets a new id.
    const ring = await RingFile.create(await this.openFile(tmp, true), { capacity: this.capacity, prealloc: this.options.prealloc === true, ringId: randomUUID() });
    let copied = 0;
    try {
      for (let pos = old.head, seq = old.headSeq; pos < old.tail; ) {
        const recs = await old.read(pos, seq, 4 << 20);
        if (recs.length === 0) break;
        if (!ring.append(recs.map((r) => r.payload))) throw new Error('resized queue file is too small for the backlog');
        copied += recs.length;
        pos = recs[recs.length - 1]!.end;
        seq = recs[recs.length - 1]!.seq + 1;
      }
    } catch (err) {
      await ring.close().catch(() => undefined);
      await rm(tmp, { force: true });
      if (err instanceof QueueCorruptError) return file; // damaged: rotated and salvaged by the caller
      throw err;
    }
    await ring.close();
    await file.close();
    await rename(tmp, this.file);
    await fsyncDir(this.dir);
    this.options.logger.info({ queue: this.name, from_bytes: size, to_bytes: this.options.maxSize, records: copied }, 'max_size changed: copied the backlog into a queue file of the new size');
    return this.openFile(this.file, false);
  }

  /**
   * Copies every valid unacknowledged record of the damaged file into a fresh file, streaming (a
   * full 1 GiB file is not held in memory), then renames the damaged one to
   * `<file>.corrupted-<UTC time>` and puts the fresh one in its place, and logs what was lost at
   * error level. The fresh file has a new ring id in its own header: its sequence numbers start
   * again, and no crash can pair it with the old id. A crash before the renames leaves the damaged
   * file where it was, to salvage again.
   *
   * The loss is measured against the newest readable header of the damaged file: the records and
   * bytes it says were unacknowledged (from `from`, or its own head) less those salvaged.
   */
  private async rotateAndSalvage(file: QueueFile, why: QueueCorruptError, from?: { pos: number; seq: number }): Promise<void> {
    const dataBytes = Math.max(0, (await file.size().catch(() => 0)) - DATA_START);
    const said = await readNewestHeader(file);
    const minSeq = from?.seq ?? said?.headSeq ?? 0;
    const live = said ? { records: Math.max(0, said.tailSeq - minSeq), bytes: Math.max(0, said.tail - (from?.pos ?? said.head)) } : null;
    const fresh = `${this.file}.salvage`;
    const ring = await RingFile.create(await this.openFile(fresh, true), { capacity: this.capacity, fsync: this.options.sync !== 'never', ringId: randomUUID() });
    let kept = 0;
    let found = 0;
    let unreadableBytes = 0;
    let liveKept = 0;
    let liveKeptBytes = 0;
    try {
      const scan = await scanForSalvage(file, dataBytes, minSeq);
      unreadableBytes = scan.unreadableBytes;
      found = scan.records;
      for await (const batch of scan.batches()) {
        const payloads = batch.map((r) => r.payload);
        const fit = ring.append(payloads) ? batch : batch.filter((r) => ring.append([r.payload]) !== null);
        kept += fit.length;
        for (const r of fit) {
          if (said && r.seq < said.tailSeq) {
            liveKept++;
            liveKeptBytes += RECORD_HEADER + r.payload.length;
          }
        }
        // Bounded memory: let the writes catch up now and then.
        if (ring.unwrittenBytes > WRITE_BEHIND_MAX) await ring.settled();
      }
    } catch (err) {
      // The damaged file could not be read through: keep what was copied, log below what was not.
      this.options.logger.error({ queue: this.name, err: (err as Error).message }, 'reading the damaged queue file failed part way');
    }
    await ring.sync();
    await file.close();
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const corrupted = `${this.file}.corrupted-${stamp}`;
    await rename(this.file, corrupted);
    await rename(fresh, this.file);
    await fsyncDir(this.dir);
    // One step: from here on records, positions and the id are the fresh file's.
    this.ring = ring;
    this.resetReader(); // positions handed out so far belong to the old file: those records are sent again
    this.epoch++;
    if (this.lock) await this.writeMeta().catch(() => undefined);
    const lostRecords = live ? Math.max(0, live.records - liveKept) : null;
    const lostBytes = live ? (lostRecords === 0 ? 0 : Math.max(0, live.bytes - liveKeptBytes)) : unreadableBytes;
    this.corruption.rotated++;
    this.corruption.salvaged += kept;
    this.corruption.lostRecords += lostRecords ?? 0;
    this.corruption.lostBytes += lostBytes;
    this.options.logger.error(
      {
        queue: this.name,
        reason: why.reason,
        moved_to: corrupted,
        records_salvaged: kept,
        records_not_salvaged: found - kept,
        // Unknown only when neither header slot can be read: then nothing says what the file held.
        records_lost: lostRecords ?? 'unknown (no readable header)',
        bytes_lost: lostBytes,
        unreadable_bytes: unreadableBytes,
      },
      'queue file is corrupt: rotated it and salvaged every valid record into a fresh file; what could not be salvaged is lost',
    );
  }

  private resetReader(): void {
    this.loadEpoch++;
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
    this.loadPos = this.ring.head;
    this.loadSeq = this.ring.headSeq;
  }

  isFull(): boolean {
    return this.ring.freeBytes() < Math.min(FULL_MARGIN, this.capacity / 4);
  }

  push(records: LogRecord[], awaited = false): Promise<void> | undefined {
    if (records.length === 0 || this.closed) return undefined;
    // Appends to the file being rotated would be lost with it: hold them until the fresh one is ready.
    if (this.rotation) return this.rotation.then(() => this.push(records, awaited));
    // Behind the rest of a batch still waiting for room: records of one stream stay in order.
    if (this.waitingRest) return this.waitingRest.then(() => this.push(records, awaited));
    if (awaited) this.syncSoon();
    const failed = this.ring.failed;
    if (failed) {
      // The file cannot be written right now (its sync will report it and recover): refuse. The
      // producer hears it; one that cannot send again has the router count the loss.
      return Promise.reject(failed);
    }
    const sizes = records.map(encodedSize);
    // One write for the batch; near the end of the room (or for a batch larger than one lap), one record at a time.
    let written = this.ring.appendWith(sizes, (i, buf, at) => encodeInto(records[i]!, buf, at)) ? records.length : 0;
    while (written < records.length) {
      const r = records[written]!;
      if (!this.ring.appendWith([sizes[written]!], (_, buf, at) => encodeInto(r, buf, at))) break;
      written++;
    }
    this.pushed += written;
    if (written < records.length) {
      const rest = records.slice(written);
      if (this.fullPolicy === 'block') {
        // The caller saw room but the batch did not fit: wait for space and append the rest. Every
        // push made meanwhile waits behind it: appended first, a later batch of the same file
        // would reach the destination before these lines, and an exactly-once receiver, which
        // keeps the highest position of each stream, would then drop them as already written.
        //
        // When the part written fails its commit, the rest is not appended (the producer hears of
        // the whole batch and sends it again), and neither is any push waiting behind it: appended
        // now, a later batch of that file would reach the receiver before the resent one, which
        // would then be dropped as already written.
        const done = this.commitPromise(written > 0);
        done?.catch(() => undefined); // heard below, once there is room; not unhandled meanwhile
        let release!: () => void;
        let refuse!: (err: Error) => void;
        const gate = new Promise<void>((resolve, reject) => {
          release = resolve;
          refuse = reject;
        });
        gate.catch(() => undefined);
        this.waitingRest = gate;
        return (async () => {
          let c: Promise<void> | undefined;
          try {
            await this.waitForSpace();
            await done;
            this.waitingRest = null;
            c = this.push(rest, awaited); // appended now (or waiting again, behind a gate of its own)
            release();
          } catch (err) {
            refuse(err as Error);
            throw err;
          } finally {
            if (this.waitingRest === gate) this.waitingRest = null;
          }
          await c;
        })();
      }
      if (this.fullPolicy === 'drop_oldest' && this.inFlightEnds.length === this.inFlightHead) {
        const done = this.commitPromise(written > 0);
        done?.catch(() => undefined); // heard once the oldest are dropped; not unhandled meanwhile
        const gate = this.dropOldest(sizes.slice(written)).finally(() => {
          if (this.rotation === gate) this.rotation = null;
        });
        this.rotation = gate;
        return gate.then(async (freed) => {
          await done;
          if (freed) await this.push(rest, awaited);
          else this.dropNewest(rest);
        });
      }
      // drop_newest; also drop_oldest while the destination has the oldest records in flight.
      this.dropNewest(rest);
    }
    if (written === 0) return undefined;
    return this.commitPromise(true);
  }

  private dropNewest(rest: LogRecord[]): void {
    this.countDrop('queue_full', rest.length);
    for (const r of rest) countDrop(r.origin.stats.dropped, 'queue_full');
  }

  /**
   * drop_oldest: frees room for records of `sizes` by acknowledging the oldest records unsent, and
   * makes that durable (the space is reusable only then). False when nothing could be freed.
   */
  private async dropOldest(sizes: number[]): Promise<boolean> {
    // Room for the batch, plus one record lost to padding at the end of the lap.
    const need = sizes.reduce((n, x) => n + RECORD_HEADER + x, 0) + RECORD_HEADER + Math.max(...sizes);
    const want = Math.min(need - this.ring.freeBytes(), this.ring.tail - this.ring.head);
    if (want <= 0) return true;
    let end = this.ring.head;
    let seq = this.ring.headSeq;
    let dropped = 0;
    while (end - this.ring.head < want && end < this.ring.syncedTail) {
      const recs = await this.ring.read(end, seq, Math.max(64 * 1024, want - (end - this.ring.head)));
      if (recs.length === 0) break;
      for (const r of recs) {
        end = r.end;
        seq = r.seq + 1;
        dropped++;
        const origin = this.decoder.decode(r.payload).origin;
        countDrop(origin.stats.dropped, 'queue_full');
        if (end - this.ring.head >= want) break;
      }
    }
    if (dropped === 0) return false;
    this.ring.setHead(end, seq);
    this.countDrop('queue_full', dropped);
    this.resetReader(); // the read cache may hold dropped records
    await this.syncNow();
    this.startLoading();
    return true;
  }

  /** A promise for the sync that will cover what was just appended. */
  private commitPromise(appended: boolean): Promise<void> | undefined {
    if (!appended) return undefined;
    if (this.options.sync === 'never') {
      // Readable once "synced" (no fsync in this mode): let the reader see it at the next tick.
      this.scheduleSync(0);
      return undefined;
    }
    const p = new Promise<void>((resolve, reject) => this.commitWaiters.push({ resolve, reject }));
    if (this.options.sync === 'always') this.scheduleSync(0);
    else this.syncTimer?.ref(); // a pending commit keeps the process alive until its sync
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
  private syncSoon(): void {
    if (this.options.sync !== 'interval') return;
    if (this.syncing) {
      this.syncAgain = true;
      return;
    }
    if (this.syncScheduled) return;
    this.syncScheduled = true;
    setImmediate(() => {
      this.syncScheduled = false;
      void this.syncNow().catch(() => undefined);
    });
  }

  private scheduleSync(delay: number): void {
    if (delay === 0) void this.syncNow().catch(() => undefined);
  }

  /** Group commit: one sync at a time; appends made while it runs are covered by the next. */
  syncNow(): Promise<void> {
    if (this.syncing) {
      this.syncAgain = true;
      return this.syncing;
    }
    this.syncing = (async () => {
      do {
        this.syncAgain = false;
        const waiters = this.commitWaiters;
        this.commitWaiters = [];
        try {
          // Committed once the records are on disk: the header that follows need not be waited for.
          const wrote = await this.ring.sync(() => {
            for (const w of waiters) w.resolve();
          });
          for (const w of waiters) w.resolve();
          if (wrote) this.options.disk?.ok();
        } catch (err) {
          // Nothing of this group is committed: its producers hear so (a file source reads those
          // lines again), the unsynced appends are forgotten, and the next batch writes afresh.
          for (const w of this.commitWaiters.splice(0)) waiters.push(w);
          for (const w of waiters) w.reject(err as Error);
          const lost = this.ring.tailSeq - this.ring.syncedTailSeq;
          await this.ring.recover();
          // A reader that followed the empty ring to its next lap follows it back (nothing was read there).
          if (this.loadPos > this.ring.tail) this.resetReader();
          // Each producer hears of its failed commit: one that can send again (files, RELP, sluice)
          // does, and the router counts the loss for those that cannot (TCP, UDP). With `sync:
          // never` nobody waits for a commit, so the loss is counted here.
          if (lost > 0 && this.options.sync === 'never') this.countDrop('write_failed', lost);
          this.options.logger.error({ queue: this.name, code: (err as NodeJS.ErrnoException).code, err: (err as Error).message }, 'queue write or fsync failed; the batches not yet committed were refused');
          this.options.disk?.failed(err as Error, `queue ${this.name}`);
          throw err;
        }
        this.wake();
        // `sync: interval`: commits that came during the sync wait for the interval, unless a
        // producer waits for them (syncSoon asked again).
      } while (this.syncAgain || (this.options.sync !== 'interval' && this.commitWaiters.length > 0));
    })().finally(() => {
      this.syncing = null;
      if (this.commitWaiters.length === 0) this.syncTimer?.unref();
      // A failed sync ends its loop early: commits asked for meanwhile (after its recovery) still get theirs.
      else if (this.syncAgain || this.options.sync === 'always') void this.syncNow().catch(() => undefined);
    });
    return this.syncing;
  }

  private wake(): void {
    if (this.loadPos < this.ring.syncedTail) this.startLoading();
    if (this.spaceWaiters.length > 0 && !this.isFull()) {
      const w = this.spaceWaiters;
      this.spaceWaiters = [];
      for (const f of w) f();
    }
  }

  private startLoading(): void {
    if (this.loading || this.disposed) return;
    const epoch = this.loadEpoch;
    this.loading = this.load(epoch)
      .catch(async (err: unknown) => {
        if (epoch !== this.loadEpoch) return;
        if (err instanceof QueueCorruptError) {
          this.rotation = this.handleRuntimeCorruption(err)
            .catch((e: unknown) => this.options.logger.error({ queue: this.name, err: (e as Error).message }, 'rotating the corrupt queue file failed'))
            .finally(() => {
              this.rotation = null;
            });
          await this.rotation;
        } else {
          this.options.logger.error({ queue: this.name, err: (err as Error).message }, 'reading the queue file failed; will retry');
        }
      })
      .finally(() => {
        if (epoch === this.loadEpoch) this.loading = null;
      });
  }

  private async load(epoch: number): Promise<void> {
    // Only an empty ring's move to the next lap puts its head past what was loaded (see restartLap).
    if (this.loadPos < this.ring.head) {
      this.loadPos = this.ring.head;
      this.loadSeq = this.ring.headSeq;
    }
    while (epoch === this.loadEpoch && this.readyBytes < this.readAhead && this.loadPos < this.ring.syncedTail) {
      const recs = await this.ring.read(this.loadPos, this.loadSeq, Math.min(1 << 20, this.readAhead));
      if (epoch !== this.loadEpoch || recs.length === 0) return;
      for (const r of recs) {
        const rec = this.decoder.decode(r.payload);
        rec.queueSeq = r.seq;
        this.ready.push(rec);
        this.readyEnds.push(r.end);
        this.readyBytes += this.ready[this.ready.length - 1]!.raw.length + RECORD_HEADER;
      }
      const last = recs[recs.length - 1]!;
      this.loadPos = last.end;
      this.loadSeq = last.seq + 1;
      const w = this.recordWaiters;
      this.recordWaiters = [];
      for (const f of w) f();
    }
  }

  /** A record in the live region failed its checks while running: rotate, salvage what is unacknowledged, resend. */
  private async handleRuntimeCorruption(err: QueueCorruptError): Promise<void> {
    await this.syncNow().catch(() => undefined);
    const old = this.ring;
    const from = { pos: old.head, seq: old.headSeq };
    await old.settled();
    const file = await this.openFile(this.file, false);
    await this.rotateAndSalvage(file, err, from);
    await (old as unknown as { file: { close(): Promise<void> } }).file.close().catch(() => undefined);
    this.wake();
    const w = this.recordWaiters;
    this.recordWaiters = [];
    for (const f of w) f();
  }

  waitForSpace(): Promise<void> {
    if (!this.isFull() || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.spaceWaiters.push(resolve));
  }

  congested(): boolean {
    return this.ring.unwrittenBytes > this.writeBehind && !this.closed;
  }

  overloaded(): boolean {
    return this.ring.unwrittenBytes > this.writeBehind * OVERLOAD_FACTOR && !this.closed;
  }

  async waitUncongested(): Promise<void> {
    // Each round waits for every write queued so far; a producer that waits adds none meanwhile.
    while (this.congested()) await this.ring.settled();
  }

  countDrop(reason: string, n: number): void {
    countDrop(this.dropped, reason, n);
  }

  countStall(): void {
    this.stalls++;
  }

  /** Receive time of the oldest unacknowledged record, when it is in memory. */
  private oldestKnown(): number | null {
    if (this.inFlightEnds.length > this.inFlightHead) return this.inFlightTimes[this.inFlightHead]!;
    // Nothing in flight: everything before the first loaded record is acknowledged.
    if (this.ready.length > this.readyHead) return this.ready[this.readyHead]!.receivedAt;
    return null;
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
    if (this.readyBytes < this.readAhead / 2) this.startLoading();
    return out;
  }

  ack(count: number): void {
    const available = this.inFlightEnds.length - this.inFlightHead;
    const n = Math.min(count, available);
    if (n === 0) return;
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
    this.ring.setHead(end, this.ring.headSeq + n);
    this.acked += n;
    // The freed space is reusable once a header naming the new head is on disk.
    if (this.spaceWaiters.length > 0 || this.options.sync === 'always') void this.syncNow().catch(() => undefined);
  }

  rewind(): void {
    this.resetReader();
    this.startLoading();
  }

  waitForRecords(): Promise<void> {
    if (this.ready.length > this.readyHead || this.closed) return Promise.resolve();
    this.startLoading();
    return new Promise((resolve) => this.recordWaiters.push(resolve));
  }

  stats(): QueueStats {
    const records = this.ring.tailSeq - this.ring.headSeq;
    const diskBytes = this.ring.tail - this.ring.head;
    return {
      mode: 'reliable',
      records,
      // Message bytes are not tracked per record on disk; frames add RECORD_HEADER plus the origin each.
      bytes: diskBytes,
      memoryRecords: 0,
      memoryBytes: this.readyBytes + this.inFlightBytes + this.ring.unwrittenBytes,
      diskBytes,
      inFlight: this.inFlightEnds.length - this.inFlightHead,
      capacityRecords: Number.POSITIVE_INFINITY,
      capacityBytes: this.capacity,
      pushed: this.pushed,
      acked: this.acked,
      dropped: { ...this.dropped },
      stalls: this.stalls,
      oldestReceivedAt: records > 0 ? this.oldestKnown() : null,
      corruption: { ...this.corruption },
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.syncTimer) clearInterval(this.syncTimer);
    for (const f of this.recordWaiters.splice(0)) f();
    for (const f of this.spaceWaiters.splice(0)) f();
  }

  /** Writes the acknowledged head and closes the file; call after the destination stopped. */
  async dispose(): Promise<void> {
    await this.close();
    this.disposed = true;
    this.loadEpoch++;
    await this.loading;
    await this.syncNow().catch(() => undefined);
    try {
      await this.ring.close();
    } finally {
      // Even when the disk refuses the last header (read-only, failing), this process lets go.
      await this.lock?.release();
    }
  }
}
