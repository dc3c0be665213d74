/**
 * A streaming reader of the systemd journal export format (`journalctl --output=export`, described
 * in systemd's "Journal Export Formats"): entries are runs of fields ended by an empty line; a field
 * is `NAME=value\n`, or, when the value may hold any bytes, `NAME\n` followed by the value's length
 * as a 64-bit little-endian number, the value, and `\n`. Values are kept as bytes: a binary MESSAGE
 * stays as it was logged.
 *
 * Pure: bytes in, entries out, in any cut of the stream into chunks.
 */

import type { CursorPosition } from './entry.js';

export interface JournalEntry {
  /**
   * Each field once, by name; a name given twice keeps its first value (journald allows repeats).
   * The values are views of the chunks pushed, not copies: a caller must not reuse a chunk's buffer
   * while it holds the entries made from it.
   */
  fields: Map<string, Buffer>;
  /** The bytes the entry took in the stream, for counting. */
  bytes: number;
  /** `__CURSOR` as a string, and its position, when the reader has them at hand (the files' reader). */
  cursor?: string;
  position?: CursorPosition;
}

export class ExportFormatError extends Error {}

/** Field names: upper-case letters, digits and underscores (journald's rule, with its `__` for address fields). */
function isNameBytes(b: Buffer, at: number, end: number): boolean {
  if (end <= at) return false;
  for (let i = at; i < end; i++) {
    const c = b[i]!;
    if (!((c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x5f)) return false;
  }
  return true;
}

export class ExportReader {
  private buf: Buffer = Buffer.alloc(0);
  private fields = new Map<string, Buffer>();
  private entryBytes = 0;
  /** Bytes of a value to skip (a field larger than `maxFieldSize`), and then its newline. */
  private skipping = 0;
  /** The rest of a text field larger than `maxFieldSize` is being skipped, to its newline. */
  private skipLine = false;
  /** Fields cut because they were larger than `maxFieldSize`, since the reader was made. */
  oversizedFields = 0;

  /**
   * @param maxFieldSize A binary value longer than this is skipped (and counted), not held: the
   * stream stays in step and memory stays bounded.
   */
  /**
   * The names kept, by length, as bytes: a name in the stream is compared in place with those of
   * its length and never made a string (the string returned is the kept one).
   */
  private readonly keepByLength: Map<number, { bytes: Buffer; name: string }[]> | undefined;

  constructor(
    private readonly maxFieldSize: number,
    /** Only these fields are kept (the others are read past, never copied); all when absent. */
    keep?: ReadonlySet<string>,
  ) {
    if (keep) {
      this.keepByLength = new Map();
      for (const name of keep) {
        const list = this.keepByLength.get(name.length) ?? [];
        list.push({ bytes: Buffer.from(name, 'latin1'), name });
        this.keepByLength.set(name.length, list);
      }
    }
  }

  /**
   * The name in `b` from `at` to `end`, when its field is to be kept (null when it is to be read
   * past); throws when the bytes are not a field name.
   */
  private name(b: Buffer, at: number, end: number): string | null {
    if (this.keepByLength !== undefined) {
      const candidates = this.keepByLength.get(end - at);
      if (candidates !== undefined) {
        for (const c of candidates) {
          const k = c.bytes;
          let i = 0;
          while (i < k.length && b[at + i] === k[i]) i++;
          if (i === k.length) return this.fields.has(c.name) ? null : c.name;
        }
      }
      // Read past: only its first byte is checked (checking every byte cost a tenth of the reading,
      // and a stream out of step shows at once in the next field or entry anyway).
      if (end <= at || !isNameBytes(b, at, at + 1))
        throw new ExportFormatError(
          `not a field name: ${JSON.stringify(b.toString('latin1', at, Math.min(end, at + 64)))}`,
        );
      return null;
    }
    const name = b.toString('latin1', at, end);
    if (!isNameBytes(b, at, end)) throw new ExportFormatError(`not a field name: ${JSON.stringify(name.slice(0, 64))}`);
    return this.fields.has(name) ? null : name;
  }

  /** Bytes held waiting for the rest of a field. */
  get pending(): number {
    return this.buf.length;
  }

  /** Reads `chunk`; every entry it completes is pushed to `out`. Throws ExportFormatError on bytes that are not the format. */
  push(chunk: Buffer, out: JournalEntry[]): void {
    const b = this.buf.length > 0 ? Buffer.concat([this.buf, chunk]) : chunk;
    let at = 0;
    for (;;) {
      if (this.skipping > 0) {
        const n = Math.min(this.skipping, b.length - at);
        at += n;
        this.entryBytes += n;
        this.skipping -= n;
        if (this.skipping > 0) break;
        this.skipping = -1; // now its newline
      }
      if (this.skipping === -1) {
        if (at >= b.length) break;
        if (b[at] !== 0x0a) throw new ExportFormatError('a binary field does not end with a newline');
        at++;
        this.entryBytes++;
        this.skipping = 0;
      }
      if (this.skipLine) {
        const end = b.indexOf(0x0a, at);
        this.entryBytes += (end < 0 ? b.length : end + 1) - at;
        if (end < 0) {
          at = b.length;
          break;
        }
        at = end + 1;
        this.skipLine = false;
        continue;
      }
      if (at >= b.length) break;
      const nl = b.indexOf(0x0a, at);
      if (nl < 0) {
        // A text field longer than the limit: keep its start, skip the rest of its line.
        const eq = b.indexOf(0x3d, at);
        if (eq >= 0 && b.length - (eq + 1) > this.maxFieldSize) {
          const name = this.name(b, at, eq);
          if (name !== null) {
            this.oversizedFields++;
            this.fields.set(name, b.subarray(eq + 1, eq + 1 + this.maxFieldSize));
          }
          this.entryBytes += b.length - at;
          at = b.length;
          this.skipLine = true;
        } else if (eq < 0 && b.length - at > 512) {
          throw new ExportFormatError('a line of more than 512 bytes with no "=" is not a field name');
        }
        break;
      }
      if (nl === at) {
        // The empty line: the entry ends.
        at++;
        this.entryBytes++;
        if (this.fields.size > 0) out.push({ fields: this.fields, bytes: this.entryBytes });
        this.fields = new Map();
        this.entryBytes = 0;
        continue;
      }
      const eq = b.indexOf(0x3d, at);
      if (eq >= 0 && eq < nl) {
        const name = this.name(b, at, eq);
        if (name !== null) {
          let end = nl;
          if (nl - (eq + 1) > this.maxFieldSize) {
            this.oversizedFields++;
            end = eq + 1 + this.maxFieldSize;
          }
          this.fields.set(name, b.subarray(eq + 1, end));
        }
        this.entryBytes += nl + 1 - at;
        at = nl + 1;
        continue;
      }
      // NAME\n, then a 64-bit length, the value and a newline.
      if (b.length - (nl + 1) < 8) break;
      const name = this.name(b, at, nl);
      const length = b.readBigUInt64LE(nl + 1);
      if (length > BigInt(Number.MAX_SAFE_INTEGER)) throw new ExportFormatError(`field ${name} claims ${length} bytes`);
      const n = Number(length);
      const valueAt = nl + 9;
      if (n > this.maxFieldSize) {
        // Kept cut to the limit, so that the entry is still delivered and the cut can be counted.
        if (b.length - valueAt < this.maxFieldSize) break;
        if (name !== null) {
          this.oversizedFields++;
          this.fields.set(name, b.subarray(valueAt, valueAt + this.maxFieldSize));
        }
        this.entryBytes += valueAt - at + this.maxFieldSize;
        at = valueAt + this.maxFieldSize;
        this.skipping = n - this.maxFieldSize;
        if (this.skipping === 0) this.skipping = -1;
        continue;
      }
      if (b.length - valueAt < n + 1) break;
      if (b[valueAt + n] !== 0x0a) throw new ExportFormatError(`binary field ${name} does not end with a newline`);
      if (name !== null) this.fields.set(name, b.subarray(valueAt, valueAt + n));
      this.entryBytes += valueAt + n + 1 - at;
      at = valueAt + n + 1;
    }
    this.buf = at >= b.length ? Buffer.alloc(0) : Buffer.from(b.subarray(at));
  }
}

/** Writes one entry in the export format (for tests and tools): text fields as text, others with a length. */
export function exportEntry(fields: [string, string | Buffer][]): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of fields) {
    const v = typeof value === 'string' ? Buffer.from(value) : value;
    if (v.includes(0x0a) || typeof value !== 'string') {
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(v.length));
      parts.push(Buffer.from(`${name}\n`), len, v, Buffer.from('\n'));
    } else {
      parts.push(Buffer.from(`${name}=`), v, Buffer.from('\n'));
    }
  }
  parts.push(Buffer.from('\n'));
  return Buffer.concat(parts);
}
