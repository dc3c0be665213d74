import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import type { Agent } from '../../src/agent.js';
import { parseSyslog } from '../../src/parser/syslog.js';
import { portOf, readLines, scratchDir, testAgent, waitFor } from '../helpers/agent.js';
import { runLogger } from '../helpers/peers.js';

// util-linux logger, the real client, into the UDP and TCP sources; every message lands in a file.
describe('syslog sources with util-linux logger (real peer)', () => {
  let dir: string;
  let agent: Agent;
  let out: string;

  beforeEach(async () => {
    dir = scratchDir();
    out = path.join(dir, 'out.log');
    agent = await testAgent(`
state_dir: ${dir}/state
sources:
  udp: { type: syslog_udp, address: "127.0.0.1:0" }
  tcp: { type: syslog_tcp, address: "127.0.0.1:0" }
destinations:
  f: { type: file, path: ${out} }
pipelines:
  p: { from: [udp, tcp], to: [f] }
`);
  });

  const cases: { name: string; args: (port: number) => string[]; source: 'udp' | 'tcp' }[] = [
    { name: 'UDP, RFC 5424', source: 'udp', args: (p) => ['-d', '-n', '127.0.0.1', '-P', String(p), '--rfc5424'] },
    { name: 'UDP, RFC 3164', source: 'udp', args: (p) => ['-d', '-n', '127.0.0.1', '-P', String(p), '--rfc3164'] },
    {
      name: 'TCP LF-framed, RFC 5424',
      source: 'tcp',
      args: (p) => ['-T', '-n', '127.0.0.1', '-P', String(p), '--rfc5424'],
    },
    {
      name: 'TCP LF-framed, RFC 3164',
      source: 'tcp',
      args: (p) => ['-T', '-n', '127.0.0.1', '-P', String(p), '--rfc3164'],
    },
    {
      name: 'TCP octet-counted, RFC 5424',
      source: 'tcp',
      args: (p) => ['-T', '--octet-count', '-n', '127.0.0.1', '-P', String(p), '--rfc5424'],
    },
    {
      name: 'TCP octet-counted, RFC 3164',
      source: 'tcp',
      args: (p) => ['-T', '--octet-count', '-n', '127.0.0.1', '-P', String(p), '--rfc3164'],
    },
  ];

  for (const c of cases) {
    it(`receives ${c.name}`, async () => {
      const port = portOf(agent, c.source);
      const text = `hello from logger ${c.name} ${Math.random()}`;
      runLogger([...c.args(port), '-t', 'sluicetest', '-p', 'local3.warning', '-i', '--', text]);
      runLogger([...c.args(port), '-t', 'sluicetest', '-p', 'auth.info', '--', `${text} second`]);
      await waitFor('both messages in the file', () => readLines(out).length >= 2);
      const lines = readLines(out);
      expect(lines).toHaveLength(2);
      const [first, second] = lines.map((l) => parseSyslog(l));
      expect(first).toMatchObject({ facility: 19, severity: 4, appName: 'sluicetest', message: text });
      expect(first!.procId).toMatch(/^\d+$/);
      expect(second).toMatchObject({ facility: 4, severity: 6, message: `${text} second` });
      expect(agent.stats().sources[c.source]!.received).toBe(2);
      expect(agent.stats().sources[c.source]!.parseErrors).toBe(0);
    });
  }
});
