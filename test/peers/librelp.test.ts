import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { agentPerTest, portOf, readLines, sleep, stablePort, waitFor } from '../helpers/agent.js';
import { relpTool, runRelpSend } from '../helpers/peers.js';

/** The relp-send sequence numbers in a file, in the order they appear. */
function seqs(file: string): number[] {
  let text = '';
  try {
    text = readFileSync(file, 'latin1');
  } catch {
    return [];
  }
  return [...text.matchAll(/seq=(\d+) /g)].map((m) => Number(m[1]));
}

/** relp-receive on `port`, appending what it gets to `out`. */
async function relpReceive(port: number, out: string): Promise<ChildProcess> {
  const child = spawn(relpTool('relp-receive'), [String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.pipe(createWriteStream(out, { flags: 'a' }));
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  await waitFor('relp-receive listening', () => /listening/.test(err), 10_000);
  return child;
}

async function stop(child: ChildProcess | null, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill(signal);
  await gone;
}

// librelp's own client and server (relp-send, relp-receive: scripts/relp-tools, built against
// Debian's librelp-dev) against the sluice RELP source and destination.
describe('RELP with librelp 1.11 (real peer: relp-send and relp-receive)', () => {
  const t = agentPerTest();
  let receiver: ChildProcess | null = null;
  afterEach(async () => {
    await stop(receiver, 'SIGKILL');
    receiver = null;
  });

  it(
    'relp-send, window 128: 50,000 messages into the default reliable queue, each answered only once committed, all ' +
      'in order',
    async () => {
      const dir = t.fresh();
      const out = path.join(dir, 'out.log');
      const agent = await t.start(`
state_dir: ${dir}/state
sources:
  relp: { type: relp, address: "127.0.0.1:0" }
destinations:
  f: { type: file, path: ${out}, queue: { mode: reliable } }
pipelines:
  p: { from: [relp], to: [f] }
`);
      const r = await runRelpSend(portOf(agent, 'relp'), 50_000, 128, 200);
      // relp-send's close waits for the answer to its close, which comes after every other answer.
      expect(r.out).toMatch(/sent=50000 close=0/);
      expect(r.code).toBe(0);
      expect(agent.stats().sources.relp!.received).toBe(50_000);
      await waitFor('50,000 lines written', () => readLines(out).length >= 50_000, 60_000);
      expect(seqs(out)).toEqual(Array.from({ length: 50_000 }, (_, i) => i));
    },
  );

  it('a frame over max_message_size ends only that session, with serverclose, and is counted', async () => {
    const dir = t.fresh();
    const out = path.join(dir, 'out.log');
    const agent = await t.start(`
state_dir: ${dir}/state
sources:
  relp: { type: relp, address: "127.0.0.1:0", max_message_size: 1KiB }
destinations:
  f: { type: file, path: ${out} }
pipelines:
  p: { from: [relp], to: [f] }
`);
    const port = portOf(agent, 'relp');
    // librelp's client is not told that its messages were refused: relp-send says "sent" either way.
    await runRelpSend(port, 5, 1, 4000, 60_000);
    await waitFor('the oversized session closed and counted', () => agent.stats().sources.relp!.connectionErrors >= 1);
    expect(agent.stats().sources.relp!.received).toBe(0);
    // The source still serves other sessions.
    const ok = await runRelpSend(port, 100, 16, 200);
    expect(ok.code).toBe(0);
    await waitFor('100 lines', () => readLines(out).length >= 100);
    expect(seqs(out)).toEqual(Array.from({ length: 100 }, (_, i) => i));
  });

  it(
    'the sluice RELP destination to relp-receive: all arrive in order; a receiver killed mid-stream loses ' + 'nothing',
    async () => {
      const dir = t.fresh();
      const port = await stablePort();
      const got = path.join(dir, 'got.log');
      const input = path.join(dir, 'in.log');
      receiver = await relpReceive(port, got);
      const lines = Array.from({ length: 20_000 }, (_, i) => `<13>Jan  1 00:00:00 h app: seq=${i} ${'x'.repeat(100)}`);
      const { appendFileSync, writeFileSync } = await import('node:fs');
      writeFileSync(input, '');
      const _agent = await t.start(`
state_dir: ${dir}/state
sources:
  app: { type: file, paths: ["${input}"], read_from: beginning, poll_interval: 20ms }
destinations:
  r: { type: relp, address: "127.0.0.1:${port}", queue: { mode: reliable }, backoff: { initial: 20ms, max: 200ms } }
pipelines:
  p: { from: [app], to: [r] }
`);
      appendFileSync(input, `${lines.slice(0, 10_000).join('\n')}\n`);
      await waitFor('some delivered', () => seqs(got).length > 2_000, 30_000);
      await stop(receiver, 'SIGKILL'); // a broken session: answers in flight never come
      appendFileSync(input, `${lines.slice(10_000).join('\n')}\n`);
      await sleep(300);
      receiver = await relpReceive(port, got);
      await waitFor('every message at least once', () => new Set(seqs(got)).size >= 20_000, 60_000);
      const all = seqs(got);
      expect(new Set(all).size).toBe(20_000);
      // Each session delivers in order: the sequence never goes back except where a session starts again.
      let backs = 0;
      for (let i = 1; i < all.length; i++) if (all[i]! <= all[i - 1]!) backs++;
      expect(backs).toBeLessThanOrEqual(1);
    },
  );
});
