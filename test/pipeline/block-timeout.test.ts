import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { portOf, scratchDir, sleep, testAgent, waitFor } from '../helpers/agent.js';

/** One source into a syslog destination (LF, batches of 10, a 50-record queue) to a sink at `port`. */
const intoHeldSink = (dir: string, port: number, source: string, blockTimeout: string) => `
state_dir: ${dir}/state
shutdown_timeout: 100ms
sources:
  ${source}
destinations:
  out:
    type: syslog
    address: 127.0.0.1:${port}
    framing: lf
    batch_size: 10
    queue: { mem_buf_length: 50, block_timeout: ${blockTimeout} }
pipelines:
  p: { from: [${source.slice(0, source.indexOf(':'))}], to: [out] }
`;

/** A TCP sink that accepts and reads nothing until `resume()`; counts LF-framed lines. */
async function heldSink(): Promise<{ port: number; lines: () => number; resume: () => void; close: () => void }> {
  const held: net.Socket[] = [];
  let lines = 0;
  let paused = true;
  const server = net.createServer((s) => {
    if (paused) s.pause();
    s.on('data', (d: Buffer) => {
      for (const b of d) if (b === 10) lines++;
    });
    held.push(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    lines: () => lines,
    resume: () => {
      paused = false;
      for (const s of held) s.resume();
    },
    close: () => {
      for (const s of held) s.destroy();
      server.close();
    },
  };
}

describe('full: block with block_timeout', () => {
  let dir: string;

  it('a TCP source waits at most block_timeout, then drops that batch (counted) and reads on: the sender is never ' +
    'hung', async () => {
    dir = scratchDir();
    const sink = await heldSink();
    const agent = await testAgent(
      intoHeldSink(dir, sink.port, 'tcp: { type: syslog_tcp, address: "127.0.0.1:0" }', '20ms'),
    );
    try {
      const s = net.connect(portOf(agent, 'tcp'), '127.0.0.1');
      const line = `<13>${'b'.repeat(4000)}\n`;
      const N = 2500; // 10 MB: far more than the queue, the socket buffers and the held sink take
      for (let i = 0; i < N; i++) s.write(line);
      s.end();
      // Every byte is read in the end although the queue never empties: the sender finishes.
      await waitFor('the sender to finish writing', () => s.writableFinished, 30_000);
      await waitFor('every message received', () => agent.stats().sources.tcp!.received === N, 30_000);
      const src = agent.stats().sources.tcp!;
      const q = agent.stats().destinations.out!.queue;
      expect(src.dropped.block_timeout).toBeGreaterThan(0);
      expect(q.stalls).toBeGreaterThan(0);
      // Nothing vanished: every message is queued (or in the sink's buffers) or counted as dropped.
      sink.resume();
      await waitFor('the queue to drain', () => agent.stats().destinations.out!.queue.records === 0, 30_000);
      const dropped = () => agent.stats().sources.tcp!.dropped.block_timeout ?? 0;
      await waitFor('every message delivered or counted as dropped', () => sink.lines() + dropped() === N, 10_000);
      expect(agent.stats().destinations.out!.queue.dropped.block_timeout).toBe(dropped());
    } finally {
      await agent.stop();
      sink.close();
    }
  }, 60_000);

  it('a file source keeps waiting after block_timeout, drops nothing, and catches up once there is room', async () => {
    dir = scratchDir();
    const logs = path.join(dir, 'logs');
    mkdirSync(logs);
    const N = 8000; // 16 MB: more than the queue, the socket buffers and the held sink take
    writeFileSync(
      path.join(logs, 'app.log'),
      Array.from({ length: N }, (_, i) => `line ${i} ${'f'.repeat(2000)}\n`).join(''),
    );
    const sink = await heldSink();
    const agent = await testAgent(
      intoHeldSink(
        dir,
        sink.port,
        `app: { type: file, paths: ["${logs}/*.log"], read_from: beginning, poll_interval: 20ms }`,
        '50ms',
      ),
    );
    try {
      await waitFor('the queue to stall', () => agent.stats().destinations.out!.queue.stalls > 0, 10_000);
      await sleep(300); // several block_timeouts
      expect(agent.stats().sources.app!.dropped).toEqual({});
      expect(agent.stats().sources.app!.received).toBeLessThan(N);
      sink.resume();
      await waitFor('every line at the sink', () => sink.lines() === N, 30_000);
      expect(agent.stats().sources.app!.dropped).toEqual({});
    } finally {
      await agent.stop();
      sink.close();
    }
  }, 60_000);
});
