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
  constructor(
    private readonly cfg: string,
    /** Node options before the CLI (`--import` of a test's fault injection), and environment for it. */
    private readonly node: { args?: string[]; env?: () => NodeJS.ProcessEnv } = {},
  ) {}
  start(): void {
    const child = spawn(process.execPath, [...(this.node.args ?? []), cli, 'run', '-c', this.cfg], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, ...this.node.env?.() },
    });
    child.stderr!.on('data', (d: Buffer) => (this.log = (this.log + d.toString()).slice(-20_000)));
    this.child = child;
  }
  /** Resolves when the process exits (at once when it is not running); the signal that ended it, if one did. */
  exited(): Promise<NodeJS.Signals | null> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return Promise.resolve(c?.signalCode ?? null);
    return new Promise((r) => c.on('exit', (_code, signal) => r(signal)));
  }
  async kill(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.on('exit', r));
    c.kill('SIGKILL');
    await exited;
    this.kills++;
  }
  async stop(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.on('exit', r));
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(t);
  }
}
