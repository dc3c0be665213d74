import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { HighWaterMarks } from '../../src/sources/sluice/hwm-store.js';
import { scratchDir } from '../helpers/agent.js';

describe('HighWaterMarks', () => {
  it('raises marks (never lowers them), groups concurrent commits, and a new store reads them back', async () => {
    const dir = scratchDir();
    const damaged: string[] = [];
    const marks = new HighWaterMarks(dir, 'agents', (r) => damaged.push(r));
    expect(marks.get('h1/a')).toBe(-1);
    await Promise.all([
      marks.commit('h1/a', 10),
      marks.commit('h1/a', 4), // late and lower: the mark stays at 10
      marks.commit('h2/b', 99),
    ]);
    expect(marks.get('h1/a')).toBe(10);
    await marks.close();
    const again = new HighWaterMarks(dir, 'agents', (r) => damaged.push(r));
    expect([again.get('h1/a'), again.get('h2/b'), again.get('h3/c')]).toEqual([10, 99, -1]);
    expect(damaged).toEqual([]);
  });

  it('reports a damaged file and starts with no marks (batches may then be taken twice, never lost)', () => {
    const dir = scratchDir();
    const marks = new HighWaterMarks(dir, 'agents', () => undefined);
    writeFileSync(marks.file, '{"version":1,"senders":{"h1/a":');
    const damaged: string[] = [];
    const again = new HighWaterMarks(dir, 'agents', (r) => damaged.push(r));
    expect(damaged).toHaveLength(1);
    expect(again.get('h1/a')).toBe(-1);
  });

  it('rejects the commits of a write that fails, so no ack is sent for them, and writes again later', async () => {
    const dir = scratchDir();
    const marks = new HighWaterMarks(dir, 'agents', () => undefined);
    // A non-empty directory where the file goes: the rename fails, for root too.
    mkdirSync(path.join(marks.file, 'x'), { recursive: true });
    await expect(marks.commit('h1/a', 1)).rejects.toThrow(/EISDIR|ENOTEMPTY|EEXIST/);
    rmSync(marks.file, { recursive: true });
    await expect(marks.commit('h1/a', 2)).resolves.toBeUndefined();
    expect(JSON.parse(readFileSync(marks.file, 'utf8')).senders).toEqual({ 'h1/a': 2 });
  });
});
