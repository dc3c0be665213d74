import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { sleep } from './agent.js';
import { ExportReader, type JournalEntry } from '../../src/sources/journald/export-format.js';

const JOURNALD = ['/lib/systemd/systemd-journald', '/usr/lib/systemd/systemd-journald'].find((p) => existsSync(p));

/**
 * A real systemd-journald, run as an ordinary process in a private mount namespace: its socket
 * directory (/run/systemd/journal) and /run/log are bind mounts of directories under `dir`, so the
 * journal files it writes (`journal/`) and its sockets (`sockets/`) are reachable from outside. Its
 * config turns off rate limiting, kernel messages and forwarding. Needs root (unshare, mount).
 */
export class TestJournald {
  readonly journal: string;
  readonly sockets: string;
  private child: ChildProcess | null = null;

  constructor(readonly dir: string) {
    this.journal = path.join(dir, 'log', 'journal');
    this.sockets = path.join(dir, 'sockets');
  }

  /** The socket `logger -u` and syslog(3) write to. */
  get devLog(): string {
    return path.join(this.sockets, 'dev-log');
  }

  async start(): Promise<void> {
    if (!JOURNALD) throw new Error('systemd-journald is not installed (scripts/install-peers.sh installs it)');
    mkdirSync(this.journal, { recursive: true });
    mkdirSync(this.sockets, { recursive: true });
    const conf = path.join(this.dir, 'journald.conf');
    writeFileSync(
      conf,
      '[Journal]\nStorage=volatile\nRateLimitIntervalSec=0\nRateLimitBurst=0\nReadKMsg=no\nForwardToSyslog=no\n' +
        'ForwardToWall=no\nForwardToConsole=no\nForwardToKMsg=no\nRuntimeMaxFileSize=64M\nRuntimeMaxUse=512M\n',
    );
    // The mount points may be missing on a host where journald never ran (made in /run, a tmpfs).
    const script =
      'mkdir -p /run/systemd/journal /run/log && ' +
      `mount --bind ${this.sockets} /run/systemd/journal && mount --bind ${path.join(this.dir, 'log')} /run/log && ` +
      `mount --bind ${conf} /etc/systemd/journald.conf && exec ${JOURNALD}`;
    const child = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    this.child = child;
    for (let i = 0; i < 100 && !existsSync(path.join(this.sockets, 'socket')); i++) await sleep(50);
    if (!existsSync(path.join(this.sockets, 'socket')))
      throw new Error(`systemd-journald did not start (needs root for unshare and mount): ${stderr}`);
  }

  /** The directory of the journal files (the machine id's). */
  get files(): string {
    const ids = readdirSync(this.journal);
    return path.join(this.journal, ids[0]!);
  }

  /**
   * Sends entries over journald's native protocol (python3's socket, as sd_journal_send does):
   * each a list of fields, a Buffer value sent with its length so it may hold any bytes.
   */
  send(entries: [string, string | Buffer][][]): void {
    const payload = entries.map((fields) =>
      fields.map(([k, v]) => [k, (typeof v === 'string' ? Buffer.from(v) : v).toString('base64')]),
    );
    const py = `
import socket, json, sys, base64, struct
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
for fields in json.load(sys.stdin):
    out = b''
    for k, v in fields:
        v = base64.b64decode(v)
        out += k.encode() + b'\\n' + struct.pack('<Q', len(v)) + v + b'\\n'
    s.sendto(out, sys.argv[1])
`;
    const r = spawnSync('python3', ['-c', py, path.join(this.sockets, 'socket')], {
      input: JSON.stringify(payload),
      encoding: 'utf8',
      maxBuffer: 64 << 20,
    });
    if (r.status !== 0) throw new Error(`sending to journald failed: ${r.stderr}`);
  }

  /** Runs a command inside a mount namespace where /run/systemd/journal is this journald's (for systemd-cat). */
  run(command: string, input?: string): void {
    const r = spawnSync(
      'unshare',
      ['-m', '--propagation', 'private', 'sh', '-c', `mount --bind ${this.sockets} /run/systemd/journal && ${command}`],
      { input, encoding: 'utf8' },
    );
    if (r.status !== 0) throw new Error(`${command} failed: ${r.stderr}`);
  }

  /** Closes the active journal file and starts a new one (SIGUSR2), as journald does when a file is full. */
  async rotate(): Promise<void> {
    const before = readdirSync(this.files).length;
    this.child?.kill('SIGUSR2');
    for (let i = 0; i < 100 && readdirSync(this.files).length === before; i++) await sleep(20);
  }

  /** Every entry of the journal after `cursor` (all without), as `journalctl --output=export` gives them. */
  export(cursor?: string): JournalEntry[] {
    const r = spawnSync(
      'journalctl',
      [`--directory=${this.journal}`, '--output=export', '--no-pager', ...(cursor ? [`--after-cursor=${cursor}`] : [])],
      { maxBuffer: 512 << 20 },
    );
    const entries: JournalEntry[] = [];
    new ExportReader(1 << 20).push(r.stdout, entries);
    return entries;
  }

  /** Entries in the journal (all of them), read with journalctl. */
  count(): number {
    const r = spawnSync('journalctl', [`--directory=${this.journal}`, '--output=cat', '--no-pager', '-q'], {
      encoding: 'utf8',
      maxBuffer: 512 << 20,
    });
    return r.stdout.split('\n').filter((l) => l !== '').length;
  }

  async stop(): Promise<void> {
    const c = this.child;
    this.child = null;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    await Promise.race([exited, sleep(5000)]);
    if (c.exitCode === null) c.kill('SIGKILL');
  }
}
