import fc from 'fast-check';
import { describe, expect, it, onTestFinished } from 'vitest';
import { scratchDir } from '../../helpers/agent.js';
import { TestJournald } from '../../helpers/journald.js';
import { cursorPosition } from '../../../src/sources/journald/entry.js';
import type { JournalEntry } from '../../../src/sources/journald/export-format.js';
import { JournalFilesReader, JournalUnsupported } from '../../../src/sources/journald/journal-file.js';

async function journald(dir: string): Promise<TestJournald> {
  const j = new TestJournald(dir);
  onTestFinished(() => j.stop());
  await j.start();
  return j;
}

/** What journalctl adds to an entry's own fields, from the entry's header. */
const ADDRESS_FIELDS = ['__MONOTONIC_TIMESTAMP', '__SEQNUM', '__SEQNUM_ID'];

function readAll(j: TestJournald, cursor: string | null, max = 1 << 20): JournalEntry[] | null {
  const reader = JournalFilesReader.open([j.journal], cursor === null ? null : cursorPosition(cursor));
  if (!reader) return null;
  try {
    const out: JournalEntry[] = [];
    for (let batch = reader.read(1000, undefined, max); batch.length > 0; batch = reader.read(1000, undefined, max))
      out.push(...batch);
    return out;
  } finally {
    reader.close();
  }
}

/** An entry as comparable text: each field once, sorted, values as hex. */
const shape = (e: JournalEntry, drop: string[] = []) =>
  [...e.fields]
    .filter(([k]) => !drop.includes(k))
    .map(([k, v]) => `${k}=${v.toString('hex')}`)
    .sort()
    .join(' ');

describe('journal files read directly', () => {
  it('gives every entry, its fields and its cursor as journalctl does, across rotated files, from any cursor', async () => {
    const dir = scratchDir('sluice-journal-file-');
    const j = await journald(dir);
    const rng = fc.sample(fc.integer({ min: 0, max: 2 ** 31 - 1 }), { numRuns: 1, seed: 20261130 })[0]!;
    let state = rng;
    const next = () => {
      state = (state * 1103515245 + 12345) % 2 ** 31;
      return state;
    };
    // Three files (two rotations); fields shared by many entries (one data object each), binary
    // values, a field given twice, empty values.
    for (let file = 0; file < 3; file++) {
      const entries: [string, string | Buffer][][] = [];
      for (let i = 0; i < 400; i++) {
        const fields: [string, string | Buffer][] = [
          ['MESSAGE', `file ${file} entry ${i} ${'x'.repeat(next() % 200)}`],
          ['SYSLOG_IDENTIFIER', `app${next() % 3}`],
          ['PRIORITY', String(next() % 8)],
        ];
        if (i % 7 === 0) fields.push(['BINARY', Buffer.from([0, 1, 2, 0xff, 0x0a, i & 0xff])]);
        if (i % 11 === 0) fields.push(['TWICE', 'first'], ['TWICE', 'second']);
        if (i % 13 === 0) fields.push(['EMPTY', '']);
        entries.push(fields);
      }
      j.send(entries);
      if (file < 2) await j.rotate();
    }
    const want = j.export();
    const ours = (es: JournalEntry[]) => es.filter((e) => e.fields.get('MESSAGE')?.toString().startsWith('file '));
    expect(ours(want).length).toBe(1200); // and journald's own messages (started, rotated)
    const got = readAll(j, null)!;
    expect(got.map((e) => e.fields.get('__CURSOR')!.toString())).toEqual(
      want.map((e) => e.fields.get('__CURSOR')!.toString()),
    );
    for (let i = 0; i < want.length; i++) {
      // A field given twice: journalctl exports both, the export reader keeps the first, as this does.
      expect(shape(got[i]!), `entry ${i}`).toBe(shape(want[i]!, ADDRESS_FIELDS));
    }
    // From cursors at the edges of the files and in between: the entries after it, as journalctl gives them.
    const last = want.length - 1;
    for (const at of [0, 1, 399, 400, 401, 799, 800, 1000, last - 1, last]) {
      const cursor = want[at]!.fields.get('__CURSOR')!.toString();
      const after = readAll(j, cursor)!;
      expect(
        after.map((e) => e.fields.get('__CURSOR')!.toString()),
        `after entry ${at}`,
      ).toEqual(j.export(cursor).map((e) => e.fields.get('__CURSOR')!.toString()));
    }
  }, 60_000);

  it('says when the cursor is not in the files, and cuts a field longer than the size kept', async () => {
    const dir = scratchDir('sluice-journal-file-');
    const j = await journald(dir);
    j.send([[['MESSAGE', 'one']], [['MESSAGE', 'two']], [['MESSAGE', 'three 0123456789']]]);
    const want = j.export();
    const first = want.findIndex((e) => e.fields.get('MESSAGE')?.toString() === 'one');
    expect(want.length - first).toBe(3);
    const cursor = cursorPosition(want[first]!.fields.get('__CURSOR')!.toString())!;
    // The same sequence id, an entry that is not there (vacuumed, or not written yet): not in the files.
    expect(JournalFilesReader.open([j.journal], { ...cursor, seqnum: 0 })).toBeNull();
    expect(JournalFilesReader.open([j.journal], { ...cursor, seqnum: cursor.seqnum + 1000 })).toBeNull();
    // Another journal's cursor: journalctl decides what it means.
    expect(JournalFilesReader.open([j.journal], { ...cursor, seqnumId: '0'.repeat(32) })).toBeNull();
    expect(JournalFilesReader.open([j.journal], cursor)).not.toBeNull();
    const reader = JournalFilesReader.open([j.journal], null)!;
    const got = reader.read(10, new Set(['MESSAGE', '__CURSOR']), 5).slice(first);
    reader.close();
    expect(got.map((e) => e.fields.get('MESSAGE')!.toString())).toEqual(['one', 'two', 'three']);
    expect([...got[0]!.fields.keys()].sort()).toEqual(['MESSAGE', '__CURSOR', '__REALTIME_TIMESTAMP']);
    // journald's own messages are longer than 5 bytes too.
    expect(reader.oversized.n).toBe(first + 1);
  });

  it('leaves a compressed field to journalctl', async () => {
    const dir = scratchDir('sluice-journal-file-');
    const j = await journald(dir);
    // journald compresses a field of more than 512 bytes (its default threshold).
    j.send([[['MESSAGE', 'small']], [['MESSAGE', 'y'.repeat(4000)]]]);
    const want = j.export();
    const small = want.findIndex((e) => e.fields.get('MESSAGE')?.toString() === 'small');
    expect(want.length - small).toBe(2);
    const reader = JournalFilesReader.open([j.journal], null)!;
    try {
      expect(
        reader
          .read(small + 1, undefined, 1 << 20)
          [small]!.fields.get('MESSAGE')!
          .toString(),
      ).toBe('small');
      expect(() => reader.read(1, undefined, 1 << 20)).toThrow(JournalUnsupported);
    } finally {
      reader.close();
    }
  });
});
