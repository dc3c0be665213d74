import { describe, expect, it } from 'vitest';
import { OrderedCommits } from '../../src/sources/ordered-commits.js';

/** A commit settled by hand. */
function commit(): { p: Promise<void>; ok: () => void; fail: () => void } {
  let ok!: () => void;
  let fail!: () => void;
  const p = new Promise<void>((resolve, reject) => {
    ok = resolve;
    fail = () => reject(new Error('write failed'));
  });
  return { p, ok, fail };
}

const turns = () => new Promise((r) => setTimeout(r, 0));

describe('OrderedCommits', () => {
  it('moves the checkpoint over the leading committed batches only, in order', async () => {
    const c = new OrderedCommits<number>(-1, () => undefined);
    const [a, b, d] = [commit(), commit(), commit()];
    c.add(10, a.p);
    c.add(20, b.p);
    c.add(30, d.p);
    b.ok();
    await turns();
    expect(c.committed).toBe(-1); // 10 is not committed yet
    a.ok();
    await turns();
    expect(c.committed).toBe(20);
    c.add(40, undefined); // nothing to wait for: settled at once, but behind 30
    expect(c.committed).toBe(20);
    d.ok();
    await turns();
    expect(c.committed).toBe(40);
    expect(c.size).toBe(0);
  });

  it('a failed commit withdraws the batches handed on before it, forgets the rest, and reads again from the checkpoint', async () => {
    let failures = 0;
    const c = new OrderedCommits<number>(5, () => failures++);
    const before = c.withdrawn;
    const [a, b, d] = [commit(), commit(), commit()];
    c.add(10, a.p);
    c.add(20, b.p);
    c.add(30, d.p);
    d.ok();
    a.fail();
    await turns();
    expect(failures).toBe(1);
    expect(c.committed).toBe(5);
    // Handed on with the old signal (maybe still waiting to be queued): taken back.
    expect(before.aborted).toBe(true);
    // What is read again goes with a new one.
    expect(c.withdrawn.aborted).toBe(false);
    expect(c.size).toBe(0);
    // Commits of the forgotten batches settle into nothing.
    b.ok();
    await turns();
    expect(c.committed).toBe(5);
    expect(failures).toBe(1);
  });
});
