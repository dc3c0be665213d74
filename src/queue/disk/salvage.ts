import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import type { QueueFile } from './queue-file.js';
import {
  checkFrame,
  DATA_START,
  newerIncarnation,
  readNewestHeader,
  RECORD_HEADER,
  RECORD_MAGIC,
  RingFile,
  WRITE_BEHIND_MAX,
  type RingHeader,
} from './ring-file.js';

/**
 * Salvage: what can still be read from a damaged queue file. The scanner finds every record whose
 * frame is intact anywhere in the data region, whatever the headers say, and keeps, for each
 * sequence number, the copy of the newest incarnation. `salvageInto` copies what it finds into a
 * fresh ring, `copyBacklog` copies a whole backlog into a ring of another size.
 */

export interface SalvageResult {
  /** Valid records in sequence order, one per sequence number (the newest incarnation wins). */
  records: { seq: number; payload: Buffer }[];
  /** Bytes of the data region that held no valid record and were not zero. */
  unreadableBytes: number;
}

/** Valid records found side by side with consecutive sequence numbers: usually one write's worth. */
interface SalvageRun {
  pos: number;
  end: number;
  firstSeq: number;
  count: number;
  incarnation: number;
}

/** The sequence numbers [from, to) of one run that salvage keeps. */
interface SalvagePiece {
  run: SalvageRun;
  from: number;
  to: number;
}

/** What a salvage scan found; `batches()` reads the records themselves. */
export interface SalvageScan {
  /** Records `batches()` yields: one per sequence number. */
  records: number;
  /** Bytes of the data region that held no valid record and were not zero. */
  unreadableBytes: number;
  /**
   * The records in sequence order, in batches of about `batchBytes`. Each batch reads the file
   * again into a buffer of its own, which its payloads are views of: memory stays at one batch,
   * whatever the size of the file.
   */
  batches(batchBytes?: number): AsyncGenerator<{ seq: number; payload: Buffer }[]>;
}

/**
 * Scans the whole data region for records whose frame is intact, whatever the header says, and
 * remembers only where they are (runs of adjacent records), not the records. Used when a file is
 * rotated for corruption. Records before `minSeq` (acknowledged) are left out.
 */
export async function scanForSalvage(
  file: QueueFile,
  capacity: number,
  minSeq = 0,
  maxRecordBytes = 1 << 20,
  /** Where the records from `minSeq` begin (the running queue's head), when it is behind the header's. */
  fromPos?: number,
): Promise<SalvageScan> {
  const runs: SalvageRun[] = [];
  const magic = Buffer.alloc(4);
  magic.writeUInt32LE(RECORD_MAGIC, 0);
  const chunkSize = 4 << 20;
  let unreadableBytes = 0;
  let pos = 0;
  let coveredTo = 0; // bytes before this were inside a valid frame or counted
  while (pos < capacity) {
    const len = Math.min(chunkSize + maxRecordBytes + RECORD_HEADER, capacity - pos);
    const buf = Buffer.alloc(len);
    const n = await file.read(buf, 0, len, DATA_START + pos);
    const view = buf.subarray(0, n);
    const scanEnd = Math.min(view.length, chunkSize);
    let at = Math.max(0, coveredTo - pos);
    while (at < scanEnd) {
      const hit = view.indexOf(magic, at);
      const stop = hit < 0 || hit >= scanEnd ? scanEnd : hit;
      for (let i = at; i < stop; i++) if (view[i] !== 0) unreadableBytes++;
      if (stop === scanEnd) {
        at = scanEnd;
        break;
      }
      const f = checkFrame(view, hit, capacity);
      if (f.kind === 'record') {
        const end = pos + hit + RECORD_HEADER + f.length;
        if (f.seq >= minSeq) {
          const last = runs[runs.length - 1];
          if (
            last &&
            last.end === pos + hit &&
            last.incarnation === f.incarnation &&
            last.firstSeq + last.count === f.seq
          ) {
            last.count++;
            last.end = end;
          } else {
            runs.push({ pos: pos + hit, end, firstSeq: f.seq, count: 1, incarnation: f.incarnation });
          }
        }
        at = hit + RECORD_HEADER + f.length;
      } else {
        at = hit + (f.kind === 'wrap' ? RECORD_HEADER : 1);
        if (f.kind === 'invalid') unreadableBytes++;
      }
    }
    coveredTo = pos + at;
    pos += chunkSize;
  }
  const header = await readNewestHeader(file).catch(() => null);
  const pieces = choosePieces(withoutSuperseded(runs, header, capacity, fromPos));
  return {
    records: pieces.reduce((sum, p) => sum + p.to - p.from, 0),
    unreadableBytes,
    batches: (batchBytes = 1 << 20) => readPieces(file, capacity, pieces, batchBytes, maxRecordBytes),
  };
}

/**
 * Leaves out records that a later incarnation superseded: bytes an earlier process wrote past what
 * became durable (a crash, a failed write, a damaged record that stopped the recovery scan). A new
 * incarnation starts at the durable tail and numbers its records on from there, so a record of
 * incarnation i at sequence s is stale once some later incarnation has a record at or before s,
 * or when the newest header (whose incarnation started at or before its tail) names a later
 * incarnation and s is at or past its tail; and a run that begins outside the header's region with a
 * record it names is stale too (see below). Kept, such a record would be sent again ahead of the
 * lines before it, which its source reads again from an older checkpoint: an exactly-once receiver
 * would then drop those as already written.
 */
function withoutSuperseded(
  all: SalvageRun[],
  header: RingHeader | null,
  capacity: number,
  fromPos?: number,
): SalvageRun[] {
  // The records the header names, [headSeq, tailSeq), lie side by side in its region [head, tail)
  // and fill it; so do those from a running queue's head (`fromPos`, behind the header's when
  // acknowledgements reached the disk during the rotation) up to it. A run that begins outside that
  // region and numbers a record below tailSeq is an older copy: an earlier incarnation's bytes past
  // what became durable, or an older lap's. Without this, such a copy stands in for a damaged
  // record of the region (the damaged one supersedes nothing).
  const start = fromPos !== undefined && fromPos < (header?.head ?? 0) ? fromPos : header?.head;
  const runs = header
    ? all.filter((r) => r.firstSeq >= header.tailSeq || inRegion(r.pos, start!, header.tail, capacity))
    : all;
  const firstSeen = new Map<number, number>();
  for (const r of runs)
    firstSeen.set(r.incarnation, Math.min(firstSeen.get(r.incarnation) ?? Number.POSITIVE_INFINITY, r.firstSeq));
  const cut = new Map<number, number>();
  for (const i of firstSeen.keys()) {
    let c = Number.POSITIVE_INFINITY;
    for (const [j, first] of firstSeen) if (newerIncarnation(j, i) && first < c) c = first;
    if (header && newerIncarnation(header.incarnation, i) && header.tailSeq < c) c = header.tailSeq;
    cut.set(i, c);
  }
  const out: SalvageRun[] = [];
  for (const r of runs) {
    const keep = Math.min(r.count, cut.get(r.incarnation)! - r.firstSeq);
    if (keep > 0) out.push(keep === r.count ? r : { ...r, count: keep });
  }
  return out;
}

/** True when data offset `pos` lies in the ring's region [head, tail) (logical positions). */
function inRegion(pos: number, head: number, tail: number, capacity: number): boolean {
  const length = tail - head;
  return length > 0 && (pos - (head % capacity) + capacity) % capacity < length;
}

/**
 * One run per sequence number. Where runs overlap (a rewrite after a failed write), the newest
 * incarnation wins, then the later position. Overlaps are rare and shallow, so the runs covering
 * the current number are kept in a plain list.
 */
function choosePieces(runs: SalvageRun[]): SalvagePiece[] {
  const better = (a: SalvageRun, b: SalvageRun) =>
    a.incarnation !== b.incarnation ? newerIncarnation(a.incarnation, b.incarnation) : a.pos > b.pos;
  const byStart = [...runs].sort((a, b) => a.firstSeq - b.firstSeq);
  const bounds = [...new Set(runs.flatMap((r) => [r.firstSeq, r.firstSeq + r.count]))].sort((a, b) => a - b);
  const pieces: SalvagePiece[] = [];
  let active: SalvageRun[] = [];
  let next = 0;
  for (let b = 0; b + 1 < bounds.length; b++) {
    const from = bounds[b]!;
    const to = bounds[b + 1]!;
    active = active.filter((r) => r.firstSeq + r.count > from);
    while (next < byStart.length && byStart[next]!.firstSeq <= from) active.push(byStart[next++]!);
    if (active.length === 0) continue;
    const best = active.reduce((x, y) => (better(y, x) ? y : x));
    const last = pieces[pieces.length - 1];
    if (last && last.run === best && last.to === from) last.to = to;
    else pieces.push({ run: best, from, to });
  }
  return pieces;
}

async function* readPieces(
  file: QueueFile,
  capacity: number,
  pieces: SalvagePiece[],
  batchBytes: number,
  maxRecordBytes: number,
): AsyncGenerator<{ seq: number; payload: Buffer }[]> {
  // Where each run has been read to: a run's pieces come in sequence order.
  const cursors = new Map<SalvageRun, { pos: number; seq: number }>();
  for (const piece of pieces) {
    const c = cursors.get(piece.run) ?? { pos: piece.run.pos, seq: piece.run.firstSeq };
    cursors.set(piece.run, c);
    while (c.seq < piece.to) {
      const len = Math.min(piece.run.end - c.pos, batchBytes + maxRecordBytes + RECORD_HEADER);
      const buf = Buffer.alloc(len);
      const view = buf.subarray(0, await file.read(buf, 0, len, DATA_START + c.pos));
      const out: { seq: number; payload: Buffer }[] = [];
      let at = 0;
      while (c.seq < piece.to && (at < batchBytes || out.length === 0)) {
        const f = checkFrame(view, at, capacity);
        if (f.kind !== 'record' || f.seq !== c.seq) break;
        if (c.seq >= piece.from)
          out.push({ seq: c.seq, payload: view.subarray(at + RECORD_HEADER, at + RECORD_HEADER + f.length) });
        at += RECORD_HEADER + f.length;
        c.seq++;
      }
      // The scan found these records intact a moment ago; a file that changed since loses the rest of the run.
      if (at === 0) break;
      c.pos += at;
      if (out.length > 0) yield out;
    }
  }
}

/** Every record a salvage scan finds, in memory: for small files (the memory part of a normal queue). */
export async function salvageRecords(
  file: QueueFile,
  capacity: number,
  minSeq = 0,
  maxRecordBytes = 1 << 20,
): Promise<SalvageResult> {
  const scan = await scanForSalvage(file, capacity, minSeq, maxRecordBytes);
  const records: { seq: number; payload: Buffer }[] = [];
  for await (const batch of scan.batches()) records.push(...batch);
  return { records, unreadableBytes: scan.unreadableBytes };
}

export interface FreshRing {
  /** Opens (creating) the file at a path: the queue's file factory. */
  openFile: (path: string, create: boolean) => Promise<QueueFile>;
  capacity: number;
  fsync: boolean;
  prealloc?: boolean;
}

export interface SalvageReport {
  /** The fresh ring, synced, with every valid record the damaged one held. */
  ring: RingFile;
  /** Records copied into it. */
  kept: number;
  /** Valid records found (some may not have fit). */
  found: number;
  unreadableBytes: number;
  /** Unacknowledged records that could not be copied; null when no header of the damaged file could be read. */
  lostRecords: number | null;
  lostBytes: number;
  /** The scan stopped part way through the damaged file with this error. */
  readError: Error | null;
}

/**
 * Copies every valid unacknowledged record of the damaged file into a fresh ring at `freshPath`,
 * streaming (a full 1 GiB file is not held in memory). The fresh ring has a new id in its own
 * header: its sequence numbers start again. The loss is measured against the newest readable
 * header of the damaged file: the records and bytes it says were unacknowledged (from `from`, or
 * its own head) less those copied.
 */
export async function salvageInto(
  damaged: QueueFile,
  freshPath: string,
  into: FreshRing,
  from?: { pos: number; seq: number },
): Promise<SalvageReport> {
  const dataBytes = Math.max(0, (await damaged.size().catch(() => 0)) - DATA_START);
  const said = await readNewestHeader(damaged);
  const minSeq = from?.seq ?? said?.headSeq ?? 0;
  const live = said
    ? { records: Math.max(0, said.tailSeq - minSeq), bytes: Math.max(0, said.tail - (from?.pos ?? said.head)) }
    : null;
  const ring = await RingFile.create(await into.openFile(freshPath, true), {
    capacity: into.capacity,
    fsync: into.fsync,
    ringId: randomUUID(),
  });
  let kept = 0;
  let found = 0;
  let unreadableBytes = 0;
  let liveKept = 0;
  let liveKeptBytes = 0;
  let readError: Error | null = null;
  try {
    const scan = await scanForSalvage(damaged, dataBytes, minSeq, undefined, from?.pos);
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
      if (ring.unwrittenBytes > WRITE_BEHIND_MAX) await ring.settled();
    }
  } catch (err) {
    // The damaged file could not be read through: keep what was copied; the loss says what was not.
    readError = err as Error;
  }
  await ring.sync();
  const lostRecords = live ? Math.max(0, live.records - liveKept) : null;
  const lostBytes = live ? (lostRecords === 0 ? 0 : Math.max(0, live.bytes - liveKeptBytes)) : unreadableBytes;
  return { ring, kept, found, unreadableBytes, lostRecords, lostBytes, readError };
}

/**
 * Copies the backlog of `old` (head to tail) into a new ring at `freshPath` of another size; the
 * new file gets a new id. Throws when it does not fit, or a QueueCorruptError when `old` cannot be
 * read through (the new file is removed either way).
 */
export async function copyBacklog(old: RingFile, freshPath: string, into: FreshRing): Promise<number> {
  const ring = await RingFile.create(await into.openFile(freshPath, true), {
    capacity: into.capacity,
    prealloc: into.prealloc === true,
    ringId: randomUUID(),
  });
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
    await rm(freshPath, { force: true });
    throw err;
  }
  await ring.close();
  return copied;
}
