import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { FileDeadLetters } from '../../src/destinations/dead-letters.js';
import { silentLogger } from '../../src/log.js';
import { ReliableQueue } from '../../src/queue/disk/reliable-queue.js';
import { QUEUE_FILE } from '../../src/queue/layout.js';
import { LogRecord, type RecordOrigin } from '../../src/record.js';
import { scratchDir, testAgent, waitFor } from '../helpers/agent.js';
import { testQueueOptions } from '../helpers/records.js';
import { SourceCounters } from '../../src/stats.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const cli = path.join(root, 'dist/cli.js');
const sluice = (args: string[]) =>
  spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 30_000, cwd: root });

const origin: RecordOrigin = {
  source: 'app',
  from: '/var/log/app.log',
  format: 'syslog',
  lenient: true,
  counters: new SourceCounters(),
};
const T0 = Date.UTC(2026, 0, 2, 3, 4, 5);
const line = (i: number) => `<13>1 - web01 app - - - queued ${i}`;

/** A reliable queue in `<state>/queues/<name>` holding records 5..19 (0..4 acknowledged). */
async function makeQueue(state: string, name: string): Promise<string> {
  const dir = path.join(state, 'queues', name);
  const q = await ReliableQueue.open(name, dir, testQueueOptions());
  await q.push(Array.from({ length: 20 }, (_, i) => new LogRecord(Buffer.from(line(i)), T0 + i * 1000, origin)));
  let taken = 0;
  for (let i = 0; i < 100 && taken < 5; i++) {
    taken += q.take(5 - taken).length;
    if (taken < 5) await q.waitForRecords();
  }
  q.ack(5);
  await q.dispose();
  return dir;
}

function damage(dir: string, i: number): void {
  const file = path.join(dir, QUEUE_FILE);
  const b = readFileSync(file);
  const at = b.indexOf(Buffer.from(line(i)));
  b[at + 20]! ^= 0xff;
  writeFileSync(file, b);
}

const expected = (from: number, to: number, skip = -1) =>
  Array.from({ length: to - from }, (_, k) => from + k)
    .filter((i) => i !== skip)
    .map(line);

describe('sluice queue tools', () => {
  let dir: string;

  it(
    'dead-letters lists what destinations set aside, and --resend sends it again once the cause is ' + 'fixed',
    async () => {
      dir = scratchDir();
      const state = path.join(dir, 'state');
      const file = path.join(state, 'dead-letters', 'hosts.jsonl');
      const stats = { deadLettered: {}, deadLetterDropped: 0 };
      const rec = (i: number) => new LogRecord(Buffer.from(`<13>1 - bad app - - - parked ${i}`), T0 + i, origin);
      await new FileDeadLetters(file, 'hosts', silentLogger()).put(
        [0, 1, 2].map((i) => ({
          record: rec(i),
          reason: 'EISDIR',
          error: 'EISDIR: illegal operation on a directory',
          attempts: 1,
        })),
        stats,
      );
      const ls = sluice(['queue', 'dead-letters', state]);
      expect(ls.status).toBe(0);
      expect(ls.stdout).toContain(`${file}: 3 record(s) (EISDIR 3)`);
      expect(ls.stdout).toContain('<13>1 - bad app - - - parked 2');
      const json = sluice(['queue', 'dead-letters', file, '--json'])
        .stdout.trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { reason: string; received_at: string });
      expect(json.map((j) => [j.reason, j.received_at])).toEqual(
        [0, 1, 2].map((i) => ['EISDIR', new Date(T0 + i).toISOString()]),
      );
      // The cause (out/bad.log was a directory) is gone: the records go through the destination again.
      const config = path.join(dir, 'sluice.yaml');
      writeFileSync(
        config,
        `state_dir: ${state}\nsources:\n  in: { type: syslog_udp, address: "127.0.0.1:0" }\ndestinations:\n  hosts: ` +
          `{ type: file, path: "${dir}/out/\${HOST}.log" }\npipelines:\n  p: { from: [in], to: [hosts] }\n`,
      );
      const resend = sluice(['queue', 'dead-letters', file, '--resend', '--to', 'hosts', '-c', config]);
      expect(resend.stderr).toBe('');
      expect(resend.stdout).toMatch(/delivered 3, set aside again 0, left 0/);
      expect(resend.status).toBe(0);
      expect(readFileSync(path.join(dir, 'out/bad.log'), 'utf8').trim().split('\n')).toEqual(
        [0, 1, 2].map((i) => `<13>1 - bad app - - - parked ${i}`),
      );
      expect(existsSync(file)).toBe(false);
      expect(
        readdirSync(path.join(state, 'dead-letters')).filter((f) => f.startsWith('hosts.jsonl.resent-')),
      ).toHaveLength(1);
    },
  );

  it('info and cat read a queue without changing it', async () => {
    dir = scratchDir();
    const q = await makeQueue(path.join(dir, 'state'), 'central');
    const before = readFileSync(path.join(q, QUEUE_FILE));
    const info = sluice(['queue', 'info', q]);
    expect(info.status).toBe(0);
    expect(info.stdout).toMatch(/destination: central/);
    expect(info.stdout).toMatch(/mode:\s+reliable/);
    expect(info.stdout).toMatch(/status:\s+ok/);
    expect(info.stdout).toMatch(/records:\s+15 unacknowledged/);
    expect(info.stdout).toContain(`oldest:      ${new Date(T0 + 5000).toISOString()}`);
    const json = JSON.parse(sluice(['queue', 'info', path.join(q, QUEUE_FILE), '--json']).stdout) as {
      records: number;
      headSeq: number;
      tailSeq: number;
      corrupt: null;
    };
    expect(json).toMatchObject({ records: 15, headSeq: 5, tailSeq: 20, corrupt: null });
    const cat = sluice(['queue', 'cat', q]);
    expect(cat.status).toBe(0);
    expect(cat.stdout.trimEnd().split('\n')).toEqual(expected(5, 20));
    const catJson = sluice(['queue', 'cat', q, '--json'])
      .stdout.trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as { seq: number; source: string; raw: string });
    expect(catJson[0]).toMatchObject({ seq: 5, source: 'app', raw: line(5) });
    expect(readFileSync(path.join(q, QUEUE_FILE)).equals(before)).toBe(true);
  });

  it('reports a damaged file, prints what a salvage keeps, and salvages into a fresh queue', async () => {
    dir = scratchDir();
    const q = await makeQueue(path.join(dir, 'state'), 'central');
    damage(q, 12);
    const before = readFileSync(path.join(q, QUEUE_FILE));
    const info = sluice(['queue', 'info', q]);
    expect(info.status).toBe(1);
    expect(info.stdout).toMatch(/status:\s+CORRUPT: record at position \d+ \(sequence 12\)/);
    const cat = sluice(['queue', 'cat', q]);
    expect(cat.status).toBe(1);
    expect(cat.stderr).toMatch(/damaged/);
    expect(cat.stdout.trimEnd().split('\n')).toEqual(expected(5, 20, 12));
    const into = path.join(dir, 'salvaged');
    const salvage = sluice(['queue', 'salvage', q, '--into', into]);
    expect(salvage.status).toBe(0);
    expect(salvage.stdout).toMatch(/salvaged 14 record\(s\)/);
    expect(sluice(['queue', 'cat', into]).stdout.trimEnd().split('\n')).toEqual(expected(5, 20, 12));
    expect(sluice(['queue', 'info', into]).status).toBe(0);
    expect(readFileSync(path.join(q, QUEUE_FILE)).equals(before)).toBe(true);
    // Salvaging twice into the same place is refused rather than overwriting.
    expect(sluice(['queue', 'salvage', q, '--into', into]).status).not.toBe(0);
  });

  it('ls lists every queue and marks orphans; check reports corrupt queues and orphans before start', async () => {
    dir = scratchDir();
    const state = path.join(dir, 'state');
    const central = await makeQueue(state, 'central');
    await makeQueue(state, 'retired');
    const cfg = path.join(dir, 'sluice.yaml');
    writeFileSync(
      cfg,
      `state_dir: ${state}
sources:
  in: { type: syslog_udp, address: "127.0.0.1:0" }
destinations:
  central: { type: syslog, address: "127.0.0.1:9", queue: { mode: reliable, max_size: 1MiB } }
pipelines:
  p: { from: [in], to: [central] }
`,
    );
    const ls = sluice(['queue', 'ls', '-c', cfg]);
    expect(ls.status, ls.stdout + ls.stderr).toBe(0);
    expect(ls.stdout).toMatch(/^central\s+reliable\s+15\s.*ok$/m);
    expect(ls.stdout).toMatch(/^retired\s+reliable\s+15\s.*ok, ORPHAN$/m);
    const plain = sluice(['queue', 'ls', state]);
    expect(plain.stdout).not.toMatch(/ORPHAN/); // without a config, nothing to compare with
    let check = sluice(['check', '-c', cfg]);
    expect(check.status, check.stdout + check.stderr).toBe(0);
    expect(check.stdout).toMatch(/queue central: ok, 15 record\(s\) waiting/);
    expect(check.stdout).toMatch(/queue retired: ORPHAN/);
    damage(central, 7);
    check = sluice(['check', '-c', cfg]);
    expect(check.status).toBe(1);
    expect(check.stdout).toMatch(/queue central: CORRUPT .*sequence 7.*14 valid record\(s\) are salvaged/);
  });

  it(
    'drain sends an orphan through a configured destination and removes its files once all are ' + 'delivered',
    async () => {
      dir = scratchDir();
      const state = path.join(dir, 'state');
      const orphan = await makeQueue(state, 'retired');
      const rx = await receiver();
      const cfg = path.join(dir, 'sluice.yaml');
      writeFileSync(cfg, config(state, rx.port));
      try {
        const r = await sluiceAsync(['queue', 'drain', orphan, '--to', 'central', '-c', cfg]);
        expect(r.status).toBe(0);
        expect(r.stdout).toMatch(/draining 15 record\(s\)/);
        expect(r.stdout).toMatch(/drained 15 record\(s\); removed the queue files/);
        expect(rx.got).toEqual(expected(5, 20));
        expect(existsSync(orphan)).toBe(false);
      } finally {
        rx.close();
      }
    },
  );

  it('an agent reports an orphan at start and leaves it alone; with drain_orphans it drains it', async () => {
    dir = scratchDir();
    const state = path.join(dir, 'state');
    const orphan = await makeQueue(state, 'retired');
    const rx = await receiver();
    try {
      let agent = await testAgent(config(state, rx.port));
      expect(agent.stats().orphans).toEqual({
        retired: { dir: orphan, records: 15, drainingInto: null, drained: false },
      });
      await agent.stop();
      expect(existsSync(path.join(orphan, QUEUE_FILE))).toBe(true);
      expect(rx.got).toEqual([]);
      agent = await testAgent(`${config(state, rx.port)}drain_orphans: { retired: central }\n`);
      await waitFor('the orphan to be drained', () => agent.stats().orphans.retired?.drained === true);
      expect(rx.got).toEqual(expected(5, 20));
      expect(existsSync(orphan)).toBe(false);
      await agent.stop();
    } finally {
      rx.close();
    }
  });

  it("counts what happens to a drained orphan's records under their source's name, in the agent's stats", async () => {
    dir = scratchDir();
    const state = path.join(dir, 'state');
    const orphan = await makeQueue(state, 'retired');
    // One more record whose receive time is not a time: the drain's decoder repairs it, counted.
    const q = await ReliableQueue.open('retired', orphan, testQueueOptions());
    await q.push([new LogRecord(Buffer.from(line(20)), Number.NaN, origin)]);
    await q.dispose();
    const rx = await receiver();
    try {
      const agent = await testAgent(`${config(state, rx.port)}drain_orphans: { retired: central }\n`);
      await waitFor('the orphan to be drained', () => agent.stats().orphans.retired?.drained === true);
      expect(rx.got).toEqual(expected(5, 21));
      // `app` is not a source of this agent: its counters are kept, and reported, under its name.
      expect(agent.stats().sources.app).toMatchObject({
        address: '(not configured)',
        repaired: { invalid_time: 1 },
      });
      expect(agent.stats().sources.in!.repaired).toEqual({});
      await agent.stop();
    } finally {
      rx.close();
    }
  });
});

function config(state: string, port: number): string {
  return `state_dir: ${state}
shutdown_timeout: 200ms
sources:
  in: { type: syslog_udp, address: "127.0.0.1:0" }
destinations:
  central: { type: syslog, address: "127.0.0.1:${port}", framing: lf }
pipelines:
  p: { from: [in], to: [central] }
`;
}

async function receiver(): Promise<{ port: number; got: string[]; close: () => void }> {
  const got: string[] = [];
  const server = net.createServer((c) => {
    let buf = '';
    c.on('data', (d: Buffer) => {
      buf += d.toString();
      const parts = buf.split('\n');
      buf = parts.pop()!;
      got.push(...parts);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as net.AddressInfo).port, got, close: () => server.close() };
}

function sluiceAsync(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('exit', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}
