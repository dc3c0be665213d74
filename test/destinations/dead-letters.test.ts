import { mkdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import type { Agent } from '../../src/agent.js';
import { deadLetterFile, fromLine, readDeadLetters, toLine } from '../../src/destinations/dead-letters.js';
import { LogRecord } from '../../src/record.js';
import { SourceCounters } from '../../src/stats.js';
import { portOf, readLines, removeDir, scratchDir, testAgent, waitFor } from '../helpers/agent.js';

async function send(port: number, lines: string[]): Promise<void> {
  const s = net.connect(port, '127.0.0.1');
  await new Promise((r) => s.once('connect', r));
  s.write(lines.map((l) => `${l}\n`).join(''));
  await new Promise<void>((r) => s.end(() => r()));
}

const line = (host: string, i: number) => `<13>1 2026-01-01T00:00:00Z ${host} app - - - message ${i}`;

/** An agent from TCP into one destination `name` (`hosts`: files per host, with `queue`), plus `extra` destinations. */
function config(
  dir: string,
  queue: string,
  extra = '',
  name = 'hosts',
  destination = `{ type: file, path: "${dir}/out/\${HOST}.log", queue: ${queue} }`,
): string {
  return `
state_dir: ${dir}/state
admin: { enabled: false }
shutdown_timeout: 1s
sources:
  in: { type: syslog_tcp, address: "127.0.0.1:0" }
destinations:
  ${name}: ${destination}
${extra}
pipelines:
  p: { from: [in], to: [${name}] }
`;
}

describe('dead letters', () => {
  let dir: string;
  let agent: Agent | undefined;

  // Host "bad" names a directory: every write of its records fails with EISDIR, for ever.
  const traffic = () => Array.from({ length: 60 }, (_, i) => line(i % 10 === 3 ? 'bad' : 'good', i));

  it(
    'sets aside the records a file destination can never write, with their reason, and writes all the others in ' +
      'order',
    async () => {
      dir = scratchDir();
      mkdirSync(path.join(dir, 'out/bad.log'), { recursive: true });
      for (const queue of ['{ mode: memory }', '{ mode: reliable, max_size: 4MiB, sync_interval: 5ms }']) {
        removeDir(path.join(dir, 'state'));
        agent = await testAgent(config(dir, queue));
        await send(portOf(agent, 'in'), traffic());
        const file = deadLetterFile(`${dir}/state`, 'hosts');
        await waitFor(
          '54 good lines and 6 dead letters',
          () =>
            agent!.stats().destinations.hosts!.delivered === 54 &&
            agent!.stats().destinations.hosts!.deadLettered.EISDIR === 6,
        );
        expect(
          readLines(`${dir}/out/good.log`)
            .slice(-54)
            .map((l) => l.split(' ').at(-1)),
        ).toEqual(traffic().flatMap((_l, i) => (i % 10 === 3 ? [] : [String(i)])));
        const { letters, unreadable } = await readDeadLetters(file);
        expect(unreadable).toBe(0);
        expect(letters.slice(-6).map((l) => [l.reason, l.destination, l.source, l.message])).toEqual(
          [3, 13, 23, 33, 43, 53].map((i) => ['EISDIR', 'hosts', 'in', line('bad', i)]),
        );
        expect(letters.at(-1)!.error).toMatch(/EISDIR/);
        expect(agent.stats().destinations.hosts!.deadLetterDropped).toBe(0);
        expect(agent.stats().destinations.hosts!.queue.records).toBe(0);
        await agent.stop();
        agent = undefined;
      }
    },
  );

  it(
    'max_age: records that waited longer than it are set aside as expired, unsent; younger ones are delivered ' +
      '(frozen clock)',
    async () => {
      dir = scratchDir();
      // A receiver that is down: the syslog destination retries (connection refused is the destination's, not a
      // record's).
      const port = await new Promise<number>((resolve) => {
        const probe = net.createServer().listen(0, '127.0.0.1', () => {
          const p = (probe.address() as net.AddressInfo).port;
          probe.close(() => resolve(p));
        });
      });
      const t0 = new Date('2026-03-01T00:00:00Z').getTime();
      vi.useFakeTimers({ toFake: ['Date'], now: t0 });
      try {
        agent = await testAgent(
          config(
            dir,
            '',
            '',
            'down',
            `{ type: syslog, address: "127.0.0.1:${port}", framing: lf, backoff: { initial: 10ms, max: 20ms }, ` +
              `queue: { mode: reliable, max_size: 4MiB, sync_interval: 5ms, max_age: 1d } }`,
          ),
        );
        await send(
          portOf(agent, 'in'),
          Array.from({ length: 5 }, (_, i) => line('old', i)),
        );
        await waitFor('5 queued', () => agent!.stats().destinations.down!.queue.records === 5);
        vi.setSystemTime(t0 + 86_400_000 + 1); // a day and a millisecond later
        await send(
          portOf(agent, 'in'),
          Array.from({ length: 3 }, (_, i) => line('new', i)),
        );
        await waitFor('5 expired', () => agent!.stats().destinations.down!.deadLettered.expired === 5);
        // The young ones still wait for the receiver: never set aside for its outage.
        expect(agent.stats().destinations.down!.queue.records).toBe(3);
        const got: string[] = [];
        const receiver = net.createServer((c) =>
          c.on('data', (d: Buffer) => got.push(...d.toString().split('\n').filter(Boolean))),
        );
        await new Promise<void>((r) => receiver.listen(port, '127.0.0.1', r));
        try {
          await waitFor('the 3 young ones delivered', () => got.length === 3, 10_000);
          expect(got).toEqual([0, 1, 2].map((i) => line('new', i)));
        } finally {
          receiver.close();
        }
        const { letters } = await readDeadLetters(deadLetterFile(`${dir}/state`, 'down'));
        expect(letters.map((l) => [l.reason, l.attempts, l.message])).toEqual(
          [0, 1, 2, 3, 4].map((i) => ['expired', 0, line('old', i)]),
        );
        expect(letters[0]!.received_at).toBe('2026-03-01T00:00:00.000Z');
      } finally {
        vi.useRealTimers();
      }
    },
  );

  it(
    'with dead_letter: drop, drops and counts them; with another destination, sends them there as JSON ' + 'lines',
    async () => {
      dir = scratchDir();
      mkdirSync(path.join(dir, 'out/bad.log'), { recursive: true });
      agent = await testAgent(config(dir, '{ dead_letter: drop }'));
      await send(portOf(agent, 'in'), traffic());
      await waitFor('54 good lines', () => agent!.stats().destinations.hosts!.delivered === 54);
      await waitFor('6 dropped', () => agent!.stats().destinations.hosts!.deadLetterDropped === 6);
      expect(agent.stats().destinations.hosts!.deadLettered).toEqual({ EISDIR: 6 });
      await agent.stop();

      agent = await testAgent(
        config(dir, '{ dead_letter: parked }', `  parked: { type: file, path: "${dir}/parked.jsonl" }`),
      );
      await send(portOf(agent, 'in'), traffic());
      await waitFor('6 parked', () => readLines(`${dir}/parked.jsonl`).length === 6);
      const parked = readLines(`${dir}/parked.jsonl`).map(
        (l) => JSON.parse(l) as { reason: string; message: string; destination: string },
      );
      expect(parked.map((p) => [p.reason, p.destination, p.message])).toEqual(
        [3, 13, 23, 33, 43, 53].map((i) => ['EISDIR', 'hosts', line('bad', i)]),
      );
      expect(agent.stats().destinations.hosts!.deadLetterDropped).toBe(0);
    },
  );
});

describe('a dead-letter line', () => {
  it('keeps the stream position and the earlier positions, and leaves out an earlier one that is not a position', () => {
    const r = new LogRecord(Buffer.from('<13>1 - h a - - - m'), 1_767_225_600_000, {
      source: 'js',
      from: 'nats:LOGS',
      format: 'syslog',
      lenient: false,
      counters: new SourceCounters(),
    });
    r.setStream('nats:LOGS/w/b', 4);
    r.setEarlier([['nats:LOGS/w/a', 9]]);
    const line = JSON.parse(JSON.stringify(toLine('out', { record: r, reason: 'too_large', error: 'e', attempts: 1 })));
    expect(line).toMatchObject({ stream: 'nats:LOGS/w/b', stream_pos: 4, earlier: [['nats:LOGS/w/a', 9]] });
    const back = fromLine(line);
    expect([back.stream, back.streamPos, back.earlier]).toEqual(['nats:LOGS/w/b', 4, [['nats:LOGS/w/a', 9]]]);
    const bad = fromLine({ ...line, earlier: [['x', -1], ['y', 2], 'z'] });
    expect(bad.earlier).toEqual([['y', 2]]);
  });
});
