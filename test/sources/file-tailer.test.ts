import { appendFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Dispatch } from '../../src/pipeline/router.js';
import type { LogRecord } from '../../src/record.js';
import { FileTailer, statIdentity } from '../../src/sources/file/file-tailer.js';
import { seeded } from '../torture/harness.js';
import { removeDir, sleep, tempDir } from '../helpers/agent.js';
import { testOrigin } from '../helpers/records.js';

const origin = testOrigin({ source: 'app', from: 'app.log', format: 'text' });

/**
 * The tailer against a queue that fails, feeding an exactly-once receiver. Each hand-over may wait
 * a while before it is queued (a latched gate, a full queue), or be refused; queued batches are
 * made durable together by a sync, and a failed sync fails every batch queued and not yet durable
 * (as the reliable queue's group commit does). The receiver writes a line only if it comes after
 * the last one it wrote (as the exactly-once file destination does with stream positions).
 * Whatever the schedule, every line must reach the receiver, and the checkpoint (`committed`) must
 * at every moment cover only durable lines: a crash right then loses none.
 */
async function run(seed: number): Promise<void> {
  const rng = seeded(seed);
  const dir = tempDir('sluice-tailer-');
  const file = path.join(dir, 'app.log');
  let written = 0;
  const lineAt: number[] = []; // byte offset where each line ends
  let bytes = 0;
  const write = (n: number) => {
    let text = '';
    for (let i = 0; i < n; i++) {
      const l = `L${written++} ${'x'.repeat(rng.pick([0, 5, 100, rng.int(0, 3000)]))}\n`;
      text += l;
      bytes += l.length;
      lineAt.push(bytes);
    }
    appendFileSync(file, text);
  };
  writeFileSync(file, '');
  write(50);
  const durable = new Set<number>();
  const received = new Set<number>();
  let lastReceived = -1;
  const problems: string[] = [];
  let tailer: FileTailer | null = null;
  const check = () => {
    // Every line that ends at or before the checkpoint is durable.
    const c = tailer!.committed;
    for (let n = 0; n < lineAt.length && lineAt[n]! <= c; n++) {
      if (!durable.has(n)) {
        problems.push(`checkpoint ${c} covers line ${n}, which is not durable`);
        return;
      }
    }
  };
  // Batches queued and not yet durable, in the order they were queued.
  let unsynced: { lines: number[]; done: (ok: boolean) => void }[] = [];
  const sync = () => {
    const group = unsynced;
    unsynced = [];
    const ok = !rng.chance(0.2);
    for (const b of group) {
      if (ok) {
        for (const n of b.lines) {
          durable.add(n);
          if (n > lastReceived) {
            received.add(n);
            lastReceived = n;
          }
        }
      }
      b.done(ok);
    }
  };
  const deliver = (records: LogRecord[], withdrawn: AbortSignal): Dispatch => {
    const lines = records.map((r) => Number(/^L(\d+) /.exec(r.raw.toString())![1]));
    const refuse = rng.chance(0.1);
    let done!: (ok: boolean) => void;
    const outcome = new Promise<boolean>((r) => (done = r));
    const accepted = sleep(rng.chance(0.5) ? rng.int(1, 30) : 0).then(() => {
      if (withdrawn.aborted) return done(true); // taken back: never queued (the router resolves it)
      if (refuse) {
        done(false);
        throw new Error('refused');
      }
      unsynced.push({ lines, done });
    });
    const committed = outcome.then((ok) => {
      if (!ok) throw new Error('ENOSPC');
    });
    committed.catch(() => undefined);
    return { accepted, committed };
  };
  const syncer = setInterval(sync, 2);
  try {
    const id = (await statIdentity(file))!;
    tailer = await FileTailer.open(file, id, 'beginning', origin, {
      maxLineLength: 65536,
      flushTimeout: 1000,
      deliver,
      onTruncated: () => undefined,
    });
    const t = tailer!;
    const timer = setInterval(check, 1);
    const deadline = Date.now() + 20_000;
    for (let round = 0; round < 400 && Date.now() < deadline; round++) {
      if (round < 150 && rng.chance(0.5)) write(rng.int(1, 40));
      await t.read().catch(() => undefined); // a refused batch fails the read: the next one starts again
      check();
      if (round >= 150 && durable.size === written && (await t.atEnd())) break;
      await sleep(rng.int(0, 3));
    }
    clearInterval(timer);
    check();
    const missing = Array.from({ length: written }, (_, n) => n).filter((n) => !received.has(n));
    expect(problems.slice(0, 3), `seed ${seed}`).toEqual([]);
    expect(
      missing.slice(0, 10),
      `seed ${seed}: ${missing.length} of ${written} lines never reached the receiver`,
    ).toEqual([]);
    expect(t.committed, `seed ${seed}`).toBe(bytes);
    await t.close();
  } finally {
    clearInterval(syncer);
    removeDir(dir);
  }
}

describe('FileTailer against failing queues', () => {
  // Seeds fixed so a failure repeats; each run draws a different schedule of refusals and failures.
  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
    it(`never skips a line and never checkpoints past one not durable (seed ${seed})`, async () => {
      await run(seed);
    }, 30_000);
  }
});
