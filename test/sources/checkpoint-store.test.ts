import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { type FileCheckpoint, FileCheckpointStore } from '../../src/sources/file/checkpoint-store.js';
import { scratchDir } from '../helpers/agent.js';

const entry = (ino: string, offset: number): FileCheckpoint => ({
  path: `/var/log/${ino}.log`,
  dev: '2049',
  ino,
  fingerprint: 'abcd1234',
  fingerprint_bytes: 1024,
  offset,
});

describe('FileCheckpointStore', () => {
  it('writes what was set, and a new store reads it back; a missing file is an empty store', async () => {
    const dir = scratchDir();
    const store = new FileCheckpointStore(dir, 'app');
    const corrupt: string[] = [];
    store.load((r) => corrupt.push(r));
    expect(store.all()).toEqual([]);
    store.set(FileCheckpointStore.key('2049', '11'), entry('11', 100));
    store.set(FileCheckpointStore.key('2049', '12'), entry('12', 7));
    store.delete(FileCheckpointStore.key('2049', '12'));
    await store.flush();
    const again = new FileCheckpointStore(dir, 'app');
    again.load((r) => corrupt.push(r));
    expect(again.all()).toEqual([entry('11', 100)]);
    expect(again.get('2049:11')?.offset).toBe(100);
    expect(corrupt).toEqual([]);
    // Written atomically: no temp file is left beside it.
    expect(readdirSync(path.dirname(store.file))).toEqual(['app.json']);
  });

  it('does not write when nothing changed, and concurrent flushes leave the newest state', async () => {
    const dir = scratchDir();
    const store = new FileCheckpointStore(dir, 'app');
    store.load(() => undefined);
    store.set('2049:11', entry('11', 100));
    await store.flush();
    // A flush that wrote would replace the file (a rename): its inode would change.
    const ino = statSync(store.file).ino;
    store.set('2049:11', entry('11', 100)); // the same: not dirty
    await store.flush();
    expect(statSync(store.file).ino).toBe(ino);
    const flushes: Promise<void>[] = [];
    for (let i = 1; i <= 20; i++) {
      store.set('2049:11', entry('11', 100 + i));
      flushes.push(store.flush());
    }
    await Promise.all(flushes);
    const back = new FileCheckpointStore(dir, 'app');
    back.load(() => undefined);
    expect(back.get('2049:11')?.offset).toBe(120);
  });

  it('reports a damaged file, with the reason, and starts empty rather than from a wrong offset', () => {
    const dir = scratchDir();
    const cases: [string, RegExp][] = [
      ['{"version":1,"files":[{"dev":"1","ino":"2"', /JSON|Unexpected|Expected/],
      ['{"version":2,"files":[]}', /unknown layout/],
      ['{"version":1,"files":[{"dev":"1","ino":"2","offset":-0.5,"fingerprint":"x"}]}', /lacks/],
    ];
    for (const [text, reason] of cases) {
      const store = new FileCheckpointStore(dir, 'app');
      mkdirSync(path.dirname(store.file), { recursive: true });
      writeFileSync(store.file, text);
      const corrupt: string[] = [];
      store.load((r) => corrupt.push(r));
      expect(corrupt).toHaveLength(1);
      expect(corrupt[0]).toMatch(reason);
      expect(store.all()).toEqual([]);
    }
    expect(existsSync(path.join(dir, 'checkpoints'))).toBe(true);
  });
});
