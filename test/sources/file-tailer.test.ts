import { appendFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Dispatch } from '../../src/pipeline/router.js';
import { newSourceStats, type LogRecord, type RecordOrigin } from '../../src/record.js';
import { FileTailer, statIdentity } from '../../src/sources/file/file-tailer.js';
import { seeded } from '../torture/harness.js';
import { removeDir, sleep, tempDir } from '../helpers/agent.js';

const origin: RecordOrigin = { source: 'app', from: 'app.log', format: 'text', lenient: true, stats: newSourceStats() };

/**
 * The tailer against queues that fail: every hand-over may be refused (`accepted` rejects, as
 * when the queue cannot take the batch) or taken and then not made durable (`committed` rejects,
 * as on a full disk), each after a random delay, while the file keeps growing. Whatever the
 * schedule, each line must end up in a durable batch, and the checkpoint (`committed`) must at
 * every moment cover only lines that are durable: a crash right then loses none.
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
  const deliver = (records: LogRecord[]): Dispatch => {
    const lines = records.map((r) => Number(/^L(\d+) /.exec(r.raw.toString())![1]));
    const refuse = rng.chance(0.15);
    const fail = rng.chance(0.2);
    const acceptDelay = rng.int(0, 3);
    const commitDelay = rng.int(0, 8);
    const accepted = sleep(acceptDelay).then(() => {
      if (refuse) throw new Error('refused');
    });
    const committed = accepted.then(async () => {
      await sleep(commitDelay);
      if (fail) throw new Error('ENOSPC');
      for (const n of lines) durable.add(n);
    });
    committed.catch(() => undefined);
    return { accepted, committed };
  };
  try {
    const id = (await statIdentity(file))!;
    tailer = await FileTailer.open(file, id, 'beginning', origin, { maxLineLength: 65536, flushTimeout: 1000, deliver, onTruncated: () => undefined });
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
    const missing = Array.from({ length: written }, (_, n) => n).filter((n) => !durable.has(n));
    expect(problems.slice(0, 3), `seed ${seed}`).toEqual([]);
    expect(missing.slice(0, 10), `seed ${seed}: ${missing.length} of ${written} lines never durable`).toEqual([]);
    expect(t.committed, `seed ${seed}`).toBe(bytes);
    await t.close();
  } finally {
    removeDir(dir);
  }
}

describe('FileTailer against failing queues', () => {
  // Seeds fixed so a failure repeats; each run draws a different schedule of refusals and failures.
  for (const seed of [1, 2, 3, 4, 5, 6]) {
    it(`never skips a line and never checkpoints past one not durable (seed ${seed})`, async () => {
      await run(seed);
    }, 30_000);
  }
});
