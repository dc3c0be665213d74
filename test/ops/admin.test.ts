import { spawn, spawnSync } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { Agent } from '../../src/agent.js';
import { hostAllowed } from '../../src/ops/admin.js';
import { memoryLogger, portOf, readLines, scratchDir, stablePort, testAgent, waitFor } from '../helpers/agent.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const cli = path.join(root, 'dist/cli.js');

async function send(port: number, lines: string[]): Promise<void> {
  const s = net.connect(port, '127.0.0.1');
  await new Promise<void>((r) => s.once('connect', () => r()));
  await new Promise<void>((r) => s.end(lines.map((l) => `${l}\n`).join(''), () => r()));
}

const freePort = stablePort;

describe('admin listener', () => {
  let dir: string;
  let agent: Agent | undefined;

  const config = (d: string, admin = '127.0.0.1:0') => `
state_dir: ${d}/state
admin: { address: "${admin}" }
sources:
  in: { type: syslog_tcp, address: "127.0.0.1:0" }
destinations:
  out: { type: file, path: ${d}/out.log }
  slow: { type: syslog, address: "127.0.0.1:9", queue: { mode: reliable, max_size: 4MiB } }
pipelines:
  p: { from: [in], to: [out] }
  q: { from: [in], where: { app: "^never$" }, to: [slow] }
`;

  it(
    'serves /healthz, /readyz, /api/v1/stats and Prometheus /metrics with the counters of every ' + 'component',
    async () => {
      dir = scratchDir();
      agent = await testAgent(config(dir));
      const base = `http://${agent.adminAddress()}`;
      await send(
        portOf(agent, 'in'),
        Array.from({ length: 25 }, (_, i) => `<13>1 - h app - - - admin ${i}`),
      );
      await waitFor('25 delivered', () => readLines(`${dir}/out.log`).length === 25);

      const health = await fetch(`${base}/healthz`);
      expect(health.status).toBe(200);
      expect(await health.text()).toBe('ok\n');
      const ready = await fetch(`${base}/readyz`);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toEqual({ ready: true, reasons: [] });

      const stats = (await (await fetch(`${base}/api/v1/stats`)).json()) as {
        ready: boolean;
        pid: number;
        pipelines: Record<string, { from: string[]; to: string[] }>;
        sources: Record<string, { received: number }>;
        destinations: Record<string, { delivered: number; queue: { mode: string; records: number } }>;
      };
      expect(stats.ready).toBe(true);
      expect(stats.pid).toBe(process.pid);
      expect(stats.pipelines.p).toMatchObject({ from: ['in'], to: ['out'] });
      expect(stats.sources.in!.received).toBe(25);
      expect(stats.destinations.out).toMatchObject({ delivered: 25, queue: { mode: 'memory', records: 0 } });
      expect(stats.destinations.slow!.queue.mode).toBe('reliable');

      const res = await fetch(`${base}/metrics`);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
      const m = await res.text();
      expect(m).toMatch(/^sluice_source_received_records_total\{source="in"\} 25$/m);
      expect(m).toMatch(/^sluice_destination_acked_records_total\{destination="out"\} 25$/m);
      expect(m).toMatch(/^sluice_queue_records\{destination="out",mode="memory"\} 0$/m);
      expect(m).toMatch(/^sluice_queue_capacity_bytes\{destination="slow",mode="reliable"\} \d+$/m);
      expect(m).toMatch(/^sluice_queue_corrupt_files_rotated_total\{destination="slow",mode="reliable"\} 0$/m);
      expect(m).toMatch(/^sluice_destination_connected\{destination="slow"\} 0$/m);
      expect(m).toMatch(/^sluice_load_shedding_latched 0$/m);
      expect(m).toMatch(/^sluice_ready 1$/m);
      expect(m).toMatch(/^# TYPE sluice_source_received_records_total counter$/m);
      expect(m).toMatch(/^process_resident_memory_bytes \d+/m);
      expect(m).toMatch(/^process_cpu_seconds_total /m);
      expect(m).toMatch(/^nodejs_eventloop_lag_seconds /m);

      expect((await fetch(`${base}/nope`)).status).toBe(404);
      const post = await fetch(`${base}/metrics`, { method: 'POST' });
      expect(post.status).toBe(405);
      expect(post.headers.get('allow')).toBe('GET, HEAD');
      const page = await fetch(`${base}/`);
      expect(page.headers.get('content-type')).toMatch(/text\/html/);
      expect(await page.text()).toContain('<title>sluice status</title>');
    },
  );

  it(
    'answers only Host names that cannot be rebound: IP literals, localhost and admin.allowed_hosts (421 for ' +
      'others)',
    async () => {
      dir = scratchDir();
      agent = await testAgent(config(dir).replace('admin: {', 'admin: { allowed_hosts: [metrics.example.net],'));
      const [, port] = /:(\d+)$/.exec(agent.adminAddress()!)!;
      const get = (host: string | null, path = '/api/v1/stats') =>
        new Promise<{ status: number; body: string }>((resolve, reject) => {
          const headers: Record<string, string> = host === null ? {} : { host };
          const req = http.get(
            { host: '127.0.0.1', port: Number(port), path, headers, setHost: host !== null },
            (res) => {
              let body = '';
              res.on('data', (d: Buffer) => (body += d.toString()));
              res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
            },
          );
          req.on('error', reject);
        });
      for (const host of [
        `127.0.0.1:${port}`,
        `localhost:${port}`,
        'LOCALHOST',
        `[::1]:${port}`,
        `prom.localhost:${port}`,
        `metrics.example.net:${port}`,
        'Metrics.Example.Net.',
        '10.1.2.3',
      ]) {
        const r = await get(host);
        expect(r.status, host).toBe(200);
        expect(JSON.parse(r.body)).toHaveProperty('pid', process.pid);
      }
      for (const host of [`attacker.example:${port}`, 'localhost.attacker.example', 'example.net', 'a:b:c', '[::1']) {
        for (const path of ['/api/v1/stats', '/metrics', '/']) {
          const r = await get(host, path);
          expect(r.status, `${host} ${path}`).toBe(421);
          expect(r.body).not.toContain('pid');
        }
      }
    },
  );

  it("closes a connection whose headers never finish after headersTimeout (10 s), not after Node's 30 s check " +
    'interval', async () => {
    dir = scratchDir();
    agent = await testAgent(config(dir));
    const [, port] = /:(\d+)$/.exec(agent.adminAddress()!)!;
    const s = net.connect(Number(port), '127.0.0.1');
    s.on('error', () => undefined);
    await new Promise<void>((r) => s.once('connect', () => r()));
    s.resume(); // read the server's 408 and its end
    s.write('GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n'); // and nothing more
    const closed = new Promise<boolean>((r) => s.once('close', () => r(true)));
    const deadline = new Promise<boolean>((r) => setTimeout(() => r(false), 20_000).unref());
    expect(await Promise.race([closed, deadline])).toBe(true);
    s.destroy();
  }, 30_000);

  it('runs on without it when its address is taken, and says so', async () => {
    dir = scratchDir();
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const taken = (blocker.address() as net.AddressInfo).port;
    try {
      const log = memoryLogger();
      agent = await testAgent(config(dir, `127.0.0.1:${taken}`), log.logger);
      expect(agent.adminAddress()).toBeNull();
      // It says so: one error naming what is unavailable and that logs still flow.
      const said = log.lines.filter((l) => /admin listener cannot start/.test(String(l.msg)));
      expect(said).toHaveLength(1);
      expect(said[0]!.level).toBe(50);
      expect(String(said[0]!.msg)).toContain('logs still flow');
      expect(said[0]!.address).toBe(`127.0.0.1:${taken}`);
      await send(portOf(agent, 'in'), ['<13>1 - h app - - - still flowing']);
      await waitFor('the message', () => readLines(`${dir}/out.log`).length === 1);
    } finally {
      blocker.close();
    }
  });

  it('sluice stats prints a table from a running agent, and --watch refreshes it with rates', async () => {
    dir = scratchDir();
    const adminPort = await freePort();
    const tcpPort = await freePort();
    const cfg = path.join(dir, 'sluice.yaml');
    writeFileSync(
      cfg,
      `state_dir: ${dir}/state
admin: { address: "127.0.0.1:${adminPort}" }
sources:
  in: { type: syslog_tcp, address: "127.0.0.1:${tcpPort}" }
destinations:
  out: { type: file, path: ${dir}/out.log, queue: { mode: normal, max_size: 1MiB } }
pipelines:
  p: { from: [in], to: [out] }
`,
    );
    const child = spawn(process.execPath, [cli, 'run', '-c', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    child.stderr.on('data', (d: Buffer) => (log += d.toString()));
    try {
      await waitFor('sluice to start', () => log.includes('admin listener ready'));
      await send(
        tcpPort,
        Array.from({ length: 40 }, (_, i) => `<13>1 - h app - - - stats ${i}`),
      );
      await waitFor('40 delivered', () => readLines(`${dir}/out.log`).length === 40);
      const once = spawnSync(process.execPath, [cli, 'stats', '-c', cfg], { encoding: 'utf8', timeout: 20_000 });
      expect(once.status).toBe(0);
      expect(once.stdout).toMatch(/^sluice \S+, pid \d+, up .*, ready, rss /);
      expect(once.stdout).toMatch(/^SOURCE\s+ADDRESS\s+MSG\/S\s+RECEIVED/m);
      expect(once.stdout).toMatch(new RegExp(`^in\\s+tcp://127\\.0\\.0\\.1:${tcpPort}\\s+-\\s+40\\s`, 'm'));
      expect(once.stdout).toMatch(/^out\s+ok\s+-\s+40\s+0\s+0\s+0\s+normal\s+0\s+0\.0%/m);
      // --watch: at least two whole screens (each followed by the next one's clear), the second with rates.
      const watch = spawn(
        process.execPath,
        [cli, 'stats', '--url', `http://127.0.0.1:${adminPort}`, '--watch', '0.2'],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let screen = '';
      watch.stdout.on('data', (d: Buffer) => (screen += d.toString()));
      await waitFor('three screens', () => screen.split('\x1b[2J').length >= 4, 10_000);
      watch.kill('SIGINT');
      const last = screen.split('\x1b[2J').at(-2)!;
      expect(last).toMatch(/^in\s+\S+\s+0\s+40\s/m); // a rate now, 0 msg/s
      // Nothing listening: a clear error, not a stack trace.
      const down = spawnSync(process.execPath, [cli, 'stats', '--url', `http://127.0.0.1:${await freePort()}`], {
        encoding: 'utf8',
        timeout: 20_000,
      });
      expect(down.status).toBe(1);
      expect(down.stderr).toMatch(/cannot read .*is sluice running/);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.on('exit', r));
    }
  });
});

describe('hostAllowed', () => {
  const names = new Set(['logs.example.org']);
  it.each([
    ['127.0.0.1:9601', true],
    ['192.0.2.7', true],
    ['[2001:db8::1]:9601', true],
    ['localhost', true],
    ['a.b.localhost:80', true],
    ['logs.example.org:9601', true],
    ['evil.example', false],
    ['localhost.evil.example', false],
    ['logs.example.org.evil.example', false],
    ['[2001:db8::1', false],
    ['host:port', false],
    ['', false],
  ])('%s -> %s', (host, ok) => {
    expect(hostAllowed(host, names)).toBe(ok);
  });
  it('answers a request without Host (not a browser)', () => {
    expect(hostAllowed(undefined, names)).toBe(true);
  });
});
