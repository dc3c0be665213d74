import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Real peers, unpacked from Debian's packages by scripts/install-peers.sh into .peers/. */
export const PEERS_DIR = process.env.SLUICE_PEERS_DIR ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../.peers');

function missing(what: string): Error {
  return new Error(`${what} is missing: run "bash scripts/install-peers.sh" (npm test runs it) — this test needs the real peer and will not pass without it`);
}

export function loggen(): { bin: string; env: NodeJS.ProcessEnv } {
  const root = path.join(PEERS_DIR, 'syslog-ng');
  const bin = path.join(root, 'usr/bin/loggen');
  if (!existsSync(bin)) throw missing(`syslog-ng's loggen (${bin})`);
  return {
    bin,
    env: {
      ...process.env,
      LD_LIBRARY_PATH: [path.join(root, 'usr/lib/syslog-ng'), path.join(root, 'usr/lib/x86_64-linux-gnu'), path.join(root, 'lib/x86_64-linux-gnu')].join(':'),
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

/** Runs loggen; resolves with its stderr summary. */
export function runLoggen(args: string[], timeoutMs = 60_000): Promise<string> {
  const { bin, env } = loggen();
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`loggen did not finish in ${timeoutMs} ms: ${out}`));
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`loggen exited with ${code}: ${out}`));
    });
  });
}
