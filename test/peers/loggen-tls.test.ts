import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { removeDir, stablePort, tempDir, waitFor } from '../helpers/agent.js';
import { runLoggen } from '../helpers/peers.js';
import { makePki } from '../helpers/tls.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const N = 200_000;

/** Each loggen sequence number in the file, counted. */
function sequences(file: string): Map<number, number> {
  const seen = new Map<number, number>();
  let text = '';
  try {
    text = readFileSync(file, 'latin1');
  } catch {
    return seen;
  }
  for (const m of text.matchAll(/seq: (\d+)/g)) seen.set(Number(m[1]), (seen.get(Number(m[1])) ?? 0) + 1);
  return seen;
}

// loggen sends over TLS and closes without ever reading. A TLS 1.3 server's session tickets then
// sit unread at the client, whose close becomes a reset that throws away what it had not yet sent
// (6,000 to 15,000 of 20,000 arrived before sluice turned tickets off). Every message loggen sent
// must arrive, at full speed, however sluice is started.
describe('loggen over TLS at full speed (real peer: syslog-ng loggen)', () => {
  let dir: string;
  let child: ChildProcess | null = null;

  afterEach(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((r) => child!.once('exit', r));
      child.kill('SIGKILL');
      await gone;
    }
    child = null;
    removeDir(dir);
  });

  for (const start of [
    {
      name: 'bin/sluice (node started with its OpenSSL settings)',
      argv: (cfg: string) => [path.join(root, 'bin/sluice'), 'run', '-c', cfg],
      relaunch: false,
    },
    {
      name: 'node dist/cli.js (sluice starts node again with them)',
      argv: (cfg: string) => [process.execPath, path.join(root, 'dist/cli.js'), 'run', '-c', cfg],
      relaunch: true,
    },
  ]) {
    it(`delivers all ${N} octet-counted messages, started as ${start.name}`, async () => {
      dir = tempDir();
      const pki = makePki(dir);
      const port = await stablePort();
      const out = path.join(dir, 'out.log');
      const cfg = path.join(dir, 'sluice.yaml');
      writeFileSync(
        cfg,
        `state_dir: ${dir}/state
log: { level: info, format: json }
admin: { enabled: false }
sources:
  tls: { type: syslog_tcp, address: "127.0.0.1:${port}", tls: { cert: ${pki.serverCert}, key: ${pki.serverKey} } }
destinations:
  f: { type: file, path: ${out} }
pipelines:
  p: { from: [tls], to: [f] }
`,
      );
      const [cmd, ...args] = start.argv(cfg);
      const proc = spawn(cmd!, args, {
        stdio: ['ignore', 'ignore', 'pipe'],
        env: { ...process.env, SLUICE_RELAUNCHED: '' },
      });
      child = proc;
      let log = '';
      proc.stderr!.on('data', (d: Buffer) => (log += d.toString()));
      await waitFor('sluice listening', () => /sluice is running/.test(log), 20_000);
      expect(/starting node again with TLS 1.3 session tickets off/.test(log)).toBe(start.relaunch);
      expect(log).not.toMatch(/session tickets are on/);

      // -U: TLS; -P: RFC 5424 octet counting; -I: no 10 s cut-off.
      const summary = await runLoggen(
        ['-U', '-P', '-s', '200', '-r', '10000000', '-I', '120', '-n', String(N), '127.0.0.1', String(port)],
        180_000,
      );
      expect(summary).toMatch(new RegExp(`count=${N}`));
      await waitFor(`${N} messages in the file`, () => sequences(out).size >= N, 60_000);
      const seen = sequences(out);
      expect(seen.size).toBe(N);
      expect([...seen.values()].every((c) => c === 1)).toBe(true);
      expect([...seen.keys()].reduce((a, b) => Math.max(a, b), 0)).toBe(N - 1);

      // A clean stop through the launcher or the relaunching parent stops the child too.
      const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
      proc.kill('SIGTERM');
      expect(await exited).toBe(0);
      if (start.relaunch) {
        const pids = spawnSync('pgrep', ['-f', cfg], { encoding: 'utf8' }).stdout.trim();
        expect(pids).toBe('');
      }
    }, 300_000);
  }
});
