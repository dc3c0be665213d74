import { spawnSync } from 'node:child_process';
import { appendFileSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Agent } from '../../src/agent.js';
import { inspectQueueFile } from '../../src/queue/disk/inspect.js';
import { portOf, readLines, removeDir, sleep, startAgent, tempDir, waitFor } from '../helpers/agent.js';

// Load shedding on a real filesystem that fills up or turns read-only: a small tmpfs this test mounts.

function mount(args: string[]): void {
  const r = spawnSync('mount', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`mount ${args.join(' ')} failed (the test needs root): ${r.stderr}`);
}

async function readyz(agent: Agent): Promise<{ status: number; body: { ready: boolean; reasons: string[] } }> {
  const r = await fetch(`http://${agent.adminAddress()}/readyz`);
  return { status: r.status, body: (await r.json()) as { ready: boolean; reasons: string[] } };
}

async function metric(agent: Agent, name: string): Promise<string | undefined> {
  const text = await (await fetch(`http://${agent.adminAddress()}/metrics`)).text();
  return new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1];
}

describe('load-shedding gate', () => {
  let dir: string;
  let fs: string;
  let agent: Agent | undefined;
  const after: (() => void)[] = [];
  afterEach(async () => {
    for (const f of after.splice(0)) f();
    await agent?.stop().catch(() => undefined);
    agent = undefined;
    spawnSync('umount', ['-l', fs]);
    removeDir(dir);
  });

  function setup(sizeMiB: number): void {
    dir = tempDir();
    fs = path.join(dir, 'fs');
    mkdirSync(fs);
    mount(['-t', 'tmpfs', '-o', `size=${sizeMiB}m`, 'tmpfs', fs]);
  }

  it('ENOSPC latches after the debounce: TCP intake pauses and /readyz fails; freeing space unlatches after the ' +
    'quiet window', async () => {
    setup(6);
    const filler = path.join(fs, 'filler');
    writeFileSync(filler, Buffer.alloc(3 << 20)); // leaves about 3 MiB for the queue
    agent = await startAgent(`
state_dir: ${fs}/state
admin: { address: "127.0.0.1:0" }
shutdown_timeout: 200ms
load_shedding: { debounce: 100ms, quiet_window: 3s }
sources:
  in: { type: syslog_tcp, address: "127.0.0.1:0" }
destinations:
  down: { type: syslog, address: "127.0.0.1:9", backoff: { initial: 50ms, max: 100ms }, queue: { mode: reliable,
      max_size: 32MiB, sync_interval: 10ms } }
pipelines:
  p: { from: [in], to: [down] }
`);
    // A sender that keeps logging: 50 KB every 20 ms, until the test ends.
    const s = net.connect(portOf(agent, 'in'), '127.0.0.1');
    s.on('error', () => undefined);
    const line = `<13>1 - h app - - - ${'n'.repeat(1000)}\n`;
    const chunk = line.repeat(50);
    const N = 50 * 400;
    let written = 0;
    const timer = setInterval(() => {
      if (written >= N || s.writableLength > 1 << 20) return;
      s.write(chunk);
      written += 50;
    }, 20);
    after.push(() => {
      clearInterval(timer);
      s.destroy();
    });
    await waitFor('the gate to latch', () => agent!.gate.latched, 20_000);
    expect(agent.gate.snapshot().reason).toMatch(/^ENOSPC writing queue down for \d+ ms/);
    const r = await readyz(agent);
    expect(r.status).toBe(503);
    expect(r.body.reasons.join()).toMatch(/load shedding: ENOSPC/);
    expect(await metric(agent, 'sluice_load_shedding_latched')).toBe('1');
    expect(await metric(agent, 'sluice_ready')).toBe('0');
    // Intake has stopped: nothing more is read while latched.
    const before = agent.stats().sources.in!.received;
    await sleep(300);
    expect(agent.gate.latched).toBe(true);
    expect(agent.stats().sources.in!.received).toBe(before);
    expect(before).toBeLessThan(N);
    expect(agent.stats().destinations.down!.queue.stalls).toBeGreaterThan(0);

    rmSync(filler); // the disk has room again
    await waitFor('the gate to open', () => !agent!.gate.latched, 10_000);
    expect((await readyz(agent)).status).toBe(200);
    await waitFor('the rest to be read', () => agent!.stats().sources.in!.received > before, 10_000);
    const q = agent.stats().destinations.down!.queue;
    expect(q.corruption.rotated).toBe(0);
    // The batches whose write failed before the latch are counted, not silently gone.
    expect(q.dropped.write_failed).toBeGreaterThan(0);
    expect(q.pushed - q.dropped.write_failed!).toBe(q.records);
    // Counted once, where the records were lost: the TCP source that cannot send them again says
    // so too, and everything it received is either in the queue or counted lost.
    const src = agent.stats().sources.in!;
    expect(src.dropped.write_failed).toBe(q.dropped.write_failed);
    expect(src.received).toBe(q.records + q.dropped.write_failed!);
    await agent.stop();
    agent = undefined;
    // Whatever was committed is intact on disk.
    const info = await inspectQueueFile(path.join(fs, 'state/queues/down'));
    expect(info.corrupt).toBeNull();
    expect(info.records).toBeGreaterThan(0);
  }, 60_000);

  /** An ext4 filesystem on a loop device that turns read-only on its first error, as a failing disk does. */
  function setupExt4(): { fail: () => void; repair: () => void } {
    dir = tempDir();
    fs = path.join(dir, 'fs');
    mkdirSync(fs);
    const img = path.join(dir, 'disk.img');
    writeFileSync(img, '');
    spawnSync('truncate', ['-s', '64M', img]);
    const mk = spawnSync('mkfs.ext4', ['-q', img], { encoding: 'utf8' });
    if (mk.status !== 0) throw new Error(`mkfs.ext4 failed: ${mk.stderr}`);
    mount(['-o', 'loop,errors=remount-ro', img, fs]);
    const dev = () =>
      path.basename(spawnSync('findmnt', ['-n', '-o', 'SOURCE', fs], { encoding: 'utf8' }).stdout.trim());
    return {
      // ext4's own error path: the kernel remounts it read-only, and every write gets EROFS.
      fail: () => writeFileSync(`/sys/fs/ext4/${dev()}/trigger_fs_error`, 'sluice load-shedding test'),
      // What an operator does: unmount, fsck, mount again.
      repair: () => {
        spawnSync('umount', [fs]);
        spawnSync('e2fsck', ['-fy', img]);
        mount(['-o', 'loop,errors=remount-ro', img, fs]);
      },
    };
  }

  it('EROFS latches at once; file lines read meanwhile are not checkpointed, and all arrive after the disk is ' +
    'repaired', async () => {
    const disk = setupExt4();
    const logs = path.join(dir, 'logs');
    mkdirSync(logs);
    const app = path.join(logs, 'app.log');
    writeFileSync(app, '');
    const out = path.join(dir, 'out.log');
    const yaml = `
state_dir: ${fs}/state
admin: { address: "127.0.0.1:0" }
shutdown_timeout: 200ms
load_shedding: { debounce: 1h, quiet_window: 300ms }
sources:
  app: { type: file, paths: ["${logs}/*.log"], poll_interval: 20ms, checkpoint_interval: 20ms }
destinations:
  out: { type: file, path: ${out}, queue: { mode: reliable, max_size: 4MiB, sync_interval: 10ms } }
pipelines:
  p: { from: [app], to: [out] }
`;
    agent = await startAgent(yaml);
    const lines: string[] = [];
    const write = (n: number) => {
      const batch = Array.from({ length: n }, (_, i) => `line ${lines.length + i + 1} ${'r'.repeat(50)}`);
      lines.push(...batch);
      appendFileSync(app, batch.map((l) => `${l}\n`).join(''));
    };
    write(200);
    await waitFor('the first lines', () => readLines(out).length === 200);
    disk.fail();
    write(300);
    await waitFor('the gate to latch', () => agent!.gate.latched, 10_000);
    expect(agent.gate.snapshot().reason).toMatch(/^EROFS/); // at once, although the debounce is an hour
    const r = await readyz(agent);
    expect(r.status).toBe(503);
    expect(r.body.reasons.join()).toMatch(/EROFS/);
    expect(await metric(agent, 'sluice_load_shedding_latched')).toBe('1');
    await agent.stop();
    agent = undefined;
    disk.repair();
    write(100);
    agent = await startAgent(yaml);
    await waitFor('every line delivered', () => new Set(readLines(out)).size === 600, 20_000);
    expect(new Set(readLines(out))).toEqual(new Set(lines));
    expect(agent.gate.latched).toBe(false);
  }, 60_000);

  it('with quiet_window 0s only a restart opens the gate', async () => {
    const disk = setupExt4();
    agent = await startAgent(`
state_dir: ${fs}/state
admin: { address: "127.0.0.1:0" }
shutdown_timeout: 200ms
load_shedding: { debounce: 1h, quiet_window: 0s }
sources:
  in: { type: syslog_tcp, address: "127.0.0.1:0" }
destinations:
  down: { type: syslog, address: "127.0.0.1:9", queue: { mode: reliable, max_size: 4MiB, sync_interval: 10ms } }
pipelines:
  p: { from: [in], to: [down] }
`);
    disk.fail();
    const s = net.connect(portOf(agent, 'in'), '127.0.0.1');
    s.write('<13>1 - h app - - - on a read-only disk\n');
    await waitFor('the gate to latch', () => agent!.gate.latched, 10_000);
    await sleep(600); // no further write fails (nothing is accepted), yet it stays latched
    expect(agent.gate.latched).toBe(true);
    expect((await readyz(agent)).status).toBe(503);
    s.destroy();
  }, 30_000);
});
