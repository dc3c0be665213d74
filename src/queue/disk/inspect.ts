import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { LogRecord } from '../../record.js';
import { SourceCounters } from '../../stats.js';
import { lockHolder } from './directory-lock.js';
import { openFsQueueFile, type QueueFile } from './queue-file.js';
import { encodeRecord, RecordDecoder } from '../../protocol/record-codec.js';
import { QUEUE_FILE, QueueLayout, queuesRoot } from '../layout.js';
import { readMetaSync } from './queue-directory.js';
import { DATA_START, QueueCorruptError, RingFile, WRITE_BEHIND_MAX } from './ring-file.js';
import { scanForSalvage } from './salvage.js';

/** Offline views of queue files, for `sluice queue ...` and `sluice check`. Nothing here writes to a queue it reads. */

export interface QueueFileInfo {
  file: string;
  /** From queue.json beside the file; null when it is missing. */
  destination: string | null;
  mode: 'normal' | 'reliable' | null;
  fileBytes: number;
  capacity: number;
  /** Why the file would be rotated at the next start; null when it is sound. */
  corrupt: string | null;
  head: number;
  headSeq: number;
  tail: number;
  tailSeq: number;
  /** Unacknowledged records, including those a start would recover past the header's tail. */
  records: number;
  bytes: number;
  /** Records written after the last header and found by the recovery scan. */
  recoveredRecords: number;
  /** A torn last write that the next start will discard. */
  tornRecords: number;
  oldestReceivedAt: number | null;
  newestReceivedAt: number | null;
  /** Records a normal queue saved from memory at its last clean shutdown (`memory.sq`). */
  memoryRecords: number;
  /** PID of the process holding the queue's lock, when it is alive. */
  lockedBy: number | null;
}

/** `FILE` may be the queue file itself or its directory. */
export function queueFilePath(fileOrDir: string): string {
  return existsSync(fileOrDir) && statSync(fileOrDir).isDirectory() ? new QueueLayout(fileOrDir).ring : fileOrDir;
}

const decoder = new RecordDecoder(new SourceCounters());

async function openReadOnly(file: string): Promise<{
  qf: QueueFile;
  ring: RingFile | null;
  corrupt: string | null;
  report: { recoveredRecords: number; tornRecords: number };
}> {
  const qf = await openFsQueueFile(file, false);
  const capacity = Math.max(0, (await qf.size()) - DATA_START);
  try {
    const { ring, report } = await RingFile.open(qf, { capacity, readOnly: true });
    return { qf, ring, corrupt: null, report };
  } catch (err) {
    if (!(err instanceof QueueCorruptError)) {
      await qf.close();
      throw err;
    }
    return { qf, ring: null, corrupt: err.reason, report: { recoveredRecords: 0, tornRecords: 0 } };
  }
}

/**
 * Every unacknowledged record, oldest first. A damaged file yields what salvage would keep, and
 * `onCorrupt` is told why.
 */
export async function* unackedRecords(
  file: string,
  onCorrupt?: (reason: string) => void,
): AsyncGenerator<{ seq: number; record: LogRecord }> {
  const { qf, ring, corrupt } = await openReadOnly(file);
  try {
    // What a salvage scan covers: the whole data region, or past the damage when the header is usable.
    let capacity: number;
    let minSeq = 0;
    if (ring) {
      let pos = ring.head;
      let seq = ring.headSeq;
      try {
        while (pos < ring.syncedTail) {
          const recs = await ring.read(pos, seq, 4 << 20);
          if (recs.length === 0) break;
          for (const r of recs) yield { seq: r.seq, record: decoder.decode(Buffer.from(r.payload)) };
          pos = recs[recs.length - 1]!.end;
          seq = recs[recs.length - 1]!.seq + 1;
        }
        return;
      } catch (err) {
        if (!(err instanceof QueueCorruptError)) throw err;
        onCorrupt?.(err.reason);
        capacity = ring.capacity;
        minSeq = seq;
      }
    } else {
      onCorrupt?.(corrupt!);
      capacity = Math.max(0, (await qf.size()) - DATA_START);
    }
    for await (const batch of (await scanForSalvage(qf, capacity, minSeq)).batches()) {
      for (const r of batch) yield { seq: r.seq, record: decoder.decode(Buffer.from(r.payload)) };
    }
  } finally {
    await qf.close();
  }
}

/**
 * Reads a queue file without changing it: heads, counts, times, damage. Never throws on content.
 * `quick` reads only the header and the recovery scan, not every record of the backlog.
 */
export async function inspectQueueFile(fileOrDir: string, quick = false): Promise<QueueFileInfo> {
  const file = queueFilePath(fileOrDir);
  const dir = path.dirname(file);
  const meta = readMetaSync(dir);
  const fileBytes = statSync(file).size;
  const info: QueueFileInfo = {
    file,
    destination: meta?.destination ?? null,
    mode: meta?.mode ?? null,
    fileBytes,
    capacity: Math.max(0, fileBytes - DATA_START),
    corrupt: null,
    head: 0,
    headSeq: 0,
    tail: 0,
    tailSeq: 0,
    records: 0,
    bytes: 0,
    recoveredRecords: 0,
    tornRecords: 0,
    oldestReceivedAt: null,
    newestReceivedAt: null,
    memoryRecords: await countMemoryRecords(new QueueLayout(dir).memory),
    lockedBy: lockHolder(dir),
  };
  const { qf, ring, corrupt, report } = await openReadOnly(file);
  await qf.close();
  if (ring) {
    Object.assign(info, { head: ring.head, headSeq: ring.headSeq, tail: ring.tail, tailSeq: ring.tailSeq });
    info.records = ring.tailSeq - ring.headSeq;
    info.bytes = ring.tail - ring.head;
    info.recoveredRecords = report.recoveredRecords;
    info.tornRecords = report.tornRecords;
  }
  info.corrupt = corrupt;
  if (quick) return info;
  // Walk the live region: it checks every checksum, and gives the oldest and newest times.
  let count = 0;
  for await (const { record } of unackedRecords(file, (reason) => (info.corrupt ??= reason))) {
    if (count === 0) info.oldestReceivedAt = record.receivedAt;
    info.newestReceivedAt = record.receivedAt;
    count++;
  }
  if (info.corrupt) info.records = count; // what a salvage would keep
  return info;
}

async function countMemoryRecords(file: string): Promise<number> {
  if (!existsSync(file)) return 0;
  let n = 0;
  for await (const _ of unackedRecords(file)) n++;
  return n;
}

export interface QueueDirEntry {
  name: string;
  dir: string;
  info: QueueFileInfo | null;
  /** Other files in the directory worth knowing about (rotated corrupt files). */
  corruptedFiles: string[];
  error: string | null;
}

/** Every queue directory under `<stateDir>/queues/`. */
export async function listQueueDirs(stateDir: string, quick = false): Promise<QueueDirEntry[]> {
  const root = queuesRoot(stateDir);
  if (!existsSync(root)) return [];
  const out: QueueDirEntry[] = [];
  for (const name of readdirSync(root).sort()) {
    const dir = path.join(root, name);
    if (!statSync(dir).isDirectory()) continue;
    const files = readdirSync(dir);
    const entry: QueueDirEntry = {
      name,
      dir,
      info: null,
      corruptedFiles: files.filter((f) => QueueLayout.isCorrupted(f)),
      error: null,
    };
    if (files.includes(QUEUE_FILE)) {
      try {
        entry.info = await inspectQueueFile(new QueueLayout(dir).ring, quick);
      } catch (err) {
        entry.error = (err as Error).message;
      }
    }
    out.push(entry);
  }
  return out;
}

/**
 * Copies every valid unacknowledged record of `file` into a fresh queue file in `intoDir` (which
 * must not hold one), leaving the original untouched. Returns what was kept and what was not.
 */
export async function salvageQueueFile(
  file: string,
  intoDir: string,
  maxSize?: number,
): Promise<{ records: number; into: string; corrupt: string | null }> {
  const target = new QueueLayout(intoDir).ring;
  if (existsSync(target)) throw new Error(`${target} exists; salvage into an empty directory`);
  await mkdir(intoDir, { recursive: true });
  let corrupt: string | null = null;
  // The records of the original fit in its own data region; a smaller max_size may not hold them.
  const capacity = maxSize ? maxSize - DATA_START : statSync(file).size - DATA_START + (1 << 16);
  const ring = await RingFile.create(await openFsQueueFile(target, true), { capacity });
  let records = 0;
  let payloads: Buffer[] = [];
  const flush = async () => {
    if (payloads.length > 0 && !ring.append(payloads))
      throw new Error(`salvaged records do not fit in ${capacity + DATA_START} bytes`);
    records += payloads.length;
    payloads = [];
    if (ring.unwrittenBytes > WRITE_BEHIND_MAX) await ring.settled();
  };
  try {
    for await (const { record } of unackedRecords(file, (reason) => (corrupt = reason))) {
      payloads.push(encodeRecord(record));
      if (payloads.length === 1000) await flush();
    }
    await flush();
  } finally {
    await ring.close();
  }
  return { records, into: target, corrupt };
}
