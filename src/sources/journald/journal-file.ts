import { closeSync, fstatSync, openSync, readdirSync, readSync } from 'node:fs';
import path from 'node:path';
import type { CursorPosition } from './entry.js';
import type { JournalEntry } from './export-format.js';

/**
 * A reader of systemd journal files, as systemd's "Journal File Format" describes them: a header,
 * then objects (entries, the data objects an entry's fields are, and the entry arrays that list the
 * entries in order), all little-endian and 8-byte aligned. It reads what a journal holds at the
 * moment it is opened, in order, without journalctl; the journald source uses it to catch up on
 * history, and journalctl to follow what comes after.
 *
 * Read only. What cannot be read safely here is a JournalUnsupported error, and the caller leaves
 * the rest to journalctl: a compressed data object (Node 20 has no XZ, LZ4 or zstd), an
 * incompatible flag it does not know, an object that is not where or what its reference says. A
 * file journald is writing (state online) is read as its header was when opened: journald writes
 * an entry, and links it into the entry arrays, before it counts it there.
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

/** One entry's place in the journal. */
export interface FileEntry {
  seqnum: number;
  realtime: number;
}

const hex = (b: Buffer, at: number) => b.toString('hex', at, at + 16);

/** A little-endian 64-bit number as a Number (offsets, sizes, times and sequence numbers fit in 53 bits). */
const u64 = (b: Buffer, at: number) => b.readUInt32LE(at) + b.readUInt32LE(at + 4) * 0x1_0000_0000;

const HEX2 = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));
const HEX1 = Array.from({ length: 256 }, (_, i) => i.toString(16));

/**
 * A little-endian 64-bit number in hexadecimal without leading zeros, as journalctl writes a
 * cursor's (by bytes: Number's toString(16) is several times slower).
 */
function hex64(b: Buffer, at: number): string {
  let i = at + 7;
  while (i > at && b[i] === 0) i--;
  let s = HEX1[b[i]!]!;
  while (--i >= at) s += HEX2[b[i]!]!;
  return s;
}

/** Data objects remembered, direct-mapped by offset. */
const DATA_SLOTS = 8192;

/**
 * A field of a data object: its value cut to the size kept (null when neither kept nor matched),
 * the length it had, whether it is kept, and the match groups that name it.
 */
interface DataField {
  name: string;
  value: Buffer | null;
  length: number;
  kept: boolean;
  groups: readonly number[];
}

const NO_GROUPS: readonly number[] = [];

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
  /**
   * Data objects recently read, by offset: many entries share the same ones (`_HOSTNAME=`,
   * `_PID=`). A field neither kept nor matched is remembered by its name only.
   */
  private readonly dataAt = new Float64Array(DATA_SLOTS).fill(-1);
  private readonly dataField: (DataField | undefined)[] = new Array(DATA_SLOTS);
  private cachedFor: ReadOptions | null = null;
  /** Which match groups an entry has met (reused: one entry at a time). */
  private hits = new Uint8Array(8);
  /** An entry's data object offsets (reused). */
  private items = new Float64Array(64);
  /** The page read last: most reads fall in the same one as the read before. */
  private lastPage = -1;
  private lastBuf: Buffer = Buffer.alloc(0);
  /** Where `view` put the bytes asked for: a page, or `scratch` for bytes across two pages. */
  private buf: Buffer = Buffer.alloc(0);
  private scratch = Buffer.alloc(4096);
  /** The flags of the object `objectSize` read last. */
  private objectFlags = 0;

  private constructor(
    readonly path: string,
    fd: number,
  ) {
    this.fd = fd;
    this.size = fstatSync(fd).size;
    if (this.size < 272) throw new JournalUnsupported(`${path}: not a journal file`);
    // The header and the chain of entry arrays are read without the page cache: a file opened and
    // not read yet (the others of a directory wait their turn) holds no pages of them.
    const h = this.readAt(0, 272);
    if (!h.subarray(0, 8).equals(SIGNATURE)) throw new JournalUnsupported(`${path}: not a journal file`);
    const incompatible = h.readUInt32LE(12);
    if ((incompatible & ~INCOMPATIBLE_KNOWN) !== 0)
      throw new JournalUnsupported(`${path}: incompatible flags 0x${incompatible.toString(16)} not known here`);
    this.compact = (incompatible & INCOMPATIBLE_COMPACT) !== 0;
    this.seqnumId = hex(h, 72);
    const headerSize = u64(h, 88);
    const arenaSize = u64(h, 96);
    if (headerSize + arenaSize > this.size) throw new JournalUnsupported(`${path}: shorter than its header says`);
    this.nEntries = u64(h, 152);
    let array = u64(h, 176);
    const itemSize = this.compact ? 4 : 8;
    let first = 0;
    while (array !== 0 && first < this.nEntries) {
      if (array % 8 !== 0 || array + OBJECT_HEADER + 8 > this.size)
        throw new JournalUnsupported(`${path}: an entry array offset ${array} outside the file`);
      const a = this.readAt(array, OBJECT_HEADER + 8);
      const size = u64(a, 8);
      if (a[0] !== OBJECT_ENTRY_ARRAY || size < OBJECT_HEADER + 8 || array + size > this.size)
        throw new JournalUnsupported(`${path}: no entry array at offset ${array}`);
      const count = Math.floor((size - OBJECT_HEADER - 8) / itemSize);
      this.arrays.push({ first, at: array + OBJECT_HEADER + 8, count });
      first += count;
      const next = u64(a, OBJECT_HEADER);
      // Each array is appended after the one before it: a link back would be a loop.
      if (next !== 0 && next <= array) throw new JournalUnsupported(`${path}: an entry array links back`);
      array = next;
    }
    if (first < this.nEntries)
      throw new JournalUnsupported(`${path}: its entry arrays list fewer entries than its header`);
  }

  /** `length` bytes at `offset`, read into a buffer of their own. */
  private readAt(offset: number, length: number): Buffer {
    const b = Buffer.alloc(length);
    const got = readSync(this.fd, b, 0, length, offset);
    if (got < length) throw new JournalUnsupported(`${this.path}: ends before offset ${offset + length}`);
    return b;
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
    this.lastPage = -1;
    this.dataAt.fill(-1);
    this.dataField.fill(undefined);
  }

  /** The offset of entry `i` (0-based, in journal order). */
  private entryOffset(i: number): number {
    let lo = 0;
    let hi = this.arrays.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.arrays[mid]!.first <= i) lo = mid;
      else hi = mid - 1;
    }
    const a = this.arrays[lo]!;
    // `view` first: it sets `buf`.
    const at = this.view(a.at + (i - a.first) * (this.compact ? 4 : 8), this.compact ? 4 : 8);
    return this.compact ? this.buf.readUInt32LE(at) : u64(this.buf, at);
  }

  /** Entry `i`'s sequence number and time. */
  entryAt(i: number): FileEntry {
    const offset = this.entryOffset(i);
    this.objectSize(offset, OBJECT_ENTRY);
    const at = this.view(offset + OBJECT_HEADER, 16);
    return { seqnum: u64(this.buf, at), realtime: u64(this.buf, at + 8) };
  }

  /**
   * The index of the first entry whose sequence number (or time) is above `value` (entries of a
   * file are in sequence order, and in time order but for a clock set back).
   */
  indexAfter(value: number, by: 'seqnum' | 'realtime' = 'seqnum'): number {
    let lo = 0;
    let hi = this.nEntries;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.entryAt(mid)[by] <= value) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Pages held in memory (each PAGE bytes at most). */
  get pagesHeld(): number {
    return this.pages.size;
  }

  /** Forgets the pages read so far. */
  dropPages(): void {
    this.pages.clear();
    this.lastPage = -1;
  }

  /**
   * Entry `i` as `journalctl --output=export` gives it: its fields (only `keep`, when given), with
   * `__CURSOR` and `__REALTIME_TIMESTAMP` as journalctl writes them; null when `match` leaves it
   * out. A kept field larger than `maxFieldSize` is cut to it and counted in `oversized`, as the
   * export reader does.
   */
  entry(i: number, o: ReadOptions, oversized: { n: number }): JournalEntry | null {
    const offset = this.entryOffset(i);
    const size = this.objectSize(offset, OBJECT_ENTRY);
    // What the entry's header says, and its items, taken before its fields are read (they move `buf`).
    let at = this.view(offset, size);
    const b = this.buf;
    const seqnum = u64(b, at + OBJECT_HEADER);
    const realtime = u64(b, at + OBJECT_HEADER + 8);
    // Seqnum, realtime, monotonic, boot id, xor hash: what a cursor is made of, when one is asked for.
    const header = Buffer.allocUnsafe(48);
    b.copy(header, 0, at + OBJECT_HEADER, at + OBJECT_HEADER + 48);
    const itemSize = this.compact ? 4 : 16;
    const n = Math.floor((size - ENTRY_HEADER) / itemSize);
    if (this.items.length < n) this.items = new Float64Array(n);
    const items = this.items;
    at += ENTRY_HEADER;
    for (let k = 0; k < n; k++, at += itemSize) items[k] = this.compact ? b.readUInt32LE(at) : u64(b, at);

    const groups = o.match;
    let hit: Uint8Array | null = null;
    if (groups) {
      if (this.hits.length < groups.length) this.hits = new Uint8Array(groups.length);
      hit = this.hits.fill(0, 0, groups.length);
    }
    let matched = 0;
    const fields = new Map<string, Buffer>();
    let bytes = 0;
    let cut = 0;
    for (let k = 0; k < n; k++) {
      const data = items[k]!;
      if (data === 0) continue;
      const f = this.data(data, o);
      bytes += f.name.length + 1 + f.length;
      const value = f.value;
      if (value === null) continue; // neither kept nor matched
      for (const g of f.groups) {
        if (hit![g] === 0 && f.length === value.length && groups![g]!.values.some((w) => w.equals(value))) {
          hit![g] = 1;
          matched++;
        }
      }
      if (!f.kept) continue;
      // journald allows a name twice; the first value is kept, as the export reader does.
      if (fields.has(f.name)) continue;
      fields.set(f.name, value);
      if (f.length > value.length) cut++;
    }
    if (groups && matched < groups.length) return null;
    oversized.n += cut;
    const e = new FileJournalEntry(fields, bytes, { seqnumId: this.seqnumId, seqnum, realtime }, header);
    if (!o.keep || o.keep.has('__CURSOR')) fields.set('__CURSOR', Buffer.from(e.cursor));
    if (!o.keep || o.keep.has('__REALTIME_TIMESTAMP'))
      fields.set('__REALTIME_TIMESTAMP', Buffer.from(String(realtime)));
    return e;
  }

  /**
   * A data object's field, from the cache or the file: its value cut to `maxFieldSize`, or null
   * when `keep` does not have it and no match names it (only its name is read then).
   */
  private data(offset: number, o: ReadOptions): DataField {
    if (o !== this.cachedFor) {
      // What a field keeps depends on the options.
      this.cachedFor = o;
      this.dataAt.fill(-1);
    }
    const slot = (offset / 8) % DATA_SLOTS;
    if (this.dataAt[slot] === offset) return this.dataField[slot]!;
    const size = this.objectSize(offset, OBJECT_DATA);
    if ((this.objectFlags & OBJECT_COMPRESSED) !== 0)
      throw new JournalUnsupported(`${this.path}: a compressed field at offset ${offset}`);
    // Data objects: hash, next hash, next field, entry, entry array, entries; compact files add two more.
    const payloadAt = offset + OBJECT_HEADER + 48 + (this.compact ? 8 : 0);
    const payloadLength = offset + size - payloadAt;
    // The name first (journald's are at most 64 bytes).
    const headLength = Math.min(payloadLength, 65);
    const at = this.view(payloadAt, headLength);
    let eq = at;
    while (eq < at + headLength && this.buf[eq] !== 0x3d) eq++;
    if (eq === at || eq === at + headLength)
      throw new JournalUnsupported(`${this.path}: a field without a name at offset ${offset}`);
    const name = this.buf.toString('latin1', at, eq);
    const valueAt = payloadAt + eq - at + 1;
    const length = offset + size - valueAt;
    let value: Buffer | null = null;
    const kept = !o.keep || o.keep.has(name);
    let groups = NO_GROUPS;
    if (o.match) for (let g = 0; g < o.match.length; g++) if (o.match[g]!.field === name) groups = [...groups, g];
    if (kept || groups.length > 0) {
      // A copy: pages are reused.
      const keep = Math.min(length, o.maxFieldSize);
      value = Buffer.allocUnsafe(keep);
      const from = this.view(valueAt, keep);
      this.buf.copy(value, 0, from, from + keep);
    }
    const f: DataField = { name, value, length, kept, groups };
    this.dataAt[slot] = offset;
    this.dataField[slot] = f;
    return f;
  }

  /** The size of the object at `offset`, checked to be of `type` (its flags in `objectFlags`). */
  private objectSize(offset: number, type: number): number {
    if (offset % 8 !== 0 || offset + OBJECT_HEADER > this.size)
      throw new JournalUnsupported(`${this.path}: an object offset ${offset} outside the file`);
    const at = this.view(offset, OBJECT_HEADER);
    const size = u64(this.buf, at + 8);
    if (this.buf[at] !== type || size < OBJECT_HEADER || offset + size > this.size)
      throw new JournalUnsupported(`${this.path}: no object of type ${type} at offset ${offset}`);
    this.objectFlags = this.buf[at + 1]!;
    return size;
  }

  /**
   * Makes `length` bytes at `offset` readable in `buf` and returns where they start there; valid
   * until the next call. Pages are cached; bytes across pages are copied into a scratch buffer.
   */
  private view(offset: number, length: number): number {
    const first = Math.floor(offset / PAGE);
    const last = Math.floor((offset + Math.max(1, length) - 1) / PAGE);
    if (first === last) {
      this.buf = this.page(first);
      return offset - first * PAGE;
    }
    if (this.scratch.length < length) this.scratch = Buffer.allocUnsafe(Math.max(length, 2 * this.scratch.length));
    const out = this.scratch;
    let done = 0;
    for (let n = first; n <= last; n++) {
      const p = this.page(n);
      const from = Math.max(offset, n * PAGE) - n * PAGE;
      const to = Math.min(offset + length, (n + 1) * PAGE) - n * PAGE;
      done += p.copy(out, done, from, to);
    }
    if (done < length) throw new JournalUnsupported(`${this.path}: ends before offset ${offset + length}`);
    this.buf = out;
    return 0;
  }

  private page(n: number): Buffer {
    if (n === this.lastPage) return this.lastBuf;
    const p = this.pageOf(n);
    this.lastPage = n;
    this.lastBuf = p;
    return p;
  }

  private pageOf(n: number): Buffer {
    // First in, first out: reading goes forward through the file.
    const p = this.pages.get(n);
    if (p) return p;
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

/** An entry of the files: its cursor is made when first asked for (a batch needs its last one only). */
class FileJournalEntry implements JournalEntry {
  private made: string | undefined;

  constructor(
    readonly fields: Map<string, Buffer>,
    readonly bytes: number,
    readonly position: CursorPosition,
    /** The entry header's seqnum, realtime, monotonic, boot id and xor hash. */
    private readonly header: Buffer,
  ) {}

  get cursor(): string {
    const h = this.header;
    this.made ??=
      `s=${this.position.seqnumId};i=${hex64(h, 0)};b=${hex(h, 24)};m=${hex64(h, 16)};t=${hex64(h, 8)};` +
      `x=${hex64(h, 40)}`;
    return this.made;
  }
}

/** What of the entries is read. */
export interface ReadOptions {
  /**
   * Only these fields are kept; all without. `__CURSOR` and `__REALTIME_TIMESTAMP` are fields only
   * when kept (an entry always has them as `cursor` and `position`).
   */
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
    this.heads = heads.filter((h) => {
      if (this.load(h)) return true;
      h.file.close(); // nothing to read in it
      return false;
    });
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
        const n = file.nEntries;
        if (after && n > 0 && file.seqnumId === after.seqnumId) {
          // Most files lie wholly before the cursor or wholly after it: their ends say so.
          const last = file.entryAt(n - 1).seqnum;
          if (after.seqnum >= last) next = n;
          else if (after.seqnum >= file.entryAt(0).seqnum) next = file.indexAfter(after.seqnum);
          if (next > 0 && file.entryAt(next - 1).seqnum === after.seqnum) found = true;
        } else if (after) {
          next = file.indexAfter(after.realtime, 'realtime');
        }
        // What positioning read is not needed again: a file waiting its turn holds no pages.
        file.dropPages();
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

  /** Pages the open files hold in memory. */
  get pagesHeld(): number {
    return this.heads.reduce((n, h) => n + h.file.pagesHeld, 0);
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
