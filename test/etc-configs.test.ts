import { spawn } from 'node:child_process';
import { appendFileSync, mkdirSync, readdirSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { readLines, removeDir, tempDir, waitFor } from './helpers/agent.js';
import { runLogger } from './helpers/peers.js';
import { NatsCluster } from './helpers/nats.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(root, 'dist/cli.js');

/** `token` null: SLUICE_TOKEN is not set. */
function run(
  cfg: string,
  cwd: string,
  token: string | null = 'etc-test-token-0123456789',
  more: NodeJS.ProcessEnv = {},
) {
  const env: NodeJS.ProcessEnv = { ...process.env, SLUICE_TOKEN: token ?? undefined, ...more };
  if (token === null) delete env.SLUICE_TOKEN;
  const child = spawn(process.execPath, [cli, 'run', '-c', path.join(root, 'etc', cfg)], {
    cwd,
    stdio: ['ignore', 'ignore', 'pipe'],
    env,
  });
  let log = '';
  child.stderr.on('data', (d: Buffer) => (log += d.toString()));
  return { child, log: () => log, exited: new Promise((r) => child.on('exit', r)) };
}

/**
 * The README's "central server and agent on one machine", with the bundled configs as they are,
 * run in a fresh directory; `body` gets the directory and every line filed at the central server.
 */
async function withBundledPair(body: (dir: string, filed: () => string[]) => Promise<void>): Promise<void> {
  const dir = tempDir();
  mkdirSync(path.join(dir, 'var/app'), { recursive: true });
  const central = run('central.yaml', dir);
  const agent = run('agent.yaml', dir);
  const logs = path.join(dir, 'var/central/logs');
  const filed = () => {
    try {
      return readdirSync(logs).flatMap((h) => readLines(path.join(logs, h, 'messages.log')));
    } catch {
      return [];
    }
  };
  try {
    await waitFor(
      'both to run',
      () => central.log().includes('sluice is running') && agent.log().includes('sluice is running'),
      20_000,
    );
    await body(dir, filed);
  } finally {
    agent.child.kill('SIGTERM');
    central.child.kill('SIGTERM');
    await Promise.all([agent.exited, central.exited]);
    removeDir(dir);
  }
}

describe('etc/central.yaml and etc/agent.yaml', () => {
  it(
    'refuse to start without SLUICE_TOKEN, or with a short one, naming it: no token is published in ' + 'them',
    async () => {
      const dir = tempDir();
      try {
        for (const cfg of ['central.yaml', 'agent.yaml']) {
          const unset = run(cfg, dir, null);
          expect(await unset.exited).toBe(2); // a config error
          expect(unset.log()).toContain('environment variable SLUICE_TOKEN is not set');
        }
        const short = run('central.yaml', dir, 'short');
        expect(await short.exited).toBe(2);
        expect(short.log()).toContain('a token has at least 16 characters');
      } finally {
        removeDir(dir);
      }
    },
  );

  it('an agent ships syslog and an application file to the central server, which files them per host', async () => {
    await withBundledPair(async (dir, filed) => {
      runLogger([
        '-n',
        '127.0.0.1',
        '-P',
        '5514',
        '-T',
        '--rfc5424',
        '-t',
        'etctest',
        'hello through the central server',
      ]);
      appendFileSync(path.join(dir, 'var/app/app.log'), 'an application line\n');
      await waitFor(
        'both at the central server',
        () =>
          filed().some((l) => l.endsWith('hello through the central server')) &&
          filed().some((l) => l.endsWith('an application line')),
        20_000,
      );
      // logger names this machine in the message: that is the per-host file.
      expect(
        readLines(path.join(dir, 'var/central/logs', os.hostname(), 'messages.log')).some((l) =>
          / etctest .* hello through the central server$/.test(l),
        ),
      ).toBe(true);
    });
  }, 60_000);

  it('a message with a 300-character host name stops nothing: it and the 50 after it reach the central ' +
    'server', async () => {
    await withBundledPair(async (dir, filed) => {
      const s = net.connect(5514, '127.0.0.1');
      await new Promise((r) => s.once('connect', r));
      s.write(`<13>Oct 11 22:14:15 ${'h'.repeat(300)} app: the long one\n`);
      for (let i = 0; i < 50; i++) s.write(`<13>Oct 11 22:14:15 normalhost app: after ${i}\n`);
      await new Promise<void>((r) => s.end(() => r()));
      await waitFor('all 51 at the central server', () => filed().length >= 51, 20_000);
      expect(filed().filter((l) => / app: after \d+$/.test(l))).toHaveLength(50);
      expect(filed().filter((l) => l.endsWith('app: the long one'))).toHaveLength(1);
      // Nothing was set aside: the long name is not a host name, and the line went to the sender's file.
      expect(
        readLines(path.join(dir, 'var/central/logs', '127.0.0.1', 'messages.log')).some((l) =>
          l.endsWith('app: the long one'),
        ),
      ).toBe(true);
    });
  }, 60_000);
});

describe('etc/agent-nats.yaml and etc/writer-nats.yaml', () => {
  it('an agent publishes to JetStream (making the stream), a writer files the records per host', async () => {
    const dir = tempDir();
    const nats = await NatsCluster.start(path.join(dir, 'nats'));
    mkdirSync(path.join(dir, 'var/app'), { recursive: true });
    const env = { NATS_URL: nats.urls[0]! };
    const agent = run('agent-nats.yaml', dir, null, env);
    const writer = run('writer-nats.yaml', dir, null, env);
    try {
      await waitFor(
        'both to run',
        () => agent.log().includes('sluice is running') && writer.log().includes('sluice is running'),
        20_000,
      );
      appendFileSync(path.join(dir, 'var/app/app.log'), 'from the app file\n');
      const s = net.connect(5515, '127.0.0.1');
      s.end('<13>1 2026-11-30T00:00:00Z web1 shop - - - from tcp\n');
      s.on('error', () => undefined);
      const host = os.hostname();
      const files = () => [
        ...readLines(path.join(dir, 'var/writer-1/logs/web1/messages.log')),
        ...readLines(path.join(dir, `var/writer-1/logs/${host}/messages.log`)),
      ];
      await waitFor('both records at the writer', () => files().length >= 2, 30_000).catch((err: Error) => {
        throw new Error(`${err.message}\nagent: ${agent.log()}\nwriter: ${writer.log()}`);
      });
      expect(files().some((l) => l.endsWith('from tcp'))).toBe(true);
      expect(files().some((l) => l.includes('from the app file'))).toBe(true);
    } finally {
      agent.child.kill('SIGTERM');
      writer.child.kill('SIGTERM');
      await Promise.all([agent.exited, writer.exited]);
      await nats.stop();
      removeDir(dir);
    }
  }, 60_000);
});
