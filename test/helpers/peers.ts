import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Real peers, unpacked from Debian's packages by scripts/install-peers.sh into .peers/. */
export const PEERS_DIR =
  process.env.SLUICE_PEERS_DIR ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../.peers');

function missing(what: string): Error {
  return new Error(
    `${what} is missing: run "bash scripts/install-peers.sh" (npm test runs it) — ` +
      'this test needs the real peer and will not pass without it',
  );
}

export function loggen(): { bin: string; env: NodeJS.ProcessEnv } {
  const root = path.join(PEERS_DIR, 'syslog-ng');
  const bin = path.join(root, 'usr/bin/loggen');
  if (!existsSync(bin)) throw missing(`syslog-ng's loggen (${bin})`);
  return {
    bin,
    env: {
      ...process.env,
      LD_LIBRARY_PATH: [
        path.join(root, 'usr/lib/syslog-ng'),
        path.join(root, 'usr/lib/x86_64-linux-gnu'),
        path.join(root, 'lib/x86_64-linux-gnu'),
      ].join(':'),
      SYSLOGNG_PREFIX: path.join(root, 'usr'),
    },
  };
}

export function loggerBin(): string {
  for (const p of ['/usr/bin/logger', '/bin/logger']) if (existsSync(p)) return p;
  throw missing('util-linux logger');
}

/** Runs util-linux logger with `args`; resolves when it exits 0. */
export function runLogger(args: string[]): void {
  execFileSync(loggerBin(), args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 10_000 });
}

/**
 * Runs a peer's tool to its end; resolves with its exit code and everything it wrote. Rejects when
 * it is still running after `timeoutMs` (it is killed).
 */
function runTool(
  name: string,
  bin: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${name} did not finish in ${timeoutMs} ms: ${out}`));
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

/** Runs loggen; resolves with its stderr summary. */
export async function runLoggen(args: string[], timeoutMs = 60_000): Promise<string> {
  const { bin, env } = loggen();
  const { code, out } = await runTool('loggen', bin, args, env, timeoutMs);
  if (code !== 0) throw new Error(`loggen exited with ${code}: ${out}`);
  return out;
}

export interface Rsyslog {
  pid: number;
  /** The port its imtcp input listens on, when the config has one with listenPortFileName `<dir>/imtcp.port`. */
  imtcpPort(): Promise<number>;
  /** Ends it: SIGTERM (clean) or SIGKILL (a crash). */
  stop(signal?: NodeJS.Signals): Promise<void>;
  log(): string;
}

/**
 * Starts rsyslogd 8.2302 (unpacked from Debian's packages) in the foreground on `conf`, with its work files in `dir`.
 */
export async function startRsyslog(dir: string, conf: string): Promise<Rsyslog> {
  const root = path.join(PEERS_DIR, 'rsyslog');
  const bin = path.join(root, 'usr/sbin/rsyslogd');
  if (!existsSync(bin)) throw missing(`rsyslogd (${bin})`);
  const { mkdirSync, writeFileSync, readFileSync, rmSync } = await import('node:fs');
  mkdirSync(path.join(dir, 'work'), { recursive: true });
  const file = path.join(dir, 'rsyslog.conf');
  writeFileSync(file, `global(workDirectory="${path.join(dir, 'work')}")\n${conf}\n`);
  rmSync(path.join(dir, 'imtcp.port'), { force: true });
  const lib = path.join(root, 'usr/lib/x86_64-linux-gnu');
  const child = spawn(
    bin,
    ['-n', '-C', '-f', file, '-i', path.join(dir, 'rsyslog.pid'), '-M', path.join(lib, 'rsyslog')],
    {
      env: { ...process.env, LD_LIBRARY_PATH: lib },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let log = '';
  child.stdout.on('data', (d: Buffer) => (log += d.toString()));
  child.stderr.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  return {
    pid: child.pid!,
    log: () => log,
    imtcpPort: async () => {
      const portFile = path.join(dir, 'imtcp.port');
      for (let i = 0; i < 200; i++) {
        if (existsSync(portFile)) {
          const port = Number(readFileSync(portFile, 'utf8').trim());
          if (port > 0) return port;
        }
        await new Promise((r) => setTimeout(r, 25));
      }
      throw new Error(`rsyslog did not write ${portFile}: ${log}`);
    },
    stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
      if (child.exitCode === null) child.kill(signal);
      await exited;
    },
  };
}

/** relp-send and relp-receive, built against librelp-dev by scripts/install-peers.sh. */
export function relpTool(name: 'relp-send' | 'relp-receive'): string {
  const bin = path.join(PEERS_DIR, 'relp-tools', name);
  if (!existsSync(bin)) throw missing(`${name} (${bin})`);
  return bin;
}

/**
 * Runs relp-send: COUNT messages of SIZE bytes over one session with WINDOW; resolves with its exit code and output.
 */
export function runRelpSend(
  port: number,
  count: number,
  window = 128,
  size = 200,
  timeoutMs = 120_000,
): Promise<{ code: number | null; out: string }> {
  return runTool(
    'relp-send',
    relpTool('relp-send'),
    ['127.0.0.1', String(port), String(count), String(window), String(size)],
    process.env,
    timeoutMs,
  );
}
