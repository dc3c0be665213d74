import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { fileDestinationSchema } from '../../src/destinations/file/config.js';
import { FileDestination } from '../../src/destinations/file/index.js';
import { MemoryQueue } from '../../src/queue/memory-queue.js';
import { LogRecord, type RecordOrigin } from '../../src/record.js';
import { readLines, removeDir, tempDir } from '../helpers/agent.js';
import { SourceCounters } from '../../src/stats.js';

/**
 * The state writes, with a crash on demand: while `crashArmed`, the next state that records a
 * written line fails before it reaches the disk, as in a process killed between a batch's fsync
 * and its state.
 */
const stateWrites = vi.hoisted(() => ({ crashArmed: false }));
vi.mock('../../src/util/fs.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../src/util/fs.js')>();
  return {
    ...real,
    writeFileAtomic: async (file: string, data: string | Buffer) => {
      if (stateWrites.crashArmed && file.endsWith('.sluice-state') && !String(data).includes('"streams":{}')) {
        stateWrites.crashArmed = false;
        throw Object.assign(new Error('killed before the state was written'), { code: 'EKILLED' });
      }
      return real.writeFileAtomic(file, data);
    },
  };
});

const DAY = 86_400_000;
const origin: RecordOrigin = {
  source: 'agents',
  from: '127.0.0.1',
  format: 'syslog',
  lenient: false,
  counters: new SourceCounters(),
};

function record(text: string, stream: string, pos: number): LogRecord {
  const r = new LogRecord(Buffer.from(text), Date.now(), origin);
  r.setStream(stream, pos);
  return r;
}

interface Harness {
  dest: FileDestination;
  queue: MemoryQueue;
  logs: string[];
  file: string;
  /** Queues the records and waits until the destination has taken them all off the queue. */
  send(records: LogRecord[]): Promise<void>;
  state(): { version: number; size: number; streams: Record<string, [number, number]> };
}

function harness(dir: string, extra: Record<string, unknown> = {}): Harness {
  const file = path.join(dir, 'central.log');
  const logs: string[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void logs.push(line) });
  const queue = new MemoryQueue('central', { maxRecords: 1000, maxBytes: 1 << 20, full: 'block' });
  const config = fileDestinationSchema.parse({ type: 'file', path: file, exactly_once: true, ...extra });
  const dest = new FileDestination(config, { name: 'central', queue, logger, hostname: 'central-host' });
  dest.start();
  return {
    dest,
    queue,
    logs,
    file,
    async send(records) {
      const target = queue.stats().acked + records.length;
      queue.push(records);
      // Counted, not timed: one test freezes Date.
      for (let i = 0; i < 500 && queue.stats().acked < target; i++) await new Promise((r) => setTimeout(r, 20));
      expect(queue.stats().acked).toBe(target);
    },
    state: () => JSON.parse(readFileSync(`${file}.sluice-state`, 'utf8')),
  };
}

describe('file destination, exactly_once state', () => {
  let dir: string;
  let h: Harness | undefined;
  afterEach(async () => {
    vi.useRealTimers();
    await h?.dest.stop(1000);
    h = undefined;
    removeDir(dir);
  });

  it(
    'forgets streams not written for exactly_once_retention when it opens the file; a late record of one is ' +
      'written, a live one still deduplicates',
    async () => {
      dir = tempDir();
      const file = path.join(dir, 'central.log');
      writeFileSync(file, 'earlier line\n');
      const now = Date.now();
      const streams = { gone: [10, now - 8 * DAY], live: [10, now - DAY] };
      writeFileSync(`${file}.sluice-state`, JSON.stringify({ version: 2, size: 13, streams }));
      h = harness(dir);
      await h.send([
        record('gone 5', 'gone', 5),
        record('live 5', 'live', 5),
        record('live 11', 'live', 11),
        record('new 0', 'new', 0),
      ]);

      expect(readLines(file)).toEqual(['earlier line', 'gone 5', 'live 11', 'new 0']);
      expect(h.dest.stats.duplicatesSkipped).toBe(1);
      expect(h.dest.stats.streamsForgotten).toBe(1);
      const state = h.state();
      expect(state.version).toBe(2);
      // "gone" is back, with its new position
      expect(Object.keys(state.streams).sort()).toEqual(['gone', 'live', 'new']);
      expect(state.streams.gone![0]).toBe(5);
      expect(state.streams.live![0]).toBe(11);
      for (const [, at] of Object.values(state.streams)) expect(Math.abs(at - Date.now())).toBeLessThan(60_000);
      expect(state.size).toBe(readFileSync(file).length);
      expect(
        h.logs.some(
          (l) => l.includes('"forgotten":1') && l.includes('forgot streams not written for exactly_once_retention'),
        ),
      ).toBe(true);
    },
  );

  it(
    'drops a record read again when a position it had before was written, in any order, and not otherwise; ' +
      'its own position protects it after that',
    async () => {
      dir = tempDir();
      h = harness(dir);
      // A reader (incarnation a) wrote positions 0..2 of its stream; it crashed with 3..5 handed on,
      // their fate unknown. The next one (b) reads 5, 3, 4 and 2 again: 2 was written, the others not.
      await h.send([record('m0', 'a', 0), record('m1', 'a', 1), record('m2', 'a', 2)]);
      const again = (text: string, pos: number, earlier: number) => {
        const r = record(text, 'b', pos);
        r.setEarlier([['a', earlier]]);
        return r;
      };
      await h.send([again('m5', 0, 5), again('m3', 1, 3)]);
      await h.send([again('m4', 2, 4), again('m2', 3, 2)]);
      // b's queue hands 3 and 4 out again after a crash of its own: their own positions drop them.
      await h.send([again('m4', 2, 4), again('m2', 3, 2)]);
      expect(readLines(h.file)).toEqual(['m0', 'm1', 'm2', 'm5', 'm3', 'm4']);
      expect(h.dest.stats.duplicatesSkipped).toBe(3);
      // Read again only as earlier positions, a stream's mark does not move.
      expect(h.state().streams.a![0]).toBe(2);
      expect(h.state().streams.b![0]).toBe(2);
    },
  );

  it(
    'while running, sweeps the state at most once a minute and drops what went quiet for longer than the ' +
      'retention',
    async () => {
      dir = tempDir();
      vi.useFakeTimers({ toFake: ['Date'] });
      const start = Date.now();
      h = harness(dir, { exactly_once_retention: '1h' });
      await h.send([record('a 1', 'a', 1), record('b 1', 'b', 1)]);
      vi.setSystemTime(start + 30 * 60_000);
      await h.send([record('b 2', 'b', 2)]);
      expect(Object.keys(h.state().streams).sort()).toEqual(['a', 'b']);
      // 61 minutes after "a" was last written, 31 after "b": only "a" is past the hour.
      vi.setSystemTime(start + 61 * 60_000);
      await h.send([record('c 1', 'c', 1)]);
      expect(Object.keys(h.state().streams).sort()).toEqual(['b', 'c']);
      expect(h.dest.stats.streamsForgotten).toBe(1);
      // "b" still deduplicates; "a" no longer does.
      await h.send([record('b 2 again', 'b', 2), record('a 1 again', 'a', 1)]);
      expect(readLines(h.file)).toEqual(['a 1', 'b 1', 'b 2', 'c 1', 'a 1 again']);
      expect(h.dest.stats.duplicatesSkipped).toBe(1);
    },
  );

  it(
    'a crash after the very first lines reached the file, before any state recorded them: sent again, they are ' +
      'written once',
    async () => {
      dir = tempDir();
      h = harness(dir);
      stateWrites.crashArmed = true;
      // Written, the state fails; the file is reopened and the batch delivered again.
      await h.send([record('s 1', 's', 1), record('s 2', 's', 2)]);
      expect(stateWrites.crashArmed).toBe(false);
      await h.dest.stop(1000);
      // The next process: the same records come again, with one more.
      h = harness(dir);
      await h.send([record('s 1', 's', 1), record('s 2', 's', 2), record('s 3', 's', 3)]);
      expect(readLines(h.file)).toEqual(['s 1', 's 2', 's 3']);
      expect(h.state().streams.s![0]).toBe(3);
    },
  );

  it('reads a version 1 state (positions without times) and keeps deduplicating against it', async () => {
    dir = tempDir();
    const file = path.join(dir, 'central.log');
    writeFileSync(file, 'x\n');
    writeFileSync(`${file}.sluice-state`, JSON.stringify({ version: 1, size: 2, streams: { s: 3 } }));
    h = harness(dir);
    await h.send([record('s 2', 's', 2), record('s 4', 's', 4)]);
    expect(readLines(file)).toEqual(['x', 's 4']);
    const state = h.state();
    expect(state.version).toBe(2);
    expect(state.streams.s![0]).toBe(4);
    expect(h.dest.stats.streamsForgotten ?? 0).toBe(0);
  });

  it('a damaged state is logged and set aside; the file is kept and writing goes on', async () => {
    dir = tempDir();
    const file = path.join(dir, 'central.log');
    writeFileSync(file, 'kept\n');
    writeFileSync(`${file}.sluice-state`, JSON.stringify({ version: 2, size: 5, streams: { s: 'three' } }));
    h = harness(dir);
    await h.send([record('s 1', 's', 1)]);
    expect(readLines(file)).toEqual(['kept', 's 1']);
    expect(
      h.logs.some(
        (l) => l.includes('the exactly-once state beside this file is damaged') && l.includes('no valid position'),
      ),
    ).toBe(true);
    expect(h.state().streams.s![0]).toBe(1);
  });
});
