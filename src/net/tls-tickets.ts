import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { SluiceConfig } from '../config/schema.js';

/**
 * TLS 1.3 session tickets and clients that never read.
 *
 * A TLS 1.3 server sends session tickets after the handshake. A syslog client that only writes
 * (loggen, many appliances) never reads them; when it closes, its kernel answers the unread bytes
 * with a reset, and discards what it had not yet sent. Node.js has no option to send no tickets,
 * but OpenSSL reads `NumTickets = 0` from a configuration file given when node starts
 * (`--openssl-config`); `bin/openssl.cnf` is that file and `bin/sluice` passes it.
 */
export const OPENSSL_CONFIG = fileURLToPath(new URL('../../bin/openssl.cnf', import.meta.url));

/** The OpenSSL configuration this process started with: `--openssl-config`, else OPENSSL_CONF. */
function startedWith(): string | undefined {
  const args = process.execArgv;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a.startsWith('--openssl-config=')) return a.slice('--openssl-config='.length);
    if (a === '--openssl-config') return args[i + 1];
  }
  return process.env.OPENSSL_CONF || undefined;
}

/** True when the OpenSSL configuration node started with turns session tickets off. */
export function ticketsOff(): boolean {
  const file = startedWith();
  if (!file) return false;
  try {
    return /^\s*NumTickets\s*=\s*0\s*$/m.test(readFileSync(file, 'utf8'));
  } catch {
    return false;
  }
}

/** Sources that take TLS connections from clients that may never read. */
export function tlsListeners(config: SluiceConfig): string[] {
  return Object.entries(config.sources)
    .filter(([, s]) => 'tls' in s && s.tls !== undefined)
    .map(([name]) => name);
}

/**
 * Runs this same command again in a child node that starts with OPENSSL_CONFIG, and waits for it:
 * SIGTERM, SIGINT and SIGHUP are passed on, and the child's exit is this process's. The child
 * stops (as on SIGTERM) if this process dies, through the IPC channel between them. Resolves to
 * the exit code.
 */
export function relaunchWithoutTickets(): Promise<number> {
  const child = spawn(
    process.execPath,
    [...process.execArgv, `--openssl-config=${OPENSSL_CONFIG}`, ...process.argv.slice(1)],
    {
      stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
    },
  );
  const forward = (signal: NodeJS.Signals) => () => child.kill(signal);
  const handlers = (['SIGTERM', 'SIGINT', 'SIGHUP'] as const).map((s) => [s, forward(s)] as const);
  for (const [s, h] of handlers) process.on(s, h);
  return new Promise((resolve) => {
    child.once('error', () => resolve(1));
    child.once('exit', (code, signal) => {
      for (const [s, h] of handlers) process.off(s, h);
      resolve(code ?? 128 + (signal === 'SIGKILL' ? 9 : signal === 'SIGTERM' ? 15 : 1));
    });
  });
}
