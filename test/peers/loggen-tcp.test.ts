import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Agent } from '../../src/agent.js';
import { portOf, scratchDir, testAgent, waitFor } from '../helpers/agent.js';
import { runLoggen } from '../helpers/peers.js';

const N = 100_000;

function countLines(file: string): number {
  try {
    const buf = readFileSync(file);
    let n = 0;
    for (let i = buf.indexOf(10); i >= 0; i = buf.indexOf(10, i + 1)) n++;
    return n;
  } catch {
    return 0;
  }
}

// syslog-ng's loggen (unpacked from Debian's syslog-ng-core) is the generator; every message must reach the file.
describe('loggen over TCP (real peer: syslog-ng loggen)', () => {
  let dir: string;
  let agent: Agent;

  for (const mode of [
    { name: 'LF-framed BSD-style', flags: [] as string[] },
    { name: 'octet-counted RFC 5424', flags: ['-P'] },
  ]) {
    it(`counts all ${N} ${mode.name} messages at a file destination`, async () => {
      dir = scratchDir();
      const out = path.join(dir, 'out.log');
      agent = await testAgent(`
state_dir: ${dir}/state
sources:
  tcp: { type: syslog_tcp, address: "127.0.0.1:0", lenient: true }
destinations:
  f: { type: file, path: ${out} }
pipelines:
  p: { from: [tcp], to: [f] }
`);
      const summary = await runLoggen([
        '-i',
        '-S',
        ...mode.flags,
        '-s',
        '200',
        '-r',
        '1000000',
        '-n',
        String(N),
        '127.0.0.1',
        String(portOf(agent, 'tcp')),
      ]);
      expect(summary).toMatch(new RegExp(`count=${N}`));
      await waitFor(`${N} lines in the file`, () => countLines(out) >= N, 60_000);
      expect(countLines(out)).toBe(N);
      // Every sequence number exactly once: none lost, none repeated.
      const seqs = new Set<number>();
      for (const line of readFileSync(out, 'utf8').split('\n')) {
        const m = /seq: (\d+)/.exec(line);
        if (m) seqs.add(Number(m[1]));
      }
      expect(seqs.size).toBe(N);
      expect(Math.min(...seqs)).toBe(0);
      expect(Math.max(...seqs)).toBe(N - 1);
      expect(agent.stats().sources.tcp!.received).toBe(N);
    });
  }
});
