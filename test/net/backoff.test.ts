import { describe, expect, it } from 'vitest';
import { ExponentialBackoff } from '../../src/net/backoff.js';

describe('ExponentialBackoff', () => {
  it('doubles the ceiling up to max, with full jitter below it', () => {
    const top = new ExponentialBackoff(100, 1000, () => 0.999999);
    expect([1, 2, 3, 4, 5, 6].map(() => top.next())).toEqual([100, 200, 400, 800, 1000, 1000]);
    const half = new ExponentialBackoff(100, 1000, () => 0.5);
    expect([1, 2, 3].map(() => half.next())).toEqual([50, 100, 200]);
  });

  it('never waits zero, so a dead peer cannot cause a tight loop', () => {
    const b = new ExponentialBackoff(200, 30_000, () => 0);
    for (let i = 0; i < 5; i++) expect(b.next()).toBeGreaterThanOrEqual(10);
  });

  it('spreads waits of many agents apart', () => {
    const b = new ExponentialBackoff(1000, 1000);
    const waits = new Set(Array.from({ length: 50 }, () => b.next()));
    expect(waits.size).toBeGreaterThan(25);
  });

  it('starts over after reset', () => {
    const b = new ExponentialBackoff(100, 10_000, () => 0.999999);
    b.next();
    b.next();
    b.reset();
    expect(b.next()).toBe(100);
  });
});
