import { appendFileSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import type { ReliableQueue } from '../../src/queue/disk/reliable-queue.js';
import type { LogRecord } from '../../src/record.js';
import { FileSource } from '../../src/sources/file/index.js';
import { sourceIntoQueue } from '../helpers/pipeline.js';
import { scratchDir, waitFor } from '../helpers/agent.js';

/** A file source following `<dir>/logs/*.log` into one reliable queue on a disk whose fsyncs can fail. */
async function setup() {
  const dir = scratchDir();
  const { config, queue, disk, ctx, stats } = await sourceIntoQueue(
    dir,
    'app',
    `{ type: file, paths: ["${dir}/logs/*.log"], read_from: beginning, poll_interval: 50ms, checkpoint_interval: 20ms }`,
  );
  const make = () => new FileSource(config as never, ctx);
  const logs = path.join(dir, 'logs');
  const checkpoint = () => {
    const files = JSON.parse(readFileSync(`${dir}/state/checkpoints/app.json`, 'utf8')).files as { offset: number }[];
    return files.map((f) => f.offset);
  };
  return { dir, logs, queue, disk, make, checkpoint, stats };
}

/** The first `n` records of a queue, waiting (bounded) for its read cache to load them. */
async function takeAll(queue: ReliableQueue, n: number): Promise<LogRecord[]> {
  const out: LogRecord[] = [];
  for (let i = 0; i < 200 && out.length < n; i++) {
    out.push(...queue.take(n - out.length));
    if (out.length < n) await Promise.race([queue.waitForRecords(), new Promise((r) => setTimeout(r, 20))]);
  }
  return out;
}

const lines = (from: number, n: number) => Array.from({ length: n }, (_, i) => `line ${from + i}\n`).join('');

describe('FileSource', () => {
  it('reads each line once into the queue, wrapped as text records of its host, and checkpoints only what is committed', async () => {
    const { logs, queue, disk, make, checkpoint, stats } = await setup();
    mkdirSync(logs);
    writeFileSync(path.join(logs, 'a.log'), lines(0, 5));
    const source = make();
    await source.start();
    onTestFinished(() => source.stop());
    await waitFor('5 queued', () => queue.stats().records === 5);
    await waitFor('the checkpoint', () => checkpoint()[0] === lines(0, 5).length);
    // Commits fail: lines are read, not committed, and the checkpoint stays where it was.
    disk.failSyncs = 'EIO';
    appendFileSync(path.join(logs, 'a.log'), lines(5, 5));
    await new Promise((r) => setTimeout(r, 300));
    expect(checkpoint()).toEqual([lines(0, 5).length]);
    // The disk works again: the lines are read again and committed once each.
    disk.failSyncs = null;
    await waitFor('the checkpoint after 10', () => checkpoint()[0] === lines(0, 10).length, 10_000);
    const got = await takeAll(queue, 10);
    expect(got.map((r) => r.raw.toString())).toEqual(Array.from({ length: 10 }, (_, i) => `line ${i}`));
    expect(got[0]!.message).toMatchObject({ hostname: 'web01', facility: 1, severity: 5 });
    expect(stats.received).toBeGreaterThanOrEqual(10);
    expect(stats.dropped).toEqual({});
  });

  it('restarted, resumes from its checkpoint, and finishes a file renamed while it was down before the new one', async () => {
    const { logs, queue, make, checkpoint } = await setup();
    mkdirSync(logs);
    const file = path.join(logs, 'a.log');
    writeFileSync(file, lines(0, 3));
    const first = make();
    await first.start();
    await waitFor('the checkpoint', () => checkpoint()[0] === lines(0, 3).length);
    await first.stop();
    // While it is down: more lines, then a rotation, then a new file.
    appendFileSync(file, lines(3, 2));
    renameSync(file, path.join(logs, 'a.log.1'));
    writeFileSync(file, lines(5, 2));
    const second = make();
    await second.start();
    onTestFinished(() => second.stop());
    await waitFor('7 queued', () => queue.stats().records === 7);
    expect((await takeAll(queue, 7)).map((r) => r.raw.toString())).toEqual(
      Array.from({ length: 7 }, (_, i) => `line ${i}`),
    );
  });
});
