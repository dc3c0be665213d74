import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readLines, removeDir, tempDir, waitFor, stablePort } from './helpers/agent.js';
import { runLogger } from './helpers/peers.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(root, 'dist/cli.js');

function sluice(args: string[]) {
  return spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 20_000, cwd: root });
}

const freePort = stablePort;

/** Starts `sluice run` on `cfg`; `log()` is its stderr so far. */
function startRun(cfg: string) {
  const child = spawn(process.execPath, [cli, 'run', '-c', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stderr.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, exited, log: () => log };
}

describe('sluice CLI', () => {
  let dir: string;
  beforeAll(() => {
    if (!existsSync(cli)) throw new Error(`${cli} is missing: run "npm run build" (npm test does)`);
  });
  afterEach(() => removeDir(dir));

  it('prints its version and help', () => {
    dir = tempDir();
    const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string };
    const v = sluice(['--version']);
    expect(v.status).toBe(0);
    expect(v.stdout.trim()).toBe(`sluice ${pkg.version}`);
    const h = sluice(['--help']);
    expect(h.status).toBe(0);
    expect(h.stdout).toMatch(/sluice run -c FILE/);
    expect(h.stdout).toMatch(/sluice check -c FILE/);
    expect(sluice(['frobnicate']).status).toBe(2);
  });

  // A system log agent runs on every host: what the bundled config does not use stays unloaded
  // (zod validates the config in a child process of its own; each source and destination type,
  // and node:tls, are imported when a config uses them). The NATS settings once brought zod into
  // every start (8 MB more resident, idle); the config's worker thread left 6 MB behind.
  it('run loads none of the code the bundled config does not use', async () => {
    dir = tempDir();
    const cfg = path.join(dir, 'sluice.yaml');
    const bundled = readFileSync(path.join(root, 'etc/sluice.yaml'), 'utf8');
    writeFileSync(
      cfg,
      bundled
        .replace('state_dir: var/state', `state_dir: ${dir}/state`)
        .replace('path: var/log/messages.log', `path: ${dir}/messages.log`)
        .replaceAll('127.0.0.1:5514', '127.0.0.1:0'),
    );
    expect(readFileSync(cfg, 'utf8')).not.toContain('var/');
    const modules = path.join(dir, 'modules.txt');
    const hooks = path.join(root, 'test/helpers/record-modules.mjs');
    const child = spawn(process.execPath, ['--import', hooks, cli, 'run', '-c', cfg], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, SLUICE_TEST_MODULES: modules },
    });
    let log = '';
    child.stderr.on('data', (d: Buffer) => (log += d.toString()));
    const exited = new Promise((r) => child.on('exit', r));
    try {
      await waitFor('sluice to run', () => log.includes('sluice is running'), 15_000);
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
    const lines = readFileSync(modules, 'utf8').trim().split('\n');
    const urls = (main: boolean) =>
      lines.filter((l) => l.startsWith(`${child.pid}:0 `) === main).map((l) => l.slice(l.indexOf(' ') + 1));
    const packageOf = (url: string) => /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)?.[1];
    const main = urls(true);
    const packages = [...new Set(main.map((u) => packageOf(u) ?? ''))].filter(Boolean);
    // The hooks see what is loaded: the logger, the components in use, and zod in the config's loader.
    expect(packages).toContain('pino');
    expect(urls(false).some((u) => packageOf(u) === 'zod')).toBe(true);
    for (const unused of [
      'zod',
      'prom-client',
      'chokidar',
      'ws',
      '@nats-io/transport-node',
      '@nats-io/jetstream',
      'yaml',
    ])
      expect(packages, unused).not.toContain(unused);
    const dist = (m: string) => main.some((u) => u.endsWith(`/dist/${m}`));
    for (const used of ['sources/syslog-udp/index.js', 'sources/syslog-tcp/index.js', 'destinations/file/index.js'])
      expect(dist(used), used).toBe(true);
    const unusedDist = [
      ...['file', 'sluice', 'relp', 'journald', 'unix', 'kernel', 'nats'].map((t) => `sources/${t}/index.js`),
      ...['syslog', 'sluice', 'relp', 'nats'].map((t) => `destinations/${t}/index.js`),
      ...['check.js', 'queue.js', 'stats.js', 'reload.js'].map((c) => `cli/${c}`),
    ];
    for (const unused of unusedDist) expect(dist(unused), unused).toBe(false);
    expect(main).not.toContain('node:tls');
    expect(main).not.toContain('node:worker_threads');
  }, 30_000);

  it('check validates the bundled config and prints its pipelines', () => {
    dir = tempDir();
    const r = sluice(['check', '-c', 'etc/sluice.yaml']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/pipeline local:/);
    expect(r.stdout).toMatch(/from local_udp: udp:\/\/127\.0\.0\.1:5514/);
    expect(r.stdout).toMatch(/from local_tcp: tcp:\/\/127\.0\.0\.1:5514/);
    expect(r.stdout).toMatch(/to {3}local_file: file var\/log\/messages\.log/);
    expect(r.stdout).toMatch(/etc\/sluice\.yaml: OK/);
  });

  it('check exits non-zero and names file, line, column and key of every error', () => {
    dir = tempDir();
    const bad = path.join(dir, 'bad.yaml');
    writeFileSync(
      bad,
      'sources:\n  u:\n    type: syslog_udp\n    address: nowhere\n    colour: blue\ndestinations: {}\npipelines:\n  ' +
        'p: { from: [u], to: [missing] }\n',
    );
    const r = sluice(['check', '-c', bad]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`${bad}:4:14: error: sources.u.address: expected host:port`);
    expect(r.stderr).toContain(`${bad}:5:5: error: sources.u.colour: unknown key`);
    const missing = sluice(['check', '-c', path.join(dir, 'nope.yaml')]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/cannot read config: file not found/);
  });

  it('run refuses a bad config without starting, and exits non-zero', () => {
    dir = tempDir();
    const bad = path.join(dir, 'bad.yaml');
    writeFileSync(bad, 'sources: {}\ndestinations: {}\npipelines: {}\nstate_dir: [1]\n');
    const r = sluice(['run', '-c', bad]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/state_dir: expected string/);
  });

  it('run receives, then drains and exits 0 on SIGTERM', async () => {
    dir = tempDir();
    const port = await freePort();
    const cfg = path.join(dir, 'sluice.yaml');
    const out = path.join(dir, 'out.log');
    writeFileSync(
      cfg,
      `
state_dir: ${dir}/state
log: { format: json }
sources:
  udp: { type: syslog_udp, address: "127.0.0.1:${port}" }
destinations:
  f: { type: file, path: ${out} }
pipelines:
  p: { from: [udp], to: [f] }
`,
    );
    const { child, exited, log } = startRun(cfg);
    try {
      await waitFor('sluice to start', () => log().includes('sluice is running'));
      runLogger(['-d', '-n', '127.0.0.1', '-P', String(port), '--rfc5424', '-t', 'clitest', 'through the CLI']);
      await waitFor('the message in the file', () => readLines(out).length === 1);
      expect(readLines(out)[0]).toMatch(/clitest .* through the CLI$/);
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      const lines = log()
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { msg: string; level: number });
      expect(lines.map((l) => l.msg)).toContain('stopping: draining in-flight records');
      expect(lines.at(-1)!.msg).toBe('stopped');
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('SIGHUP reloads: a bad config is rejected and the running one keeps working; a good one takes over', async () => {
    dir = tempDir();
    const port = await freePort();
    const cfg = path.join(dir, 'sluice.yaml');
    const conf = (out: string) => `
state_dir: ${dir}/state
log: { format: json }
shutdown_timeout: 500ms
sources:
  udp: { type: syslog_udp, address: "127.0.0.1:${port}" }
destinations:
  f: { type: file, path: ${out} }
pipelines:
  p: { from: [udp], to: [f] }
`;
    const first = path.join(dir, 'first.log');
    const second = path.join(dir, 'second.log');
    writeFileSync(cfg, conf(first));
    const { child, exited, log } = startRun(cfg);
    const send = (text: string) =>
      runLogger(['-d', '-n', '127.0.0.1', '-P', String(port), '--rfc5424', '-t', 'hup', text]);
    try {
      await waitFor('sluice to start', () => log().includes('sluice is running'));
      writeFileSync(cfg, `${conf(second)}bogus_key: 1\n`);
      // `sluice reload` validates first and does not signal a bad config (systemctl reload fails).
      const refused = sluice(['reload', '-c', cfg, '--pid', String(child.pid)]);
      expect(refused.status).toBe(1);
      expect(refused.stderr).toMatch(/bogus_key/);
      expect(log()).not.toMatch(/reload/);
      // A plain SIGHUP with the bad file is rejected by the agent itself.
      child.kill('SIGHUP');
      await waitFor('the reload to be rejected', () => log().includes('reload rejected'));
      send('after the bad reload');
      await waitFor('the message in the first file', () =>
        readLines(first).some((l) => l.endsWith('after the bad reload')),
      );
      writeFileSync(cfg, conf(second));
      const accepted = sluice(['reload', '-c', cfg, '--pid', String(child.pid)]);
      expect(accepted.status).toBe(0);
      await waitFor('the reload', () => log().includes('"msg":"reloaded"'));
      send('after the good reload');
      await waitFor(
        'the message in the second file',
        () => existsSync(second) && readLines(second).some((l) => l.endsWith('after the good reload')),
      );
      expect(readLines(first).some((l) => l.endsWith('after the good reload'))).toBe(false);
      expect(log()).toMatch(/bogus_key/);
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('on SIGTERM with an unreachable destination, waits shutdown_timeout, reports what was left, exits 0', async () => {
    dir = tempDir();
    const [inPort, deadPort] = [await freePort(), await freePort()];
    const cfg = path.join(dir, 'sluice.yaml');
    writeFileSync(
      cfg,
      `
state_dir: ${dir}/state
log: { format: json }
shutdown_timeout: 300ms
sources:
  udp: { type: syslog_udp, address: "127.0.0.1:${inPort}" }
destinations:
  away: { type: syslog, address: "127.0.0.1:${deadPort}" }
pipelines:
  p: { from: [udp], to: [away] }
`,
    );
    const { child, exited, log } = startRun(cfg);
    try {
      await waitFor('sluice to start', () => log().includes('sluice is running'));
      runLogger(['-d', '-n', '127.0.0.1', '-P', String(inPort), 'stuck message']);
      await waitFor('a failed delivery', () => log().includes('delivery failed'));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(log()).toMatch(/"records":1,"msg":"shutdown timeout: records still queued in memory were not delivered"/);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
