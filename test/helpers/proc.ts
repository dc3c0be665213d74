import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** The built CLI (npm test builds it first). */
export const cli = path.join(root, 'dist/cli.js');

/** `sluice run -c cfg` as a process of its own, for tests that SIGKILL it and start it again. */
export class Proc {
  child: ChildProcess | null = null;
  log = '';
  kills = 0;
  constructor(private readonly cfg: string) {}
  start(): void {
    const child = spawn(process.execPath, [cli, 'run', '-c', this.cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr!.on('data', (d: Buffer) => (this.log = (this.log + d.toString()).slice(-20_000)));
    this.child = child;
  }
  async kill(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise((r) => c.on('exit', r));
    c.kill('SIGKILL');
    await exited;
    this.kills++;
  }
  async stop(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise((r) => c.on('exit', r));
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(t);
  }
}
