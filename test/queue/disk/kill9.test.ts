import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { checkpointOffset, readLines, removeDir, sleep, tempDir, waitFor } from '../../helpers/agent.js';
import { deadPort } from '../../helpers/net.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const cli = path.join(root, 'dist/cli.js');

function run(cfg: string): ChildProcess {
  const child = spawn(process.execPath, [cli, 'run', '-c', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr!.on('data', () => undefined);
  return child;
}

// A real process under load is killed with SIGKILL, more than once; what its file source had
// acknowledged (checkpointed) must all come out of the reliable queue after the restart.
describe('kill -9 of an agent with a reliable queue', () => {
  it('loses no line that was checkpointed, across repeated SIGKILLs', async () => {
    const dir = tempDir();
    const logs = path.join(dir, 'logs');
    mkdirSync(logs);
    const app = path.join(logs, 'app.log');
    writeFileSync(app, '');
    const port = await deadPort();
    const common = `
state_dir: ${dir}/state
log: { level: warn, format: json }
sources:
  app: { type: file, paths: ["${logs}/*.log"], poll_interval: 20ms, checkpoint_interval: 20ms }
pipelines:
  p: { from: [app], to: [central] }
`;
    const queue = `queue: { mode: reliable, max_size: 64MiB, sync: interval, sync_interval: 10ms }`;
    const down = path.join(dir, 'down.yaml');
    writeFileSync(
      down,
      `${common}destinations:\n  central: { type: syslog, address: "127.0.0.1:${port}", ${queue} }\n`,
    );
    const up = path.join(dir, 'up.yaml');
    const out = path.join(dir, 'delivered.log');
    writeFileSync(up, `${common}destinations:\n  central: { type: file, path: ${out}, ${queue} }\n`);

    let written = 0;
    const write = (n: number) => {
      let text = '';
      for (let i = 0; i < n; i++) text += `line ${written++} ${'x'.repeat(150)}\n`;
      appendFileSync(app, text);
    };
    try {
      const acknowledged: number[] = [];
      for (let round = 0; round < 3; round++) {
        const child = run(down);
        const exited = new Promise((r) => child.on('exit', r));
        const before = checkpointOffset(dir);
        // Keep writing while the agent reads, then kill it at a moment the test does not choose.
        for (let i = 0; i < 20; i++) {
          write(500);
          await sleep(5 + Math.floor(Math.random() * 20));
        }
        await waitFor('the checkpoint to move', () => checkpointOffset(dir) > before, 20_000);
        await sleep(Math.floor(Math.random() * 50));
        acknowledged.push(checkpointOffset(dir));
        child.kill('SIGKILL');
        await exited;
      }
      // The destination comes back: everything checkpointed, and then everything else, arrives.
      const child = run(up);
      try {
        await waitFor('every line delivered', () => new Set(readLines(out)).size >= written, 60_000);
      } finally {
        child.kill('SIGTERM');
        await new Promise((r) => child.on('exit', r));
      }
      const delivered = readLines(out);
      const unique = new Set(delivered);
      const content = readFileSync(app, 'utf8');
      const lastAck = Math.max(...acknowledged);
      const ackedLines = content.slice(0, lastAck).split('\n').filter(Boolean);
      for (const line of ackedLines) expect(unique.has(line)).toBe(true);
      expect(unique.size).toBe(written);
      expect(ackedLines.length).toBeGreaterThan(0);
      expect(existsSync(path.join(dir, 'state/queues/central/queue.sq'))).toBe(true);
    } finally {
      removeDir(dir);
    }
  }, 120_000);
});
