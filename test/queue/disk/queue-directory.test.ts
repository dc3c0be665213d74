import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { QueueLockedError } from '../../../src/queue/disk/directory-lock.js';
import { QueueDirectory, readMetaSync } from '../../../src/queue/disk/queue-directory.js';
import { LOCK_FILE, QueueLayout } from '../../../src/queue/layout.js';
import { scratchDir } from '../../helpers/agent.js';

describe('QueueDirectory', () => {
  it('creates and locks the directory: a second opener is refused until the first lets go', async () => {
    const dir = path.join(scratchDir(), 'queues', 'out');
    const first = await QueueDirectory.open(dir);
    expect(statSync(dir).isDirectory()).toBe(true);
    expect(readFileSync(path.join(dir, LOCK_FILE), 'utf8').split('\n')[0]).toBe(String(process.pid));
    await expect(QueueDirectory.open(dir)).rejects.toBeInstanceOf(QueueLockedError);
    await first.release();
    const second = await QueueDirectory.open(dir);
    await second.release();
  });

  it('writes queue.json only when it changes, and reads the ring id back (empty without one)', async () => {
    const dir = scratchDir();
    const d = await QueueDirectory.open(dir);
    try {
      expect(await d.ringId()).toBe('');
      expect(readMetaSync(dir)).toBeNull();
      const meta = { destination: 'out', mode: 'reliable' as const, max_size: 1 << 20, ring_id: 'abc' };
      await d.writeMeta(meta);
      const ino = statSync(d.layout.meta).ino;
      await d.writeMeta(meta); // the same: not written again (an atomic write would replace the inode)
      expect(statSync(d.layout.meta).ino).toBe(ino);
      expect(readMetaSync(dir)).toEqual(meta);
      expect(await d.ringId()).toBe('abc');
      await d.writeMeta({ ...meta, ring_id: 'def' });
      expect(await d.ringId()).toBe('def');
    } finally {
      await d.release();
    }
  });

  it('puts a fresh ring in place, keeping the old one under the name given', async () => {
    const dir = scratchDir();
    const d = await QueueDirectory.open(dir);
    try {
      const layout = new QueueLayout(dir);
      writeFileSync(layout.ring, 'old ring');
      writeFileSync(layout.salvaging, 'fresh ring');
      const kept = QueueLayout.corrupted(layout.ring);
      await d.replaceRing(layout.salvaging, kept);
      expect(readFileSync(layout.ring, 'utf8')).toBe('fresh ring');
      expect(readFileSync(kept, 'utf8')).toBe('old ring');
      expect(existsSync(layout.salvaging)).toBe(false);
    } finally {
      await d.release();
    }
  });
});
