import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { checkpointOffset, readLines, removeDir, sleep, tempDir, waitFor } from '../../helpers/agent.js';
import { deadPort } from '../../helpers/net.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const cli = path.join(root, 'dist/cli.js');
const QOUT = 100;
const OVERFLOW = 400;
const LINES = 5000;

function run(cfg: string): { child: ChildProcess; exited: Promise<unknown> } {
  const child = spawn(process.execPath, [cli, 'run', '-c', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr!.on('data', () => undefined);
  return { child, exited: new Promise((r) => child.on('exit', r)) };
}

/**
 * An agent tails a file into a normal queue while its destination is down, so the first
 * qout_size + mem_buf_length lines sit in memory and the rest in the queue file. It then dies (by
 * SIGKILL or SIGTERM) after checkpointing every line, and comes back with the destination up.
 */
async function scenario(stop: 'SIGKILL' | 'SIGTERM'): Promise<{ delivered: string[]; lines: string[] }> {
  const dir = tempDir();
  try {
    const logs = path.join(dir, 'logs');
    mkdirSync(logs);
    const app = path.join(logs, 'app.log');
    const lines = Array.from({ length: LINES }, (_, i) => `line ${i} ${'x'.repeat(100)}`);
    writeFileSync(app, `${lines.join('\n')}\n`);
    const common = `
state_dir: ${dir}/state
log: { level: warn, format: json }
shutdown_timeout: 300ms
sources:
  app: { type: file, paths: ["${logs}/*.log"], read_from: beginning, poll_interval: 20ms, checkpoint_interval: 20ms }
pipelines:
  p: { from: [app], to: [central] }
`;
    const queue =
      `queue: { mode: normal, qout_size: ${QOUT}, mem_buf_length: ${OVERFLOW}, max_size: 16MiB, ` +
      `sync_interval: 10ms }`;
    const down = path.join(dir, 'down.yaml');
    writeFileSync(
      down,
      `${common}destinations:\n  central: { type: syslog, address: "127.0.0.1:${await deadPort()}", backoff: { ` +
        `initial: 10ms, max: 20ms }, ${queue} }\n`,
    );
    const up = path.join(dir, 'up.yaml');
    const out = path.join(dir, 'delivered.log');
    writeFileSync(up, `${common}destinations:\n  central: { type: file, path: ${out}, format: raw, ${queue} }\n`);

    const first = run(down);
    const size = Buffer.byteLength(`${lines.join('\n')}\n`);
    await waitFor('every line checkpointed', () => checkpointOffset(dir) === size, 20_000);
    await sleep(50); // the queue file part is past its fsync too
    first.child.kill(stop);
    await first.exited;

    const second = run(up);
    try {
      const want = stop === 'SIGKILL' ? LINES - QOUT - OVERFLOW : LINES;
      await waitFor(`${want} lines delivered`, () => existsSync(out) && readLines(out).length >= want, 20_000);
      await sleep(300); // nothing more may come
    } finally {
      second.child.kill('SIGTERM');
      await second.exited;
    }
    return { delivered: readLines(out), lines };
  } finally {
    removeDir(dir);
  }
}

describe('normal queue mode, process death', () => {
  it('after kill -9 loses at most qout_size + mem_buf_length records: exactly the ones that were only in ' +
    'memory', async () => {
    const { delivered, lines } = await scenario('SIGKILL');
    const got = new Set(delivered);
    const missing = lines.filter((l) => !got.has(l));
    expect(missing.length).toBeLessThanOrEqual(QOUT + OVERFLOW);
    // The oldest records were the ones in memory; everything that had spilled to the file survived.
    expect(missing).toEqual(lines.slice(0, QOUT + OVERFLOW));
    expect(delivered).toEqual(lines.slice(QOUT + OVERFLOW));
  }, 60_000);

  it('after a clean shutdown loses nothing and keeps the order', async () => {
    const { delivered, lines } = await scenario('SIGTERM');
    expect(delivered).toEqual(lines);
  }, 60_000);
});
