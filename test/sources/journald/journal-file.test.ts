import { spawnSync } from 'node:child_process';
import fc from 'fast-check';
import { describe, expect, it, onTestFinished } from 'vitest';
import { scratchDir } from '../../helpers/agent.js';
import { TestJournald } from '../../helpers/journald.js';
import { cursorPosition } from '../../../src/sources/journald/entry.js';
import { ExportReader, type JournalEntry } from '../../../src/sources/journald/export-format.js';
import {
  JournalFilesReader,
  JournalUnsupported,
  type ReadOptions,
} from '../../../src/sources/journald/journal-file.js';
import { selectionMatch } from '../../../src/sources/journald/journalctl.js';

async function journald(dir: string): Promise<TestJournald> {
  const j = new TestJournald(dir);
  onTestFinished(() => j.stop());
  await j.start();
  return j;
}

/** What journalctl adds to an entry's own fields, from the entry's header. */
const ADDRESS_FIELDS = ['__MONOTONIC_TIMESTAMP', '__SEQNUM', '__SEQNUM_ID'];

function readAll(j: TestJournald, cursor: string | null, options: ReadOptions = { maxFieldSize: 1 << 20 }) {
  const reader = JournalFilesReader.open([j.journal], cursor === null ? null : cursorPosition(cursor));
  if (!reader) return null;
  try {
    const out: JournalEntry[] = [];
    // Batches of 7: a batch of a selection may end early, or be empty, before the end.
    for (let n = 0; !reader.done && n < 100_000; n++) out.push(...reader.read(7, options));
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
    // Seeded: sizes, identifiers and priorities drawn independently of each other.
    const draws = fc.sample(fc.integer({ min: 0, max: 2 ** 31 - 1 }), { numRuns: 4000, seed: 20261130 });
    let drawn = 0;
    const next = () => draws[drawn++ % draws.length]!;
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
    // The position handed with each entry is its cursor's.
    for (const e of got) expect(e.position).toEqual(cursorPosition(e.cursor!));
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
    // Identifiers and raw matches select what journalctl selects with the same arguments: values of
    // one field are alternatives (whichever option named them), fields must all match.
    const selections = [
      { identifiers: ['app1'], matches: [] },
      { identifiers: ['app0', 'app2'], matches: ['PRIORITY=3', 'PRIORITY=5'] },
      { identifiers: ['app1'], matches: ['EMPTY='] },
      { identifiers: ['app1', 'app2'], matches: ['SYSLOG_IDENTIFIER=app2'] },
      { identifiers: [], matches: ['TWICE=second'] },
    ];
    for (const sel of selections) {
      const args = [...sel.identifiers.map((i) => `--identifier=${i}`), ...sel.matches];
      const r = spawnSync('journalctl', [`--directory=${j.journal}`, '--output=export', '--no-pager', ...args], {
        maxBuffer: 512 << 20,
      });
      const wantSel: JournalEntry[] = [];
      new ExportReader(1 << 20).push(r.stdout, wantSel);
      const match = selectionMatch({ units: [], ...sel });
      const gotSel = readAll(j, null, { maxFieldSize: 1 << 20, match })!;
      expect(wantSel.length, JSON.stringify(sel)).toBeGreaterThan(0);
      expect(
        gotSel.map((e) => e.fields.get('__CURSOR')!.toString()),
        JSON.stringify(sel),
      ).toEqual(wantSel.map((e) => e.fields.get('__CURSOR')!.toString()));
    }
  }, 60_000);

  it('holds, once opened from a cursor, no more pages of each file than its next entry needs', async () => {
    const dir = scratchDir('sluice-journal-file-');
    const j = await journald(dir);
    // Two files of about 1.5 MB (six pages of 256 KiB each), messages below journald's compression threshold.
    for (let file = 0; file < 2; file++) {
      j.send(Array.from({ length: 3000 }, (_, i) => [['MESSAGE', `f${file} e${i} ${'z'.repeat(400)}`]]));
      if (file === 0) await j.rotate();
    }
    const want = j.export();
    const at = want.findIndex((e) => e.fields.get('MESSAGE')?.toString().startsWith('f0 e1500 '));
    const reader = JournalFilesReader.open([j.journal], cursorPosition(want[at]!.fields.get('__CURSOR')!.toString()))!;
    try {
      // Finding the cursor's entry read pages all over the first file; they are let go.
      expect(reader.pagesHeld).toBeLessThanOrEqual(2 * 2);
      const next = reader.read(1, { maxFieldSize: 1 << 20 });
      expect(next[0]!.fields.get('MESSAGE')!.toString()).toMatch(/^f0 e1501 /);
    } finally {
      reader.close();
    }
  });

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
    const got = reader.read(10, { keep: new Set(['MESSAGE', '__CURSOR']), maxFieldSize: 5 }).slice(first);
    reader.close();
    expect(got.map((e) => e.fields.get('MESSAGE')!.toString())).toEqual(['one', 'two', 'three']);
    expect([...got[0]!.fields.keys()].sort()).toEqual(['MESSAGE', '__CURSOR']);
    expect(got[0]!.cursor).toBe(got[0]!.fields.get('__CURSOR')!.toString());
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
          .read(small + 1, { maxFieldSize: 1 << 20 })
          [small]!.fields.get('MESSAGE')!
          .toString(),
      ).toBe('small');
      expect(() => reader.read(1, { maxFieldSize: 1 << 20 })).toThrow(JournalUnsupported);
    } finally {
      reader.close();
    }
  });
});
