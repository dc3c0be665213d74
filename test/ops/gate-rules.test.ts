import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../../src/log.js';
import { LoadGate } from '../../src/ops/gate.js';

const err = (code: string) => Object.assign(new Error(`${code}: test`), { code });

describe('LoadGate rules', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());
  const sleep = async (ms: number) => {
    await vi.advanceTimersByTimeAsync(ms);
  };

  it('EIO and EROFS latch at the first failure', () => {
    for (const code of ['EIO', 'EROFS']) {
      const g = new LoadGate({ debounce: 60_000, quietWindow: 0 }, silentLogger());
      g.failed(err(code), 'queue q');
      expect(g.latched).toBe(true);
      expect(g.snapshot().reason).toMatch(new RegExp(`^${code} writing queue q`));
    }
  });

  it(
    'ENOSPC latches only when failures go on for the debounce window; a write that works ends the ' + 'streak',
    async () => {
      const g = new LoadGate({ debounce: 50, quietWindow: 0 }, silentLogger());
      g.failed(err('ENOSPC'), 'queue q');
      expect(g.latched).toBe(false);
      await sleep(60);
      g.ok(); // the disk had room again
      g.failed(err('ENOSPC'), 'queue q');
      expect(g.latched).toBe(false);
      await sleep(60);
      g.failed(err('ENOSPC'), 'queue q');
      expect(g.latched).toBe(true);
      expect(g.snapshot()).toMatchObject({ latches: 1, writeFailures: 3 });
    },
  );

  it('opens after the quiet window, and waiters go on', async () => {
    const g = new LoadGate({ debounce: 0, quietWindow: 50 }, silentLogger());
    g.failed(err('EIO'), 'queue q');
    let opened = false;
    void g.waitOpen().then(() => (opened = true));
    await sleep(20);
    g.failed(err('EIO'), 'queue q'); // still failing: the quiet window starts again
    await sleep(40);
    expect(g.latched).toBe(true);
    await sleep(40);
    expect(g.latched).toBe(false);
    expect(opened).toBe(true);
    g.stop();
  });
});
