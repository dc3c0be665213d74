import { closeSync, fstatSync, openSync, readdirSync, readSync } from 'node:fs';
import path from 'node:path';
import type { JournalEntry } from './export-format.js';

/**
 * A reader of systemd journal files, as systemd's "Journal File Format" describes them: a header,
 * then objects (entries, the data objects an entry's fields are, and the entry arrays that list the
 * entries in order), all little-endian and 8-byte aligned. It reads what a journal holds at the
 * moment it is opened, in order, without journalctl; the journald source uses it to catch up on
 * history, and journalctl to follow what comes after.
 *
 * Read only: what a file does not allow reading safely here is a JournalUnsupported error, and the
 * caller leaves that file to journalctl: a compressed data object (Node 20 has no XZ, LZ4 or zstd),
 * an incompatible flag it does not know, a file not written to the end (journald's `state` online
 * is fine: the header's counts are taken once, and what they count is written before them).
 */

export class JournalUnsupported extends Error {}

const SIGNATURE = Buffer.from('LPKSHHRH');
/** Header incompatible flags (systemd's HEADER_INCOMPATIBLE_*). */
const INCOMPATIBLE_COMPRESSED = 1 | 2 | 8; // XZ, LZ4, ZSTD: objects may be compressed
const INCOMPATIBLE_KEYED_HASH = 4;
const INCOMPATIBLE_COMPACT = 16;
const INCOMPATIBLE_KNOWN = INCOMPATIBLE_COMPRESSED | INCOMPATIBLE_KEYED_HASH | INCOMPATIBLE_COMPACT;
/** Object types. */
const OBJECT_DATA = 1;
const OBJECT_ENTRY = 3;
const OBJECT_ENTRY_ARRAY = 6;
/** Object flags: the payload is compressed. */
const OBJECT_COMPRESSED = 1 | 2 | 4;
const OBJECT_HEADER = 16;
/** An entry: object header, seqnum, realtime, monotonic, boot id (16), xor hash; then its items. */
const ENTRY_HEADER = OBJECT_HEADER + 8 + 8 + 8 + 16 + 8;

const PAGE = 256 * 1024;
const MAX_PAGES = 32;

/** One entry's place in the file and in the journal. */
export interface FileEntry {
  offset: number;
  seqnum: number;
  realtime: number;
}

const hex = (b: Buffer, at: number) => b.toString('hex', at, at + 16);

/** A field of a data object: its value cut to the size kept, and the length it had. */
interface DataField {
  name: string;
  value: Buffer;
  length: number;
}

export class JournalFile {
  readonly seqnumId: string;
  /** Entries at open: those read (later ones are journalctl's to follow). */
  readonly nEntries: number;
  private readonly compact: boolean;
  private readonly fd: number;
  private readonly size: number;
  private readonly pages = new Map<number, Buffer>();
  /** The entry arrays: where each starts in the list of entries, its items' offset and count. */
  private readonly arrays: { first: number; at: number; count: number }[] = [];
  /** Data objects recently read, by offset: many entries share the same ones (`_HOSTNAME=`, `_PID=`). */
  private readonly dataCache = new Map<number, DataField>();

  private constructor(
    readonly path: string,
    fd: number,
  ) {
    this.fd = fd;
    this.size = fstatSync(fd).size;
    const h = this.read(0, Math.min(272, this.size));
    if (h.length < 208 || !h.subarray(0, 8).equals(SIGNATURE))
      throw new JournalUnsupported(`${path}: not a journal file`);
    const incompatible = h.readUInt32LE(12);
    if ((incompatible & ~INCOMPATIBLE_KNOWN) !== 0)
      throw new JournalUnsupported(`${path}: incompatible flags 0x${incompatible.toString(16)} not known here`);
    this.compact = (incompatible & INCOMPATIBLE_COMPACT) !== 0;
    this.seqnumId = hex(h, 72);
    const headerSize = Number(h.readBigUInt64LE(88));
    const arenaSize = Number(h.readBigUInt64LE(96));
    if (headerSize + arenaSize > this.size) throw new JournalUnsupported(`${path}: shorter than its header says`);
    this.nEntries = Number(h.readBigUInt64LE(152));
    let array = Number(h.readBigUInt64LE(176));
    const itemSize = this.compact ? 4 : 8;
    let first = 0;
    for (let n = 0; array !== 0 && first < this.nEntries && n < 64; n++) {
      const o = this.object(array, OBJECT_ENTRY_ARRAY);
      const count = Math.floor((o.size - OBJECT_HEADER - 8) / itemSize);
      this.arrays.push({ first, at: array + OBJECT_HEADER + 8, count });
      first += count;
      array = Number(o.head.readBigUInt64LE(OBJECT_HEADER));
    }
    if (first < this.nEntries)
      throw new JournalUnsupported(`${path}: its entry arrays list fewer entries than its header`);
  }

  /** Opens `path`; a JournalUnsupported error when it cannot be read here (see above). */
  static open(path: string): JournalFile {
    const fd = openSync(path, 'r');
    try {
      return new JournalFile(path, fd);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  close(): void {
    closeSync(this.fd);
    this.pages.clear();
    this.dataCache.clear();
  }

  /** The offset of entry `i` (0-based, in journal order). */
  entryOffset(i: number): number {
    let lo = 0;
    let hi = this.arrays.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.arrays[mid]!.first <= i) lo = mid;
      else hi = mid - 1;
    }
    const a = this.arrays[lo]!;
    const at = a.at + (i - a.first) * (this.compact ? 4 : 8);
    const b = this.read(at, this.compact ? 4 : 8);
    return this.compact ? b.readUInt32LE(0) : Number(b.readBigUInt64LE(0));
  }

  /** Entry `i`'s sequence number and time. */
  entryAt(i: number): FileEntry {
    const offset = this.entryOffset(i);
    const h = this.object(offset, OBJECT_ENTRY).head;
    return {
      offset,
      seqnum: Number(h.readBigUInt64LE(OBJECT_HEADER)),
      realtime: Number(h.readBigUInt64LE(OBJECT_HEADER + 8)),
    };
  }

  /**
   * The index of the first entry whose sequence number is above `seqnum` (entries of a file are
   * in sequence order).
   */
  indexAfter(seqnum: number): number {
    let lo = 0;
    let hi = this.nEntries;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.entryAt(mid).seqnum <= seqnum) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * Entry `i` as `journalctl --output=export` gives it: its fields (only `keep`, when given), with
   * `__CURSOR` and `__REALTIME_TIMESTAMP` as journalctl writes them; null when `match` leaves it
   * out. A kept field larger than `maxFieldSize` is cut to it and counted in `oversized`, as the
   * export reader does.
   */
  entry(i: number, o: ReadOptions, oversized: { n: number }): JournalEntry | null {
    const offset = this.entryOffset(i);
    const size = this.object(offset, OBJECT_ENTRY).size;
    // A copy: reading its fields may reuse the page it is in.
    const body = Buffer.from(this.read(offset, size));
    const fields = new Map<string, Buffer>();
    const groups = o.match;
    const hit = groups ? new Uint8Array(groups.length) : null;
    let matched = 0;
    let bytes = 0;
    let cut = 0;
    const itemSize = this.compact ? 4 : 16;
    for (let at = ENTRY_HEADER; at + itemSize <= size; at += itemSize) {
      const data = this.compact ? body.readUInt32LE(at) : Number(body.readBigUInt64LE(at));
      if (data === 0) continue;
      const f = this.data(data, o.maxFieldSize);
      bytes += f.name.length + 1 + f.length;
      if (groups)
        for (let g = 0; g < groups.length; g++) {
          const group = groups[g]!;
          if (hit![g] === 0 && group.field === f.name && f.length === f.value.length) {
            if (group.values.some((w) => w.equals(f.value))) {
              hit![g] = 1;
              matched++;
            }
          }
        }
      if (o.keep && !o.keep.has(f.name)) continue;
      // journald allows a name twice; the first value is kept, as the export reader does.
      if (fields.has(f.name)) continue;
      fields.set(f.name, f.value);
      if (f.length > f.value.length) cut++;
    }
    if (groups && matched < groups.length) return null;
    oversized.n += cut;
    const seqnum = body.readBigUInt64LE(OBJECT_HEADER);
    const realtime = body.readBigUInt64LE(OBJECT_HEADER + 8);
    const monotonic = body.readBigUInt64LE(OBJECT_HEADER + 16);
    const bootId = hex(body, OBJECT_HEADER + 24);
    const xor = body.readBigUInt64LE(OBJECT_HEADER + 40);
    const cursor =
      `s=${this.seqnumId};i=${seqnum.toString(16)};b=${bootId};m=${monotonic.toString(16)};` +
      `t=${realtime.toString(16)};x=${xor.toString(16)}`;
    fields.set('__CURSOR', Buffer.from(cursor));
    fields.set('__REALTIME_TIMESTAMP', Buffer.from(realtime.toString()));
    return { fields, bytes };
  }

  /** A data object's field, its value cut to `maxFieldSize`, from the cache or the file. */
  private data(offset: number, maxFieldSize: number): DataField {
    const cached = this.dataCache.get(offset);
    if (cached !== undefined) return cached;
    const o = this.object(offset, OBJECT_DATA);
    if ((o.flags & OBJECT_COMPRESSED) !== 0)
      throw new JournalUnsupported(`${this.path}: a compressed field at offset ${offset}`);
    // Data objects: hash, next hash, next field, entry, entry array, entries; compact files add two more.
    const payloadAt = OBJECT_HEADER + 48 + (this.compact ? 8 : 0);
    const payloadLength = o.size - payloadAt;
    // A copy (pages are reused), of the name and as much of the value as is kept.
    const payload = Buffer.from(this.read(offset + payloadAt, Math.min(payloadLength, maxFieldSize + 256)));
    const eq = payload.indexOf(0x3d);
    if (eq <= 0) throw new JournalUnsupported(`${this.path}: a field without a name at offset ${offset}`);
    const f: DataField = {
      name: payload.toString('latin1', 0, eq),
      value: payload.subarray(eq + 1, eq + 1 + maxFieldSize),
      length: payloadLength - eq - 1,
    };
    if (this.dataCache.size >= 4096) this.dataCache.delete(this.dataCache.keys().next().value as number);
    this.dataCache.set(offset, f);
    return f;
  }

  /** An object's header (and what follows it, up to 64 bytes), checked to be of `type`. */
  private object(offset: number, type: number): { flags: number; size: number; head: Buffer } {
    if (offset % 8 !== 0 || offset + OBJECT_HEADER > this.size)
      throw new JournalUnsupported(`${this.path}: an object offset ${offset} outside the file`);
    const head = this.read(offset, Math.min(64, this.size - offset));
    const size = Number(head.readBigUInt64LE(8));
    if (head[0] !== type || size < OBJECT_HEADER || offset + size > this.size)
      throw new JournalUnsupported(`${this.path}: no object of type ${type} at offset ${offset}`);
    return { flags: head[1]!, size, head };
  }

  /** `length` bytes at `offset`, through a cache of pages; a view valid until the next read. */
  private read(offset: number, length: number): Buffer {
    const first = Math.floor(offset / PAGE);
    const last = Math.floor((offset + length - 1) / PAGE);
    if (first === last) {
      const p = this.page(first);
      return p.subarray(offset - first * PAGE, offset - first * PAGE + length);
    }
    const out = Buffer.allocUnsafe(length);
    let done = 0;
    for (let n = first; n <= last; n++) {
      const p = this.page(n);
      const from = Math.max(offset, n * PAGE) - n * PAGE;
      const to = Math.min(offset + length, (n + 1) * PAGE) - n * PAGE;
      done += p.copy(out, done, from, to);
    }
    return out.subarray(0, done);
  }

  private page(n: number): Buffer {
    const p = this.pages.get(n);
    if (p) {
      // Most recently used last.
      this.pages.delete(n);
      this.pages.set(n, p);
      return p;
    }
    const buf = this.pages.size >= MAX_PAGES ? this.evict() : Buffer.allocUnsafe(PAGE);
    const got = readSync(this.fd, buf, 0, PAGE, n * PAGE);
    const page = buf.subarray(0, got);
    this.pages.set(n, page);
    return page;
  }

  private evict(): Buffer {
    const oldest = this.pages.keys().next().value as number;
    const b = this.pages.get(oldest)!;
    this.pages.delete(oldest);
    return Buffer.from(b.buffer, b.byteOffset, PAGE);
  }
}

/** What of the entries is read. */
export interface ReadOptions {
  /** Only these fields are kept; all without. */
  keep?: ReadonlySet<string>;
  /** A longer field is cut to this. */
  maxFieldSize: number;
  /** Only entries that every group matches (see MatchGroup). */
  match?: readonly MatchGroup[];
}

/** A field of the entry is `field`, with one of `values`. */
export interface MatchGroup {
  field: string;
  values: readonly Buffer[];
}

/** A file's next entry to read, with what orders it among the other files'. */
interface Head {
  file: JournalFile;
  next: number;
  seqnum: number;
  realtime: number;
}

/**
 * The journal files of some directories read together, in journal order (by sequence number within
 * one sequence id, else by time, as journalctl interleaves them), from the entry after a cursor.
 */
export class JournalFilesReader {
  private readonly heads: Head[];
  /** Fields cut to the size kept, since the reader was made. */
  readonly oversized = { n: 0 };
  private error: Error | null = null;

  private constructor(heads: Head[]) {
    this.heads = heads.filter((h) => this.load(h));
  }

  /**
   * The files of `dirs`, each from its first entry after `after`; null when `after` is given and
   * no file holds its entry (vacuumed, or another journal's: journalctl says which). A
   * JournalUnsupported error when a file cannot be read here.
   */
  static open(
    dirs: readonly string[],
    after: { seqnumId: string; seqnum: number; realtime: number } | null,
  ): JournalFilesReader | null {
    const files: JournalFile[] = [];
    try {
      for (const path of journalFilesOf(dirs)) files.push(JournalFile.open(path));
      let found = after === null;
      const heads = files.map((file): Head => {
        let next = 0;
        if (after && file.seqnumId === after.seqnumId) {
          next = file.indexAfter(after.seqnum);
          if (next > 0 && file.entryAt(next - 1).seqnum === after.seqnum) found = true;
        } else if (after) {
          next = file.nEntries;
          while (next > 0 && file.entryAt(next - 1).realtime > after.realtime) next--;
        }
        return { file, next, seqnum: 0, realtime: 0 };
      });
      if (!found) {
        for (const f of files) f.close();
        return null;
      }
      return new JournalFilesReader(heads);
    } catch (err) {
      for (const f of files) f.close();
      throw err;
    }
  }

  /** Every file is read to where it was when opened. */
  get done(): boolean {
    return this.heads.length === 0;
  }

  /**
   * Up to `max` entries (that `o.match` selects), in order, of at most `4 * max` looked at: fewer,
   * or none, does not mean the end (see `done`). An entry that cannot be read ends the batch
   * before it; the next call throws the error.
   */
  read(max: number, o: ReadOptions): JournalEntry[] {
    if (this.error) throw this.error;
    const out: JournalEntry[] = [];
    for (let looked = 0; out.length < max && looked < 4 * max && this.heads.length > 0; looked++) {
      let best = 0;
      for (let i = 1; i < this.heads.length; i++) if (before(this.heads[i]!, this.heads[best]!)) best = i;
      const h = this.heads[best]!;
      try {
        const e = h.file.entry(h.next, o, this.oversized);
        if (e) out.push(e);
      } catch (err) {
        if (out.length === 0) throw err;
        this.error = err as Error;
        return out;
      }
      h.next++;
      if (!this.load(h)) {
        h.file.close();
        this.heads.splice(best, 1);
      }
    }
    return out;
  }

  close(): void {
    for (const h of this.heads.splice(0)) h.file.close();
  }

  /** Reads the head's next entry's place; false when the file has no more. */
  private load(h: Head): boolean {
    if (h.next >= h.file.nEntries) return false;
    const e = h.file.entryAt(h.next);
    h.seqnum = e.seqnum;
    h.realtime = e.realtime;
    return true;
  }
}

function before(a: Head, b: Head): boolean {
  if (a.file.seqnumId === b.file.seqnumId && a.seqnum !== b.seqnum) return a.seqnum < b.seqnum;
  return a.realtime < b.realtime;
}

/** The journal files (`*.journal`, and `*.journal~` as journald leaves them) in `dirs`, and in their machine-id subdirectories. */
export function journalFilesOf(dirs: readonly string[]): string[] {
  const out: string[] = [];
  const scan = (dir: string, depth: number) => {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const n of names.sort()) {
      if (n.endsWith('.journal') || n.endsWith('.journal~')) out.push(path.join(dir, n));
      else if (depth === 0 && /^[0-9a-f]{32}$/.test(n)) scan(path.join(dir, n), 1);
    }
  };
  for (const d of dirs) scan(d, 0);
  return out;
}
