import net from 'node:net';
import { describe, expect, it } from 'vitest';
import type { Agent } from '../../src/agent.js';
import { parseConfigText } from '../../src/config/load.js';
import { createLogger } from '../../src/log.js';
import { portOf, scratchDir, testAgent, waitFor } from '../helpers/agent.js';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger(
    { level: 'info', format: 'json' },
    { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) },
  );
  return { logger, lines };
}

describe('log hygiene', () => {
  let dir: string;
  let agent: Agent | undefined;

  it('a bad client that repeats is logged about once a second, with the number of lines left out', async () => {
    dir = scratchDir();
    const { logger, lines } = capture();
    const { config } = parseConfigText(
      `state_dir: ${dir}/state
admin: { enabled: false }
sources:
  in: { type: syslog_tcp, address: "127.0.0.1:0" }
destinations:
  out: { type: file, path: ${dir}/out.log }
pipelines:
  p: { from: [in], to: [out] }
`,
      't.yaml',
    );
    agent = await testAgent(config, logger);
    const port = portOf(agent, 'in');
    const garbage = async () => {
      const s = net.connect(port, '127.0.0.1');
      s.on('error', () => undefined);
      s.write('99999999999 this octet count is absurd\n');
      await new Promise((r) => s.on('close', r));
    };
    for (let i = 0; i < 40; i++) await garbage();
    await waitFor('40 connections refused', () => agent!.stats().sources.in!.connectionErrors === 40);
    const framing = () => lines.filter((l) => l.msg === 'closing connection: not valid syslog framing');
    expect(framing().length).toBeLessThan(20); // far fewer lines than bad connections
    // After the interval, the next one says how many were left out.
    await new Promise((r) => setTimeout(r, 1100));
    await garbage();
    await waitFor('the next line', () => framing().some((l) => typeof l.repeats_suppressed === 'number'));
    const total = framing().reduce((n, l) => n + 1 + ((l.repeats_suppressed as number | undefined) ?? 0), 0);
    expect(total).toBe(41);
  });

  it('never writes a secret: token, password, authorization and key material are redacted wherever they appear', () => {
    const { logger, lines } = capture();
    logger.info(
      {
        token: 's3cr3t-token',
        config: { password: 'hunter2', tls: { passphrase: 'pp' } },
        headers: { authorization: 'Bearer abc' },
      },
      'with secrets',
    );
    const text = JSON.stringify(lines);
    for (const secret of ['s3cr3t-token', 'hunter2', 'Bearer abc', '"pp"']) expect(text).not.toContain(secret);
    expect(lines[0]).toMatchObject({
      token: '[redacted]',
      config: { password: '[redacted]', tls: { passphrase: '[redacted]' } },
      headers: { authorization: '[redacted]' },
    });
  });
});
