import { crc32 } from 'node:zlib';
import type { QueueFile } from './queue-file.js';

// The reliable queue's file: a header with two alternating slots, then a ring of records.
// Positions are logical byte counts that only grow; the byte on disk is DATA_START + pos % capacity.
// See docs/queue-format.md.

/** Bytes of one header slot as written now (format 2); format 1 slots are 64 bytes. */
export const SLOT_SIZE = 96;
const SLOT_SIZE_V1 = 64;
export const SLOT_OFFSETS = [0, 512] as const; // different sectors: a torn write of one leaves the other whole
export const DATA_START = 4096;
export const RECORD_HEADER = 24;
export const HEADER_MAGIC = 0x48514c53; // "SLQH"
export const RECORD_MAGIC = 0x52514c53; // "SLQR"
export const WRAP_MAGIC = 0x57514c53; // "SLQW"
export const FORMAT_VERSION = 2;

/**
 * Appended bytes not yet written to the file, above which the queue reports itself congested and
 * producers that can wait do (see ReliableQueue.congested); copies into a fresh ring wait for their writes there too. Without it, a sender faster than the disk filled
 * memory: 1M records from loggen into a reliable queue peaked at 760 MB of RSS.
 */
export const WRITE_BEHIND_MAX = 4 << 20;
const TWO32 = 2 ** 32;

export interface RingHeader {
  generation: number;
  /**
   * Bumped at every open: records carry the incarnation that wrote them, so stale bytes from before a crash are never
   * adopted.
   */
  incarnation: number;
  capacity: number;
  /** Everything before `head` is acknowledged and reusable. */
  head: number;
  headSeq: number;
  /** Everything before `tail` was fsynced before this header was written. */
  tail: number;
  tailSeq: number;
  /**
   * Names this file's sequence numbers (16 bytes, written as a UUID): made with the file, so a file
   * and its id cannot be parted by a crash. Empty when a format 1 header had none.
   */
  ringId: string;
}

export interface RingRecord {
  seq: number;
  payload: Buffer;
  /** Logical position just past this record. */
  end: number;
}

export class QueueCorruptError extends Error {
  override readonly name = 'QueueCorruptError';
  constructor(
    readonly reason: string,
    readonly position: number,
  ) {
    super(reason);
  }
}

export interface RecoveryReport {
  /** Which header slot was used; -1 when the file was new. */
  slot: number;
  /** Records found after the header's tail (appended and synced after the last header write). */
  recoveredRecords: number;
  /** Bytes of a torn last write that were discarded. */
  tornBytes: number;
  tornRecords: number;
}

function u64(buf: Buffer, at: number): number {
  return buf.readUInt32LE(at) + buf.readUInt32LE(at + 4) * TWO32;
}

function putU64(buf: Buffer, at: number, v: number): void {
  buf.writeUInt32LE(v % TWO32, at);
  buf.writeUInt32LE(Math.floor(v / TWO32), at + 4);
}

/** The last id made bytes: a ring writes the same one in every header. */
let lastUuid: { id: string; bytes: Buffer } = { id: '', bytes: Buffer.alloc(16) };
const uuidBytes = (id: string): Buffer => {
  if (id === lastUuid.id) return lastUuid.bytes;
  const hex = id.replace(/-/g, '');
  const bytes = /^[0-9a-f]{32}$/i.test(hex) ? Buffer.from(hex, 'hex') : Buffer.alloc(16);
  lastUuid = { id, bytes };
  return bytes;
};
const uuidText = (b: Buffer): string => {
  if (b.every((x) => x === 0)) return '';
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
};

export function encodeHeader(h: RingHeader): Buffer {
  const b = Buffer.alloc(SLOT_SIZE);
  b.writeUInt32LE(HEADER_MAGIC, 0);
  b.writeUInt32LE(FORMAT_VERSION, 4);
  putU64(b, 8, h.generation);
  putU64(b, 16, h.capacity);
  putU64(b, 24, h.head);
  putU64(b, 32, h.headSeq);
  putU64(b, 40, h.tail);
  putU64(b, 48, h.tailSeq);
  b.writeUInt32LE(h.incarnation, 56);
  uuidBytes(h.ringId).copy(b, 60);
  b.writeUInt32LE(crc32(b.subarray(0, SLOT_SIZE - 4)), SLOT_SIZE - 4);
  return b;
}

/** The header in one slot, or a reason it is not usable. */
export function decodeHeader(b: Buffer): RingHeader | string {
  if (b.length < SLOT_SIZE_V1) return 'short header';
  if (b.readUInt32LE(0) !== HEADER_MAGIC) return 'bad magic';
  const version = b.readUInt32LE(4);
  const size = version === 1 ? SLOT_SIZE_V1 : SLOT_SIZE;
  if (b.length < size) return 'short header';
  if (b.readUInt32LE(size - 4) !== crc32(b.subarray(0, size - 4))) return 'bad checksum';
  if (version !== 1 && version !== FORMAT_VERSION) return `unknown format version ${version}`;
  return {
    generation: u64(b, 8),
    capacity: u64(b, 16),
    head: u64(b, 24),
    headSeq: u64(b, 32),
    tail: u64(b, 40),
    tailSeq: u64(b, 48),
    incarnation: b.readUInt32LE(56),
    ringId: version === 1 ? '' : uuidText(b.subarray(60, 76)),
  };
}

function newestSlot(slots: (RingHeader | string)[]): number {
  let best = -1;
  for (let i = 0; i < slots.length; i++) {
    const h = slots[i]!;
    if (typeof h === 'string') continue;
    if (best < 0 || h.generation > (slots[best] as RingHeader).generation) best = i;
  }
  return best;
}

/** Both header slots, each decoded or the reason it is not usable (a short file reads short slots). */
function readSlots(file: QueueFile): Promise<(RingHeader | string)[]> {
  return Promise.all(
    SLOT_OFFSETS.map(async (off) => {
      const b = Buffer.alloc(SLOT_SIZE);
      const n = await file.read(b, 0, SLOT_SIZE, off);
      return decodeHeader(b.subarray(0, n));
    }),
  );
}

/**
 * The newest readable header slot of a file, whatever the file's size and whether its heads make
 * sense: what the file held before it was damaged, so that salvage can say how much was lost.
 */
export async function readNewestHeader(file: QueueFile): Promise<RingHeader | null> {
  const slots = await readSlots(file).catch(() => []);
  const best = newestSlot(slots);
  return best < 0 ? null : (slots[best] as RingHeader);
}

/** Why a header's heads cannot be right for this file, or null when they can. */
export function impossibleHeads(h: RingHeader, capacity: number): string | null {
  if (h.capacity !== capacity) return `capacity ${h.capacity} does not match the file (${capacity})`;
  if (h.head > h.tail) return `head ${h.head} is past tail ${h.tail}`;
  if (h.tail - h.head > capacity) return `${h.tail - h.head} bytes between head and tail exceed the capacity`;
  if (h.headSeq > h.tailSeq) return `head sequence ${h.headSeq} is past tail sequence ${h.tailSeq}`;
  if (h.tailSeq - h.headSeq > h.tail - h.head) return 'more records than bytes between head and tail';
  return null;
}

/*
 * Frame: u32 magic, u32 crc32, u32 payload length, u64 sequence, u32 incarnation, payload.
 * The checksum covers everything after itself (length to the end of the payload) in one pass.
 */
const CRC_AT = 4;
const LENGTH_AT = 8;
const SEQ_AT = 12;
const INCARNATION_AT = 20;

/** Writes the frame header for a payload that is already at `at + RECORD_HEADER` in `out`. */
export function sealFrame(
  out: Buffer,
  at: number,
  magic: number,
  seq: number,
  incarnation: number,
  length: number,
): void {
  out.writeUInt32LE(magic, at);
  out.writeUInt32LE(length, at + LENGTH_AT);
  putU64(out, at + SEQ_AT, seq);
  out.writeUInt32LE(incarnation, at + INCARNATION_AT);
  out.writeUInt32LE(crc32(out.subarray(at + LENGTH_AT, at + RECORD_HEADER + length)), at + CRC_AT);
}

/** Writes a whole frame (header and payload) into `out` at `at`. */
export function writeFrame(
  out: Buffer,
  at: number,
  magic: number,
  seq: number,
  incarnation: number,
  payload: Buffer,
): void {
  payload.copy(out, at + RECORD_HEADER);
  sealFrame(out, at, magic, seq, incarnation, payload.length);
}

export function frameLength(buf: Buffer, at: number): number {
  return buf.readUInt32LE(at + LENGTH_AT);
}

export type FrameCheck =
  | { kind: 'record' | 'wrap'; seq: number; length: number; incarnation: number }
  | { kind: 'invalid'; reason: string };

/** Checks the frame at `at` in `buf` (header and, for a record, its payload which must be in `buf`). */
export function checkFrame(buf: Buffer, at: number, capacity: number): FrameCheck {
  if (buf.length - at < RECORD_HEADER) return { kind: 'invalid', reason: 'short frame' };
  const magic = buf.readUInt32LE(at);
  if (magic !== RECORD_MAGIC && magic !== WRAP_MAGIC) return { kind: 'invalid', reason: 'no record magic' };
  const length = buf.readUInt32LE(at + LENGTH_AT);
  if (length > capacity - RECORD_HEADER) return { kind: 'invalid', reason: `record length ${length} exceeds the ring` };
  if (magic === WRAP_MAGIC && length !== 0) return { kind: 'invalid', reason: 'wrap marker with a length' };
  if (buf.length - at - RECORD_HEADER < length) return { kind: 'invalid', reason: 'record runs past the data read' };
  if (buf.readUInt32LE(at + CRC_AT) !== crc32(buf.subarray(at + LENGTH_AT, at + RECORD_HEADER + length))) {
    return { kind: 'invalid', reason: 'checksum mismatch' };
  }
  return {
    kind: magic === WRAP_MAGIC ? 'wrap' : 'record',
    seq: u64(buf, at + SEQ_AT),
    length,
    incarnation: buf.readUInt32LE(at + INCARNATION_AT),
  };
}

export interface RingOptions {
  /** Data bytes in the ring (the file is DATA_START + capacity bytes). */
  capacity: number;
  /** The id a new file gets (`create`), or the one an `open`ed format 1 file, which has none, takes on. */
  ringId?: string;
  /** false: `sync()` orders and publishes writes but never calls fsync (`sync: never`). */
  fsync?: boolean;
  /** `create` writes zeros over the whole data region instead of leaving a sparse file. */
  prealloc?: boolean;
  /** `open` only reads: no new incarnation is written (offline tools). */
  readOnly?: boolean;
}

/**
 * The byte-level ring. Appends go to the tail; `sync()` makes them durable and then records the new
 * tail (and the acknowledged head) in the header, in the slot the previous header did not use.
 * Space before the head becomes reusable only once a header naming that head is on disk, so a
 * crash can never leave the head pointing into overwritten bytes.
 */
export class RingFile {
  readonly capacity: number;
  private readonly fsync: boolean;
  /** Acknowledged head, in memory. */
  head = 0;
  headSeq = 0;
  /** Where the next record goes, and its sequence number. */
  tail = 0;
  tailSeq = 0;
  /** The head in the last durable header: space before it can be overwritten. */
  durableHead = 0;
  /**
   * The head of a header written after a data sync without a sync of its own: durable once the
   * next sync of the file is done (see sync).
   */
  private writtenHead: number | null = null;
  /** Everything before this position is durable. */
  syncedTail = 0;
  syncedTailSeq = 0;
  private generation = 0;
  incarnation = 1;
  /** The first incarnation of this process's block (see open and recover). */
  private incarnationBase = 1;
  /** See RingHeader.ringId. */
  ringId = '';
  private writes: Promise<void> = Promise.resolve();
  /**
   * Bumped when the tail moves to a lap start or the incarnation changes: records appended after
   * that are found by a recovery scan only once a header written after it is durable.
   */
  private layoutChanges = 0;
  /** The layoutChanges that the durable header accounts for. */
  private headerLayout = 0;
  /** Bytes appended and not yet handed to the file (their buffers are in memory). */
  unwrittenBytes = 0;
  private writeError: Error | null = null;

  private constructor(
    private readonly file: QueueFile,
    options: RingOptions,
  ) {
    this.capacity = options.capacity;
    this.fsync = options.fsync !== false;
    this.ringId = options.ringId ?? '';
  }

  /** Creates a new empty ring, replacing whatever the file held. */
  static async create(file: QueueFile, options: RingOptions): Promise<RingFile> {
    const ring = new RingFile(file, options);
    await file.truncate(0);
    await file.truncate(DATA_START + options.capacity);
    if (options.prealloc) {
      const zeros = Buffer.alloc(Math.min(options.capacity, 4 << 20));
      for (let at = 0; at < options.capacity; at += zeros.length) {
        await file.write(zeros, 0, Math.min(zeros.length, options.capacity - at), DATA_START + at);
      }
    }
    await ring.writeHeader();
    await file.sync();
    return ring;
  }

  /**
   * Opens an existing ring: the newest valid header slot, then a scan forward from its tail for
   * records synced after it. Throws QueueCorruptError when no header is usable or its heads are
   * impossible; the caller rotates the file and salvages.
   */
  static async open(file: QueueFile, options: RingOptions): Promise<{ ring: RingFile; report: RecoveryReport }> {
    const ring = new RingFile(file, options);
    const size = await file.size();
    if (size < DATA_START + options.capacity) {
      throw new QueueCorruptError(`file is ${size} bytes, shorter than its ring (${DATA_START + options.capacity})`, 0);
    }
    const slots = await readSlots(file);
    const best = newestSlot(slots);
    if (best < 0)
      throw new QueueCorruptError(`no valid header (slot 0: ${slots[0] as string}; slot 1: ${slots[1] as string})`, 0);
    const h = slots[best] as RingHeader;
    const impossible = impossibleHeads(h, options.capacity);
    if (impossible) throw new QueueCorruptError(`impossible header: ${impossible}`, SLOT_OFFSETS[best]!);
    ring.generation = h.generation;
    ring.incarnation = h.incarnation;
    if (h.ringId) ring.ringId = h.ringId;
    ring.head = ring.durableHead = h.head;
    ring.headSeq = h.headSeq;
    ring.tail = ring.syncedTail = h.tail;
    ring.tailSeq = ring.syncedTailSeq = h.tailSeq;
    const report: RecoveryReport = { slot: best, recoveredRecords: 0, tornBytes: 0, tornRecords: 0 };
    await ring.scanForward(report);
    ring.syncedTail = ring.tail;
    ring.syncedTailSeq = ring.tailSeq;
    if (options.readOnly) return { ring, report };
    // A new incarnation, on disk before anything new is written: bytes left past the tail by the
    // previous one can never pass for records of this one. A whole block of them: the previous
    // process may have used incarnations past its last header (a failed write moves to the next
    // one, see recover) whose bytes are on disk; this process starts past all of those.
    ring.incarnation = (h.incarnation + INCARNATION_BLOCK) % TWO32;
    ring.incarnationBase = ring.incarnation;
    await ring.writeHeader();
    await file.sync();
    return { ring, report };
  }

  /** Finds records written after the header's tail; stops at the first that is not the next one. */
  private async scanForward(report: RecoveryReport): Promise<void> {
    let want = 0;
    for (;;) {
      const free = this.capacity - (this.tail - this.head);
      const phys = this.tail % this.capacity;
      const toEnd = this.capacity - phys;
      if (free <= 0) return;
      if (toEnd < RECORD_HEADER) {
        if (toEnd > free) return;
        this.tail += toEnd; // padding too small for a frame: the next record starts the lap
        continue;
      }
      const len = Math.min(toEnd, Math.max(want, 1 << 20));
      const buf = Buffer.allocUnsafe(len);
      const view = buf.subarray(0, await this.file.read(buf, 0, len, DATA_START + phys));
      let at = 0;
      let needMore = 0;
      let wrapped = false;
      while (view.length - at >= RECORD_HEADER) {
        const size = RECORD_HEADER + frameLength(view, at);
        if (view.readUInt32LE(at) === RECORD_MAGIC && size > view.length - at && size <= toEnd - at) {
          needMore = size;
          break;
        }
        const f = checkFrame(view, at, this.capacity);
        if (f.kind === 'invalid') {
          // The end of what was written. A frame of this incarnation with the next sequence number
          // that fails its checks is a torn write: counted and discarded. Anything else here (the
          // middle of an older lap's record, zeros) is old bytes, not a loss.
          if (this.isOwnNextFrame(view, at)) {
            report.tornRecords++;
            report.tornBytes += this.tornLength(view, at);
          }
          return;
        }
        // an older lap's or incarnation's record
        if (f.seq !== this.tailSeq || f.incarnation !== this.incarnation) return;
        if (f.kind === 'wrap') {
          if (toEnd - at > this.capacity - (this.tail - this.head)) return;
          this.tail += toEnd - at;
          wrapped = true;
          break;
        }
        if (this.tail + size - this.head > this.capacity) return;
        this.tail += size;
        this.tailSeq++;
        report.recoveredRecords++;
        at += size;
      }
      if (wrapped) {
        want = 0;
      } else if (at === 0) {
        if (needMore === 0) return;
        want = needMore;
      } else {
        want = 0;
      }
    }
  }

  private isOwnNextFrame(view: Buffer, at: number): boolean {
    const magic = view.readUInt32LE(at);
    return (
      (magic === RECORD_MAGIC || magic === WRAP_MAGIC) &&
      view.readUInt32LE(at + INCARNATION_AT) === this.incarnation &&
      u64(view, at + SEQ_AT) === this.tailSeq
    );
  }

  private tornLength(view: Buffer, at: number): number {
    if (view.length - at >= 8 && (view.readUInt32LE(at) === RECORD_MAGIC || view.readUInt32LE(at) === WRAP_MAGIC)) {
      return Math.min(RECORD_HEADER + frameLength(view, at), view.length - at);
    }
    let end = at;
    while (end < view.length && end - at < RECORD_HEADER && view[end] !== 0) end++;
    return Math.max(1, end - at);
  }

  /** Free bytes: what may be appended before the tail would overwrite the durable head. */
  freeBytes(): number {
    return this.capacity - (this.tail - this.durableHead);
  }

  /** Bytes a payload takes in the ring. */
  static frameSize(payloadLength: number): number {
    return RECORD_HEADER + payloadLength;
  }

  /**
   * Appends payloads (one batch, written with one or two writes). Returns their first sequence
   * number and end positions, or null when they do not fit: nothing is written then.
   */
  append(payloads: Buffer[]): { firstSeq: number; ends: number[] } | null {
    return this.appendWith(
      payloads.map((p) => p.length),
      (i, buf, at) => payloads[i]!.copy(buf, at),
    );
  }

  /**
   * Appends records of the given sizes; `fill(i, buf, at)` writes payload i straight into the
   * write buffer, so a record is copied once on its way to disk.
   */
  /** The error of a failed write, until `recover()`; appends throw it meanwhile. */
  get failed(): Error | null {
    return this.writeError;
  }

  appendWith(
    sizes: number[],
    fill: (i: number, buf: Buffer, at: number) => void,
  ): { firstSeq: number; ends: number[] } | null {
    if (this.writeError) throw this.writeError;
    const n = sizes.length;
    let pos = this.tail;
    const ends = new Array<number>(n);
    const places = new Array<number>(n);
    let wrapAt = -1; // logical position of a wrap marker or padding
    let wrapTo = -1;
    for (let i = 0; i < n; i++) {
      const size = RECORD_HEADER + sizes[i]!;
      if (size > this.capacity) return null;
      const phys = pos % this.capacity;
      if (phys + size > this.capacity) {
        if (wrapAt >= 0) return null; // more than one lap in one batch: the caller splits it
        wrapAt = pos;
        pos += this.capacity - phys;
        wrapTo = pos;
      }
      places[i] = pos;
      pos += size;
      ends[i] = pos;
    }
    if (pos - this.durableHead > this.capacity) return null;

    const firstSeq = this.tailSeq;
    // One write per run of records that are side by side on disk. A run ends at the wrap, and also
    // where a record ends exactly at the ring's end: the next one starts the lap at offset 0, so a
    // single write would run past the end of the file.
    const segments: { pos: number; buf: Buffer }[] = [];
    const build = (from: number, to: number) => {
      const base = places[from]!;
      const buf = Buffer.allocUnsafe(ends[to - 1]! - base);
      for (let i = from; i < to; i++) {
        const at = places[i]! - base;
        fill(i, buf, at + RECORD_HEADER);
        sealFrame(buf, at, RECORD_MAGIC, firstSeq + i, this.incarnation, sizes[i]!);
      }
      segments.push({ pos: base, buf });
    };
    let from = 0;
    for (let i = 0; i < n; i++) {
      if (i > from && (places[i] !== ends[i - 1] || places[i]! % this.capacity === 0)) {
        build(from, i);
        from = i;
      }
      if (places[i] === wrapTo && wrapTo - wrapAt >= RECORD_HEADER) {
        const marker = Buffer.alloc(RECORD_HEADER);
        sealFrame(marker, 0, WRAP_MAGIC, firstSeq + i, this.incarnation, 0);
        segments.push({ pos: wrapAt, buf: marker });
      }
    }
    if (n > 0) build(from, n);
    this.tail = pos;
    this.tailSeq += n;
    for (const seg of segments) this.scheduleWrite(seg.buf, DATA_START + (seg.pos % this.capacity));
    return { firstSeq, ends };
  }

  /**
   * Chains one write after the others. A method of its own, so that the pending write holds only its
   * buffer: a closure made inside appendWith would share its scope and keep `fill`, and through it
   * the producer's records, alive until the write is done.
   */
  private scheduleWrite(buf: Buffer, at: number): void {
    this.unwrittenBytes += buf.length;
    this.writes = this.writes
      .then(() => this.file.write(buf, 0, buf.length, at))
      .then(
        () => {
          this.unwrittenBytes -= buf.length;
        },
        (err: Error) => {
          this.unwrittenBytes -= buf.length;
          this.writeError ??= err;
        },
      );
  }

  /**
   * After a failed write or sync: forgets every append not yet durable (their producers were told
   * the commit failed) and clears the error, so that writing can start again from the durable tail.
   */
  async recover(): Promise<void> {
    await this.writes;
    this.tail = this.syncedTail;
    this.tailSeq = this.syncedTailSeq;
    // The failed sync had moved an empty ring to its next lap (see restartLap), and no header names
    // the move: the ring stays where it was, empty. Left at the lap start, the head would lie ahead
    // of every record appended from now on, and none of them would ever be read.
    if (this.head > this.tail) this.head = this.tail;
    // Bytes of the failed appends may be on disk past the tail: records written from now on carry a
    // new incarnation, so that a recovery scan can never take those for them.
    this.incarnation = (this.incarnation + 1) % TWO32;
    this.layoutChanges++;
    this.writeError = null;
    if ((this.incarnation - this.incarnationBase + TWO32) % TWO32 >= INCARNATION_BLOCK - 1) {
      // The last of this process's block: a header must name it before anything is written with it,
      // so that the next process's block starts past it. While the disk refuses, appends do too.
      try {
        await this.writeHeader();
        if (this.fsync) await this.file.sync();
        this.incarnationBase = this.incarnation;
      } catch (err) {
        this.writeError = err as Error;
      }
    }
  }

  /** Resolves once every append so far has been handed to the file (written, not yet synced). */
  async settled(): Promise<void> {
    await this.writes;
  }

  /**
   * An empty ring moves its head and tail to the start of the next lap,
   * so the next record goes to offset 0 of the data region instead of where the last one ended.
   * Space near the start has been written before: a sparse file on a full disk takes records again
   * there once it has drained, where growing into the holes further on fails. Done only inside a
   * sync, which writes a header naming the new position before any record there can be read: a
   * crash can never leave records past the lap start that recovery, scanning from the header's
   * old tail, would not find (their sequence numbers would be handed out twice).
   */
  private restartLap(): void {
    const empty = this.head === this.tail && this.headSeq === this.tailSeq;
    // Nothing appended since the last sync. The acknowledgements need not be on disk yet: the header
    // this sync writes makes them durable together with the move.
    const settled = this.tail === this.syncedTail && this.unwrittenBytes === 0 && !this.writeError;
    if (!empty || !settled || this.tail % this.capacity === 0) return;
    this.tail = this.head = this.tail + this.capacity - (this.tail % this.capacity);
    this.layoutChanges++;
  }

  /** Marks everything before `pos` (records before `seq`) acknowledged; durable at the next sync. */
  setHead(pos: number, seq: number): void {
    if (pos < this.head || pos > this.tail) throw new Error(`head ${pos} outside [${this.head}, ${this.tail}]`);
    this.head = pos;
    this.headSeq = seq;
  }

  /**
   * Makes every append so far durable, then writes and syncs a header naming the new tail and the
   * acknowledged head. Two fsyncs: a header never names data that is not on disk.
   *
   * Returns false when no record or acknowledgement was made durable.
   *
   * `onDataDurable` is called as soon as the appends are on disk, before the header: a crash then
   * finds them by the recovery scan from the durable header's tail (see `open`). Only while that
   * header still fits the file (no move to a lap start, no new incarnation since it was written):
   * otherwise the scan would not reach them, and it is called after the header.
   */
  async sync(onDataDurable?: () => void, lazyHeader = false): Promise<boolean> {
    // Capture what this sync covers before waiting: appends made while the writes drain are
    // chained after them and belong to the next sync, not this one.
    this.restartLap();
    const layout = this.layoutChanges;
    const tail = this.tail;
    const tailSeq = this.tailSeq;
    const head = this.head;
    const headSeq = this.headSeq;
    await this.writes;
    if (this.writeError) throw this.writeError;
    // Also with nothing new: a header naming a new incarnation (after a failed write) or a new lap
    // must reach the disk, or bytes of the failed appends could pass for records after a restart.
    const moved = tail !== this.syncedTail || head !== this.durableHead;
    // A header written without its sync is left so only by a lazy sync (see below).
    if (!moved && this.headerLayout === layout && (lazyHeader || this.writtenHead === null)) return false;
    const before = { tail: this.syncedTail, seq: this.syncedTailSeq };
    const sameLayout = this.headerLayout === layout;
    const dataMoved = tail !== this.syncedTail;
    try {
      // Nothing appended since the last sync: the data is on disk already, only the head moved.
      const covered = this.writtenHead;
      if (this.fsync && dataMoved) {
        await this.file.sync();
        // That sync also made durable the header the previous one wrote without a sync of its own.
        if (covered !== null) this.durableHead = covered;
        this.writtenHead = null;
      }
      this.syncedTail = tail;
      this.syncedTailSeq = tailSeq;
      if (sameLayout) onDataDurable?.();
      await this.writeHeader(head, headSeq);
      // `lazyHeader`, after a data sync in the same layout: the header needs no sync of its own. A
      // recovery scan from the durable header finds the records it names, and the next sync of the
      // file makes it durable; until then the space before its head is not reused (the caller asks
      // for lazy headers only while it needs no space freed). One sync per commit instead of two,
      // the second in the way of the next commit. A new layout, or a sync that only records a
      // head, syncs its header at once.
      if (this.fsync && lazyHeader && sameLayout && dataMoved) {
        this.writtenHead = head;
        return moved;
      }
      if (this.fsync) await this.file.sync();
      this.writtenHead = null;
    } catch (err) {
      // As after a failed write: appends are refused until `recover()` forgets the ones not
      // durable. Taken meanwhile, they would be forgotten with them after their producers were
      // promised a commit by the next sync.
      if (this.headerLayout !== layout) {
        // The data reached the disk, but only this header could name it (a new lap or incarnation:
        // a recovery scan from the durable header does not reach it), and its producers hear that
        // the commit failed. Kept, it would be handed out and sent again by them: a duplicate.
        this.syncedTail = before.tail;
        this.syncedTailSeq = before.seq;
      }
      this.writeError ??= err as Error;
      throw err;
    }
    this.headerLayout = layout;
    this.durableHead = head;
    onDataDurable?.();
    // A header alone (a new incarnation) is not news that the disk takes records again.
    return moved;
  }

  /** A header was written without a sync of its own (see sync): the durable head lags behind it. */
  get headerPending(): boolean {
    return this.writtenHead !== null;
  }

  private async writeHeader(head = this.head, headSeq = this.headSeq): Promise<void> {
    this.generation++;
    const h = encodeHeader({
      generation: this.generation,
      capacity: this.capacity,
      head,
      headSeq,
      tail: this.syncedTail,
      tailSeq: this.syncedTailSeq,
      incarnation: this.incarnation,
      ringId: this.ringId,
    });
    await this.file.write(h, 0, h.length, SLOT_OFFSETS[this.generation % 2]!);
  }

  /**
   * Reads records from `pos` (whose sequence is `seq`) up to about `maxBytes`, never past the
   * durable tail. Throws QueueCorruptError on a record that fails its checks.
   */
  async read(pos: number, seq: number, maxBytes: number): Promise<RingRecord[]> {
    const out: RingRecord[] = [];
    const limit = this.syncedTail;
    let want = 0;
    while (pos < limit && maxBytes > 0) {
      const phys = pos % this.capacity;
      const toEnd = this.capacity - phys;
      if (toEnd < RECORD_HEADER) {
        pos += toEnd;
        continue;
      }
      const room = Math.min(toEnd, limit - pos);
      if (room < RECORD_HEADER)
        throw new QueueCorruptError(`only ${room} bytes before the tail at position ${pos}`, pos);
      want = Math.min(room, Math.max(want, 64 * 1024, Math.min(maxBytes, 4 << 20)));
      const buf = Buffer.allocUnsafe(want);
      const view = buf.subarray(0, await this.file.read(buf, 0, want, DATA_START + phys));
      let at = 0;
      let needMore = 0;
      while (view.length - at >= RECORD_HEADER && pos < limit && maxBytes > 0) {
        const size = RECORD_HEADER + frameLength(view, at);
        if (view.readUInt32LE(at) === RECORD_MAGIC && size > view.length - at && size <= room - at) {
          needMore = size; // a large record: read it whole from its start
          break;
        }
        const f = checkFrame(view, at, this.capacity);
        if (f.kind === 'invalid')
          throw new QueueCorruptError(`record at position ${pos} (sequence ${seq}): ${f.reason}`, pos);
        if (f.seq !== seq)
          throw new QueueCorruptError(`record at position ${pos} has sequence ${f.seq}, expected ${seq}`, pos);
        if (f.kind === 'wrap') {
          pos += toEnd - at;
          at = -1;
          break;
        }
        pos += size;
        // views of this read's own buffer
        out.push({ seq, payload: view.subarray(at + RECORD_HEADER, at + size), end: pos });
        seq++;
        at += size;
        maxBytes -= size;
      }
      if (at === 0) {
        if (needMore <= want)
          throw new QueueCorruptError(`record at position ${pos} (sequence ${seq}) does not fit before the tail`, pos);
        want = needMore;
      } else {
        want = 0;
      }
    }
    return out;
  }

  async close(): Promise<void> {
    try {
      await this.sync();
    } finally {
      await this.file.close();
    }
  }

  /** Closes the file without a last sync: a ring given up for a fresh one (a rotation). */
  closeFile(): Promise<void> {
    return this.file.close();
  }
}

/** Each open takes a block of this many incarnations; a failed write moves to the next in it. */
export const INCARNATION_BLOCK = 1 << 16;

/** `a` came after `b`: serial-number order (RFC 1982), so the counter may wrap around 2^32. */
export function newerIncarnation(a: number, b: number): boolean {
  const d = (a - b + TWO32) % TWO32;
  return d !== 0 && d < TWO32 / 2;
}
