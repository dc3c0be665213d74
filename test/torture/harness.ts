import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkFrame, DATA_START, RECORD_HEADER, RECORD_MAGIC, WRAP_MAGIC } from '../../src/queue/disk/ring-file.js';
import { sleep } from '../helpers/agent.js';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const cli = process.env.SLUICE_CLI ?? path.join(root, 'dist/cli.js');

/** A seeded generator (mulberry32): the same SEED gives the same run of choices. */
export function seeded(seed: number): {
  next(): number;
  int(lo: number, hi: number): number;
  pick<T>(xs: readonly T[]): T;
  chance(p: number): boolean;
} {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    pick: (xs) => xs[Math.floor(next() * xs.length)]!,
    chance: (p) => next() < p,
  };
}

/**
 * One sluice process (`sluice run`), killed and started again at will; its JSON log is kept. One
 * that exits on its own is started again half a second later, as systemd's Restart=on-failure does,
 * and the exit is recorded.
 */
export class SluiceProcess {
  private child: ChildProcess | null = null;
  /** Every log line it wrote, across all its lives. */
  readonly logLines: string[] = [];
  private partial = '';
  kills = 0;
  starts = 0;
  /** Exits nobody asked for: the code or signal and the last lines it logged. */
  readonly crashes: string[] = [];
  private expectExit = false;
  private restartTimer: NodeJS.Timeout | null = null;

  constructor(private readonly config: string) {}

  get running(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  start(): void {
    this.cancelRestart();
    const child = spawn(process.execPath, [cli, 'run', '-c', this.config], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr!.on('data', (d: Buffer) => {
      const text = this.partial + d.toString();
      const lines = text.split('\n');
      this.partial = lines.pop()!;
      this.logLines.push(...lines);
    });
    child.once('exit', (code, signal) => {
      if (!this.expectExit) {
        this.crashes.push(
          `exit ${code ?? signal}: ${this.logLines.slice(-3).join(' | ').slice(0, 2000)} ` +
            `${this.partial.slice(0, 2000)}`,
        );
        this.restartTimer = setTimeout(() => {
          this.restartTimer = null;
          if (!this.running) this.start();
        }, 500);
      }
      this.expectExit = false;
    });
    this.child = child;
    this.starts++;
  }

  /** SIGKILL, as a crash or power loss would. */
  async kill(): Promise<void> {
    if (await this.end('SIGKILL')) this.kills++;
  }

  /** SIGTERM: a clean shutdown (SIGKILL after 20 s). */
  async stop(): Promise<void> {
    await this.end('SIGTERM');
  }

  /** Sends `signal` and waits for the exit; false when nothing was running. */
  private async end(signal: NodeJS.Signals): Promise<boolean> {
    this.cancelRestart();
    const c = this.child;
    if (!c || !this.running) return false;
    const exited = new Promise((r) => c.once('exit', r));
    this.expectExit = true;
    c.kill(signal);
    const t = signal === 'SIGKILL' ? undefined : setTimeout(() => c.kill('SIGKILL'), 20_000);
    await exited;
    clearTimeout(t);
    return true;
  }

  private cancelRestart(): void {
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
  }

  /** Log entries (parsed JSON) whose message matches. */
  logged(msg: RegExp): Record<string, unknown>[] {
    const out: Record<string, unknown>[] = [];
    for (const l of this.logLines) {
      if (!l.startsWith('{')) continue;
      try {
        const o = JSON.parse(l) as Record<string, unknown>;
        if (typeof o.msg === 'string' && msg.test(o.msg)) out.push(o);
      } catch {
        // a line cut by a kill
      }
    }
    return out;
  }
}

/** Mounts a tmpfs of `mib` MiB at `dir` (root only: says so loudly otherwise). */
export function mountTmpfs(dir: string, mib: number): void {
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${mib}m`, 'tmpfs', dir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`mount -t tmpfs failed (the full-disk scenario needs root): ${r.stderr}`);
}

export function unmount(dir: string): void {
  spawnSync('umount', ['-l', dir]);
}

/** Counts each `L<number> ` line in a file: number -> times seen. Reads bytes, never one string of the whole file. */
export function countLines(file: string): Map<number, number> {
  const seen = new Map<number, number>();
  if (!existsSync(file)) return seen;
  const b = readFileSync(file);
  for (let at = 0; at < b.length; ) {
    const nl = b.indexOf(0x0a, at);
    const end = nl < 0 ? b.length : nl;
    if (b[at] === 0x4c /* L */) {
      let n = 0;
      let i = at + 1;
      while (i < end && b[i]! >= 0x30 && b[i]! <= 0x39) n = n * 10 + b[i++]! - 0x30;
      if (i > at + 1 && b[i] === 0x20) seen.set(n, (seen.get(n) ?? 0) + 1);
    }
    at = end + 1;
  }
  return seen;
}

/** Waits until `count()` stops changing for `quietMs` or reaches `want`; gives up after `timeoutMs`. */
export async function settle(count: () => number, want: number, quietMs: number, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let last = -1;
  let since = Date.now();
  while (Date.now() < deadline) {
    const n = count();
    if (n >= want) return n;
    if (n !== last) {
      last = n;
      since = Date.now();
    } else if (Date.now() - since > quietMs) {
      return n;
    }
    await sleep(200);
  }
  return count();
}

/**
 * The text of line `n`: its number twice (`L<n> #<n># `), so that a byte flipped anywhere in a
 * damaged queue record leaves one copy readable and the loss can be traced to that record.
 */
export function lineHead(n: number): string {
  return `L${n} #${n}# `;
}

/**
 * True when the bytes [from, to) between two valid frames begin as a record did (its magic, at
 * most one byte of it flipped): a record that damage made unreadable. Bytes that begin anywhere
 * else are the leftovers of an older lap's record, overwritten in part once it was acknowledged.
 */
function damagedRecordAt(data: Buffer, from: number, to: number): boolean {
  if (to - from < RECORD_HEADER) return false;
  let differ = 0;
  for (let i = 0; i < 4; i++) if (data[from + i] !== (RECORD_MAGIC >>> (8 * i)) % 256) differ++;
  return differ <= 1;
}

/** Where each missing line was last seen in the agent's queue files. */
export interface LossAccount {
  /** In a record that failed its checks in a rotated-away (`.corrupted-`) file: lost to damage. */
  damaged: number[];
  /** Nowhere in a damaged record: the loss is not one a damaged queue file explains. */
  unexplained: number[];
  /** Of the unexplained: found in an intact record of a rotated-away file, or of the live file. */
  intactInRotated: number[];
  intactInLive: number[];
}

/**
 * Accounts for each missing line, record by record: reads every queue file in `queueDir`, finds
 * the frames that pass their checks, and reads the line numbers in the bytes between them (the
 * records that damage made unreadable, and leftovers of older laps). A missing line is explained
 * only by a damaged record of a rotated-away file: the salvage could not keep it.
 */
export function accountLosses(queueDir: string, missing: readonly number[]): LossAccount {
  const want = new Set(missing);
  const inDamaged = new Set<number>();
  const intactRotated = new Set<number>();
  const intactLive = new Set<number>();
  const numbers = (text: string, into: Set<number>) => {
    // The two copies share no byte: one flipped byte leaves the other whole.
    for (const m of text.matchAll(/L(\d+) |#(\d+)#/g)) {
      const n = Number(m[1] ?? m[2]);
      if (want.has(n)) into.add(n);
    }
  };
  const files = existsSync(queueDir) ? readdirSync(queueDir).filter((f) => /^queue\.sq(\.corrupted-.*)?$/.test(f)) : [];
  for (const f of files) {
    const rotated = f !== 'queue.sq';
    const data = readFileSync(path.join(queueDir, f)).subarray(DATA_START);
    let gapFrom = 0;
    for (let at = 0; at + RECORD_HEADER <= data.length; ) {
      const magic = data.readUInt32LE(at);
      const frame = magic === RECORD_MAGIC || magic === WRAP_MAGIC ? checkFrame(data, at, data.length) : null;
      if (!frame || frame.kind === 'invalid') {
        at++;
        continue;
      }
      const end = at + RECORD_HEADER + (frame.kind === 'record' ? frame.length : 0);
      if (rotated && damagedRecordAt(data, gapFrom, at)) numbers(data.toString('latin1', gapFrom, at), inDamaged);
      if (frame.kind === 'record')
        numbers(data.toString('latin1', at + RECORD_HEADER, end), rotated ? intactRotated : intactLive);
      gapFrom = at = end;
    }
    if (rotated && damagedRecordAt(data, gapFrom, data.length)) numbers(data.toString('latin1', gapFrom), inDamaged);
  }
  const unexplained = missing.filter((n) => !inDamaged.has(n));
  return {
    damaged: missing.filter((n) => inDamaged.has(n)),
    unexplained,
    intactInRotated: unexplained.filter((n) => intactRotated.has(n)),
    intactInLive: unexplained.filter((n) => intactLive.has(n)),
  };
}
