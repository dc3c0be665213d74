import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { cursorPosition } from '../../../src/sources/journald/entry.js';
import {
  ExportFormatError,
  ExportReader,
  exportEntry,
  type JournalEntry,
} from '../../../src/sources/journald/export-format.js';

type Fields = [string, string | Buffer][];

const name = fc.stringMatching(/^[A-Z_][A-Z0-9_]{0,20}$/);
const text = fc.stringMatching(/^[ -~]{0,60}$/);
const bytes = fc.uint8Array({ maxLength: 80 }).map((a) => Buffer.from(a));
const entry = fc.uniqueArray(fc.tuple(name, fc.oneof(text, bytes)), {
  minLength: 1,
  maxLength: 8,
  selector: ([n]) => n,
}) as fc.Arbitrary<Fields>;

/** Feeds `stream` cut at `cuts` (offsets), returns what the reader made of it. */
function read(
  stream: Buffer,
  cuts: number[],
  max = 1 << 20,
  keep?: ReadonlySet<string>,
): { entries: JournalEntry[]; reader: ExportReader } {
  const reader = new ExportReader(max, keep);
  const entries: JournalEntry[] = [];
  let from = 0;
  for (const c of [...cuts.filter((c) => c > 0 && c < stream.length)].sort((a, b) => a - b)) {
    reader.push(stream.subarray(from, c), entries);
    from = c;
  }
  reader.push(stream.subarray(from), entries);
  return { entries, reader };
}

const asObject = (e: JournalEntry) => Object.fromEntries([...e.fields].map(([k, v]) => [k, v.toString('hex')]));
const want = (f: Fields) =>
  Object.fromEntries(f.map(([k, v]) => [k, (typeof v === 'string' ? Buffer.from(v) : v).toString('hex')]));

describe('journal export format reader', () => {
  it('reads every entry, text and binary fields byte for byte, however the stream is cut', () => {
    fc.assert(
      fc.property(
        fc.array(entry, { minLength: 1, maxLength: 6 }),
        fc.array(fc.nat(2000), { maxLength: 12 }),
        (es, cuts) => {
          const stream = Buffer.concat(es.map(exportEntry));
          const { entries, reader } = read(stream, cuts);
          expect(entries.map(asObject)).toEqual(es.map(want));
          expect(entries.reduce((n, e) => n + e.bytes, 0)).toBe(stream.length);
          expect(reader.pending).toBe(0);
        },
      ),
      { seed: 20261130, numRuns: 300 },
    );
  });

  // The names kept are compared as bytes with those in the stream, by length: names of the same
  // length that differ (in any byte) are read past, as are all others.
  it('keeps exactly the fields asked for, byte for byte, however the stream is cut', () => {
    fc.assert(
      fc.property(
        fc.array(entry, { minLength: 1, maxLength: 6 }),
        fc.array(fc.nat(2000), { maxLength: 12 }),
        fc.array(name, { maxLength: 6 }),
        fc.nat(),
        (es, cuts, others, pick) => {
          const names = [...new Set(es.flatMap((f) => f.map(([n]) => n)))];
          // Some of the names in the stream, names of their length one letter apart, and others.
          const kept = names.filter((_, i) => ((pick >> i) & 1) === 1);
          const near = kept
            .map((n) => `${n.slice(0, -1)}${n.endsWith('Q') ? 'R' : 'Q'}`)
            .filter((n) => !names.includes(n));
          const keep = new Set([...kept, ...near, ...others.filter((n) => !names.includes(n))]);
          const stream = Buffer.concat(es.map(exportEntry));
          const { entries, reader } = read(stream, cuts, 1 << 20, keep);
          const wanted = es.map((f) => want(f.filter(([n]) => keep.has(n)))).filter((o) => Object.keys(o).length > 0);
          expect(entries.map(asObject)).toEqual(wanted);
          expect(reader.pending).toBe(0);
        },
      ),
      { seed: 20261130, numRuns: 300 },
    );
  });

  it('cuts a field longer than the limit to the limit, counts it, and stays in step for the next entries', () => {
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.integer({ min: 33, max: 400 }),
        fc.array(fc.nat(900), { maxLength: 10 }),
        (binary, len, cuts) => {
          const big = binary ? Buffer.alloc(len, 0x0a) : 'x'.repeat(len);
          const es: Fields[] = [
            [['A', 'one']],
            [
              ['MESSAGE', big],
              ['B', 'after'],
            ],
            [['C', 'three']],
          ];
          const stream = Buffer.concat(es.map(exportEntry));
          const { entries, reader } = read(stream, cuts, 32);
          expect(entries).toHaveLength(3);
          expect(entries[1]!.fields.get('MESSAGE')!.length).toBe(32);
          expect(entries[1]!.fields.get('B')!.toString()).toBe('after');
          expect(entries[2]!.fields.get('C')!.toString()).toBe('three');
          expect(reader.oversizedFields).toBe(1);
          expect(reader.pending).toBeLessThanOrEqual(32 + 64);
        },
      ),
      { seed: 7, numRuns: 200 },
    );
  });

  it('refuses bytes that are not the format, with a message that says why', () => {
    expect(() => read(Buffer.from('lower=case\n\n'), [])).toThrow(ExportFormatError);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(3n);
    expect(() => read(Buffer.concat([Buffer.from('MESSAGE\n'), len, Buffer.from('abcX\n')]), [])).toThrow(
      /does not end with a newline/,
    );
    expect(() => read(Buffer.from('x'.repeat(600)), [])).toThrow(/no "="/);
  });

  it('keeps the first value of a field given twice', () => {
    const { entries } = read(Buffer.from('A=1\nA=2\n\n'), []);
    expect(entries[0]!.fields.get('A')!.toString()).toBe('1');
  });
});

describe('journal cursor positions', () => {
  it('reads the sequence id, sequence number and time of a cursor, in any order of its parts', () => {
    const c =
      's=747ccc0ba4cc4546bc1644b77b4b2ed5;i=1a3;b=00a3beda1ee0414ea690d0b8851ae0bc;m=cd30a3ff8;t=6617626e37182;x=e1';
    expect(cursorPosition(c)).toEqual({
      seqnumId: '747ccc0ba4cc4546bc1644b77b4b2ed5',
      seqnum: 0x1a3,
      realtime: 0x6617626e37182,
    });
    expect(cursorPosition('i=10;t=20;s=abc')).toEqual({ seqnumId: 'abc', seqnum: 16, realtime: 32 });
    expect(cursorPosition('i=10;t=20')).toBeNull();
    expect(cursorPosition('s=abc;i=zz')).toBeNull();
  });
});
