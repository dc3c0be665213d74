import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import type { Logger } from '../../log.js';
import { encodedSize, encodeInto, RecordDecoder } from '../../protocol/record-codec.js';
import type { LogRecord } from '../../record.js';
import { countDrop, type SourceCounters } from '../../stats.js';
import { QueueLayout } from '../layout.js';
import { noCorruption, type DestinationQueue, type FullPolicy, type QueueStats } from '../types.js';
import { GroupCommit, type SyncMode } from './group-commit.js';
import { QueueDirectory } from './queue-directory.js';
import { openFsQueueFile, type QueueFile } from './queue-file.js';
import { ReadCache } from './read-cache.js';
import { DATA_START, QueueCorruptError, RECORD_HEADER, RingFile, WRITE_BEHIND_MAX } from './ring-file.js';
import { copyBacklog, salvageInto } from './salvage.js';

export type { SyncMode } from './group-commit.js';

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
  /** Where drops of records are counted under their sources' names (the agent's counters). */
  counters: SourceCounters;
  /** Told of every failed write or fsync of the queue file, and of every sync that works (the load-shedding gate). */
  diskHealth?: { failed(err: Error, what: string): void; ok(): void };
  /**
   * Opens the queue's files (the ring, and the fresh file of a resize or salvage): the real file system unless a test
   * puts a faulty disk under the queue.
   */
  openFile?: (path: string, create: boolean) => Promise<QueueFile>;
}

/**
 * The read cache holds at most this much, even with a larger mem_buf_size. Records read ahead live
 * long enough to reach V8's old generation: with 64 MiB (about 240k records of 200 bytes) the sender
 * spent 2.9-3.0 s of main-thread CPU per million records, with 4 MiB 2.4-2.6 s. Four 1 MiB reads
 * still cover several RELP windows or sluice batches.
 */
const READ_AHEAD_MAX = 4 << 20;

/**
 * Producers that cannot wait (UDP) go on while the queue is congested, until this many times the
 * write-behind waits for the disk: then they drop, counted as `disk_behind`, instead of letting a
 * stalled disk fill memory.
 */
const OVERLOAD_FACTOR = 16;

/** Below this many free bytes the queue reports itself full, so that a batch still fits. */
const FULL_MARGIN = 256 * 1024;

/**
 * The reliable mode: every record is written to the ring file and fsynced (group commit) before
 * its producer is told it is committed; a record leaves the file only when its destination
 * acknowledges it. A crash loses nothing that was committed.
 *
 * Composed of parts that each hold one idea: the locked directory (QueueDirectory), the ring
 * (RingFile), the group commit (GroupCommit), the records between the file and the destination
 * (ReadCache) and the salvage of a damaged file (salvage.ts). What stays here is how they meet:
 * pushes and the full policies, acknowledgements, rotation, and the figures.
 */
export class ReliableQueue implements DestinationQueue {
  readonly fullPolicy: FullPolicy;
  /** See DestinationQueue.epoch. */
  epoch = 0;
  readonly file: string;
  private ring!: RingFile;
  private directory!: QueueDirectory;
  private readonly commits: GroupCommit;
  private readonly cache: ReadCache;
  private readonly decoder: RecordDecoder;
  private readonly layout: QueueLayout;
  private readonly openFile: (path: string, create: boolean) => Promise<QueueFile>;
  private spaceWaiters: (() => void)[] = [];
  private pushed = 0;
  private acked = 0;
  private readonly dropped: Record<string, number> = {};
  private closed = false;
  /** Set while the rest of a batch waits for room (`full: block`): later pushes wait behind it. */
  private waitingRest: Promise<unknown> | null = null;
  /** Set while a corrupt file is rotated: pushes wait for the fresh file. */
  private rotating: Promise<void> | null = null;
  /** Set while the oldest records are dropped for room (`full: drop_oldest`): pushes wait their turn. */
  private droppingOldest: Promise<unknown> | null = null;
  /** Pushes held back while one of the three above is set, in the order they came (see push). */
  private held: { records: LogRecord[]; awaited: boolean; resolve: () => void; reject: (err: Error) => void }[] = [];
  /** Corruption handled since start: files rotated, records salvaged and lost. */
  readonly corruption = noCorruption();
  private stalls = 0;
  /** The ring's size: `max_size` less the header, unless an existing file could not be resized. */
  private ringCapacity: number;
  /** Appended bytes waiting for their write, above which the queue is congested. */
  private readonly writeBehind: number;

  private constructor(
    readonly name: string,
    readonly dir: string,
    private readonly options: ReliableQueueOptions,
  ) {
    this.fullPolicy = options.full;
    this.openFile = options.openFile ?? openFsQueueFile;
    this.layout = new QueueLayout(dir);
    this.file = this.layout.ring;
    this.decoder = new RecordDecoder(options.counters);
    this.ringCapacity = options.maxSize - DATA_START;
    this.writeBehind = Math.min(options.memBufSize, WRITE_BEHIND_MAX);
    this.cache = new ReadCache({
      ring: () => this.ring,
      decode: (payload) => this.decoder.decode(payload),
      readAhead: Math.min(options.memBufSize, READ_AHEAD_MAX),
      corrupt: (err) => this.rotateWhileRunning(err),
      readFailed: (err) =>
        this.options.logger.error({ queue: this.name, err: err.message }, 'reading the queue file failed; will retry'),
    });
    this.commits = new GroupCommit(options.sync, options.syncInterval, {
      ring: () => this.ring,
      synced: (wrote) => {
        if (wrote) this.options.diskHealth?.ok();
        this.wake();
        // Space still wanted, and a header that would free some is not durable yet: sync it.
        if (this.spaceWaiters.length > 0) this.syncPendingHeader();
      },
      // While running, nothing waits for space and the ring is at most half full: see RingFile.sync.
      lazyHeader: () =>
        !this.closed &&
        this.spaceWaiters.length === 0 &&
        this.droppingOldest === null &&
        this.ring.freeBytes() >= this.ring.capacity / 2,
      failed: (err, lost) => {
        this.cache.followRing();
        // Each producer hears of its failed commit: one that can send again (files, RELP, sluice)
        // does, and the router counts the loss for those that cannot (TCP, UDP). With `sync:
        // never` nobody waits for a commit, so the loss is counted here.
        if (lost > 0 && this.options.sync === 'never') this.countDrop('write_failed', lost);
        this.options.logger.error(
          { queue: this.name, code: (err as NodeJS.ErrnoException).code, err: err.message },
          'queue write or fsync failed; the batches not yet committed were refused',
        );
        this.options.diskHealth?.failed(err, `queue ${this.name}`);
      },
    });
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
    q.directory = await QueueDirectory.open(dir);
    try {
      await q.openRing();
      await q.writeMeta();
    } catch (err) {
      q.commits.stop();
      await q.directory.release();
      throw err;
    }
    return q;
  }

  /** See DestinationQueue.durableId: the ring file's own id, from its header. */
  get durableId(): string {
    return this.ring.ringId;
  }

  /** queue.json, for the offline tools; the ring id in it is a copy of the header's. */
  private writeMeta(): Promise<void> {
    return this.directory.writeMeta({
      destination: this.name,
      mode: this.options.mode ?? 'reliable',
      max_size: this.options.maxSize,
      ring_id: this.durableId,
    });
  }

  private get fsync(): boolean {
    return this.options.sync !== 'never';
  }

  private async openRing(): Promise<void> {
    let file: QueueFile;
    try {
      file = await this.openFile(this.file, false);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      // Made under another name and renamed into place once its header is on disk: a start that
      // fails part way (a full disk) leaves no ring file without a header, which the next start
      // would take for a damaged one whose loss nothing can say.
      const fresh = await this.openFile(this.layout.creating, true);
      try {
        this.ring = await RingFile.create(fresh, {
          capacity: this.capacity,
          fsync: this.fsync,
          prealloc: this.options.prealloc === true,
          ringId: randomUUID(),
        });
        await this.directory.replaceRing(this.layout.creating);
      } catch (e) {
        await fresh.close().catch(() => undefined);
        await rm(this.layout.creating, { force: true }).catch(() => undefined);
        throw e;
      }
      return this.cache.reset();
    }
    const size = await file.size();
    if (size !== DATA_START + this.capacity && size > DATA_START) file = await this.resize(file, size);
    try {
      const { ring, report } = await RingFile.open(file, {
        capacity: this.capacity,
        fsync: this.fsync,
        ringId: (await this.directory.ringId()) || randomUUID(),
      });
      this.ring = ring;
      if (report.tornRecords > 0) {
        this.corruption.tornRecords += report.tornRecords;
        this.options.logger.warn(
          { queue: this.name, torn_records: report.tornRecords, torn_bytes: report.tornBytes },
          'discarded a torn write at the end of the queue (a crash during an unsynced write; nothing committed was ' +
            'lost)',
        );
      }
      if (report.recoveredRecords > 0)
        this.options.logger.info(
          { queue: this.name, records: report.recoveredRecords },
          'recovered records synced after the last header',
        );
    } catch (err) {
      if (!(err instanceof QueueCorruptError)) {
        await file.close();
        throw err;
      }
      await this.rotateAndSalvage(file, err);
    }
    this.cache.reset();
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
        'max_size is smaller than the backlog in the queue file: keeping the file at its size until it drains and ' +
          'sluice restarts',
      );
      return file;
    }
    // A new file: its sequence numbers start again, so it gets a new id.
    let copied: number;
    try {
      copied = await copyBacklog(old, this.layout.resizing, {
        openFile: this.openFile,
        capacity: this.capacity,
        fsync: this.fsync,
        prealloc: this.options.prealloc,
      });
    } catch (err) {
      if (err instanceof QueueCorruptError) return file; // damaged: rotated and salvaged by the caller
      throw err;
    }
    await file.close();
    await this.directory.replaceRing(this.layout.resizing);
    this.options.logger.info(
      { queue: this.name, from_bytes: size, to_bytes: this.options.maxSize, records: copied },
      'max_size changed: copied the backlog into a queue file of the new size',
    );
    return this.openFile(this.file, false);
  }

  /**
   * Copies every valid unacknowledged record of the damaged file into a fresh file (see
   * `salvageInto`), then renames the damaged one to `<file>.corrupted-<UTC time>` and puts the fresh
   * one in its place, and logs what was lost at error level. A crash before the renames leaves the
   * damaged file where it was, to salvage again.
   */
  private async rotateAndSalvage(
    file: QueueFile,
    why: QueueCorruptError,
    from?: { pos: number; seq: number },
  ): Promise<void> {
    const s = await salvageInto(
      file,
      this.layout.salvaging,
      { openFile: this.openFile, capacity: this.capacity, fsync: this.fsync },
      from,
    );
    if (s.readError)
      this.options.logger.error(
        { queue: this.name, err: s.readError.message },
        'reading the damaged queue file failed part way',
      );
    await file.close();
    const corrupted = QueueLayout.corrupted(this.file);
    await this.directory.replaceRing(this.layout.salvaging, corrupted);
    // One step: from here on records, positions and the id are the fresh file's.
    this.ring = s.ring;
    this.cache.reset(); // positions handed out so far belong to the old file: those records are sent again
    this.epoch++;
    await this.writeMeta().catch(() => undefined);
    this.corruption.rotated++;
    this.corruption.salvaged += s.kept;
    this.corruption.lostRecords += s.lostRecords ?? 0;
    this.corruption.lostBytes += s.lostBytes;
    this.options.logger.error(
      {
        queue: this.name,
        reason: why.reason,
        moved_to: corrupted,
        records_salvaged: s.kept,
        records_not_salvaged: s.found - s.kept,
        // Unknown only when neither header slot can be read: then nothing says what the file held.
        records_lost: s.lostRecords ?? 'unknown (no readable header)',
        bytes_lost: s.lostBytes,
        unreadable_bytes: s.unreadableBytes,
      },
      'queue file is corrupt: rotated it and salvaged every valid record into a fresh file; what could not be ' +
        'salvaged is lost',
    );
  }

  /** A record in the live region failed its checks while running: rotate, salvage what is unacknowledged, resend. */
  private rotateWhileRunning(err: QueueCorruptError): Promise<void> {
    this.rotating = (async () => {
      await this.commits.now().catch(() => undefined);
      const old = this.ring;
      const from = { pos: old.head, seq: old.headSeq };
      await old.settled();
      const file = await this.openFile(this.file, false);
      await this.rotateAndSalvage(file, err, from);
      await old.closeFile().catch(() => undefined);
      this.wake();
      this.cache.release();
    })()
      .catch((e: unknown) =>
        this.options.logger.error(
          { queue: this.name, err: (e as Error).message },
          'rotating the corrupt queue file failed',
        ),
      )
      .finally(() => {
        this.rotating = null;
        this.releaseHeld();
      });
    return this.rotating;
  }

  /** Resolves once no rotation and no drop of the oldest records is under way: a push made then is appended at once. */
  async settled(): Promise<void> {
    while (this.rotating || this.droppingOldest) await (this.rotating ?? this.droppingOldest);
  }

  isFull(): boolean {
    return this.ring.freeBytes() < Math.min(FULL_MARGIN, this.capacity / 4);
  }

  push(records: LogRecord[], awaited = false): Promise<void> | undefined {
    if (records.length === 0 || this.closed) return undefined;
    // Held while the file is rotated (appends to it would be lost with it), while the oldest
    // records are dropped for room (`full: drop_oldest`), or while the rest of a batch waits for
    // room; and behind every push already held. They are appended in the order they came, all in
    // one turn once nothing holds them: a push made as the hold ends never overtakes one held
    // (records of one stream stay in order: an exactly-once receiver keeps each stream's highest
    // position and would drop the overtaken ones as already written).
    if (this.holding() || this.held.length > 0) {
      return new Promise<void>((resolve, reject) => this.held.push({ records, awaited, resolve, reject }));
    }
    return this.append(records, awaited);
  }

  /** Something holds pushes back: a rotation, a drop of the oldest, the rest of a batch waiting for room. */
  private holding(): boolean {
    return this.rotating !== null || this.droppingOldest !== null || this.waitingRest !== null;
  }

  /** Appends the held pushes, oldest first, until something holds them again (one of them may). */
  private releaseHeld(): void {
    while (this.held.length > 0 && !this.holding()) {
      const h = this.held.shift()!;
      if (this.closed) {
        h.reject(this.closedError());
        continue;
      }
      let c: Promise<void> | undefined;
      try {
        c = this.append(h.records, h.awaited);
      } catch (err) {
        h.reject(err as Error);
        continue;
      }
      if (c) c.then(h.resolve, h.reject);
      else h.resolve();
    }
  }

  /**
   * The rest of a batch, once its wait is over: appended now, or, while something else holds pushes
   * (a rotation began meanwhile), first in line of the held ones: it comes before every push held.
   * Refused when the queue closed meanwhile (a stop ends the wait for room).
   */
  private appendFirst(rest: LogRecord[], awaited: boolean): Promise<void> | undefined {
    if (this.closed) return Promise.reject(this.closedError());
    if (this.holding())
      return new Promise<void>((resolve, reject) => this.held.unshift({ records: rest, awaited, resolve, reject }));
    return this.append(rest, awaited);
  }

  /**
   * The rest of a batch that did not fit, once `room` says whether there is room for it now (false:
   * none could be made, and it is dropped and counted) and the part written is committed; `release`
   * ends the hold its wait put on other pushes. A failed commit of the part written is heard at
   * once, not once there is room: until its producer hears it, a later batch of its own waiting for
   * room elsewhere (in the router) could be appended, and reach the receiver ahead of this one sent
   * again. Then the rest is not appended (the producer sends the whole batch again), and neither is
   * any push held behind it.
   */
  private async restAfter(
    room: Promise<boolean>,
    done: Promise<void> | undefined,
    rest: LogRecord[],
    awaited: boolean,
    release: () => void,
  ): Promise<void> {
    done?.catch(() => undefined); // heard below; not unhandled meanwhile
    let appendIt: boolean;
    try {
      appendIt = await settledFirst(
        done,
        room.then(async (r) => {
          await done;
          return r;
        }),
      );
    } catch (err) {
      release();
      this.refuseHeld(err as Error);
      throw err;
    }
    release();
    // Closed meanwhile (a stop ends the wait for room): refused, and its producer hears so.
    let c: Promise<void> | undefined;
    if (appendIt || this.closed) c = this.appendFirst(rest, awaited);
    else this.dropNewest(rest);
    this.releaseHeld();
    await c;
  }

  private closedError(): Error {
    return new Error(`queue ${this.name} closed before these records could be appended`);
  }

  /** Refuses every held push (the batch they waited behind failed its commit: appended now, they would overtake it). */
  private refuseHeld(err: Error): void {
    for (const h of this.held.splice(0)) h.reject(err);
  }

  private append(records: LogRecord[], awaited: boolean): Promise<void> | undefined {
    if (awaited) this.commits.soon();
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
        const done = this.commits.commitFor(written > 0);
        const room = this.waitForSpace().then(() => true);
        this.waitingRest = room;
        return this.restAfter(room, done, rest, awaited, () => {
          this.waitingRest = null;
        });
      }
      if (this.fullPolicy === 'drop_oldest' && this.cache.inFlight === 0) {
        const done = this.commits.commitFor(written > 0);
        const freed = this.dropOldest(sizes.slice(written));
        this.droppingOldest = freed;
        return this.restAfter(freed, done, rest, awaited, () => {
          this.droppingOldest = null;
        });
      }
      // drop_newest; also drop_oldest while the destination has the oldest records in flight.
      this.dropNewest(rest);
    }
    if (written === 0) return undefined;
    return this.commits.commitFor(true);
  }

  private dropNewest(rest: LogRecord[]): void {
    this.countDrop('queue_full', rest.length);
    for (const r of rest) r.origin.counters.dropped(r.origin.source, 'queue_full');
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
        this.options.counters.dropped(this.decoder.decode(r.payload).origin.source, 'queue_full');
        if (end - this.ring.head >= want) break;
      }
    }
    if (dropped === 0) return false;
    this.ring.setHead(end, seq);
    this.countDrop('queue_full', dropped);
    this.cache.reset(); // it may hold dropped records
    await this.commits.now();
    this.cache.startLoading();
    return true;
  }

  /** Group commit: see GroupCommit. Rejects when the sync fails. */
  syncNow(): Promise<void> {
    return this.commits.now();
  }

  private wake(): void {
    this.cache.synced();
    if (this.spaceWaiters.length > 0 && !this.isFull()) {
      const w = this.spaceWaiters;
      this.spaceWaiters = [];
      for (const f of w) f();
    }
  }

  waitForSpace(): Promise<void> {
    if (!this.isFull() || this.closed) return Promise.resolve();
    const p = new Promise<void>((resolve) => this.spaceWaiters.push(resolve));
    this.syncPendingHeader();
    return p;
  }

  /** A header left without its fsync (a lazy sync) may name space that is free once it is durable: sync it. */
  private syncPendingHeader(): void {
    if (this.ring.headerPending) void this.commits.now().catch(() => undefined);
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

  take(max: number): LogRecord[] {
    return this.cache.take(max);
  }

  ack(count: number): void {
    const done = this.cache.ack(count);
    if (!done) return;
    this.ring.setHead(done.end, this.ring.headSeq + done.n);
    this.acked += done.n;
    // The freed space is reusable once a header naming the new head is on disk.
    if (this.spaceWaiters.length > 0 || this.options.sync === 'always') void this.commits.now().catch(() => undefined);
  }

  rewind(): void {
    this.cache.rewind();
  }

  waitForRecords(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return this.cache.waitForRecords();
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
      memoryBytes: this.cache.bytes + this.ring.unwrittenBytes,
      diskBytes,
      inFlight: this.cache.inFlight,
      capacityRecords: Number.POSITIVE_INFINITY,
      capacityBytes: this.capacity,
      pushed: this.pushed,
      acked: this.acked,
      dropped: { ...this.dropped },
      stalls: this.stalls,
      oldestReceivedAt: records > 0 ? this.cache.oldestReceivedAt() : null,
      corruption: { ...this.corruption },
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.commits.stop();
    this.cache.release();
    for (const f of this.spaceWaiters.splice(0)) f();
  }

  /** Writes the acknowledged head and closes the file; call after the destination stopped. */
  async dispose(): Promise<void> {
    await this.close();
    await this.cache.stop();
    await this.commits.now().catch(() => undefined);
    try {
      await this.ring.close();
    } finally {
      // Even when the disk refuses the last header (read-only, failing), this process lets go.
      await this.directory.release();
    }
  }
}

/**
 * `then`, unless `commit` fails first: its failure then, at once. For a batch whose part written
 * waits for its commit while the rest waits for something else.
 */
function settledFirst<T>(commit: Promise<void> | undefined, then: Promise<T>): Promise<T> {
  if (!commit) return then;
  return new Promise<T>((resolve, reject) => {
    commit.catch(reject);
    then.then(resolve, reject);
  });
}
