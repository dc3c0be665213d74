import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { groupId } from '../../src/sources/unix/index.js';
import { memoryLogger, readLines, scratchDir, sleep, startAgent, testAgent, waitFor } from '../helpers/agent.js';

function yaml(dir: string, extra = ''): string {
  return `state_dir: ${dir}/state
admin: { enabled: false }
hostname: agent-host
sources:
  devlog: { type: unix, path: ${dir}/log.sock${extra} }
destinations:
  out: { type: file, path: ${dir}/out.log, format: rfc5424 }
pipelines:
  p: { from: [devlog], to: [out] }
`;
}

/** A group of this host other than root's, from /etc/group. */
function someGroup(): { name: string; gid: number } {
  for (const line of readFileSync('/etc/group', 'utf8').split('\n')) {
    const [name, , gid] = line.split(':');
    if (name && gid && Number(gid) > 0) return { name, gid: Number(gid) };
  }
  throw new Error('no group in /etc/group');
}

describe('unix source (/dev/log)', () => {
  it('takes util-linux logger (LF) and glibc syslog(3) (NUL, multi-line kept) on one socket', async () => {
    const dir = scratchDir('sluice-unix-');
    await testAgent(yaml(dir));
    const sock = path.join(dir, 'log.sock');
    expect(spawnSync('logger', ['-u', sock, '-t', 'viaLogger', '-p', 'auth.warning', 'one from logger']).status).toBe(
      0,
    );
    // glibc's syslog(3) knows only /dev/log: a private mount namespace gives it one that is this socket.
    const py =
      'import syslog; syslog.openlog("pyapp", syslog.LOG_PID, syslog.LOG_LOCAL2); ' +
      'syslog.syslog(syslog.LOG_ERR, "first line\\nsecond line"); syslog.syslog("plain")';
    const r = spawnSync(
      'unshare',
      [
        '-m',
        '--propagation',
        'private',
        'sh',
        '-c',
        `mount -t tmpfs tmpfs /dev && ln -s ${sock} /dev/log && python3 -c '${py}'`,
      ],
      { encoding: 'utf8' },
    );
    expect(r.status, r.stderr).toBe(0);
    const out = path.join(dir, 'out.log');
    // Three messages; the file has four lines, the multi-line message's LF being written as it came.
    await waitFor('three messages', () => readLines(out).length >= 4);
    const lines = readLines(out);
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(/^<36>1 \S+ agent-host viaLogger - - - one from logger$/);
    // The multi-line message is one record (its LF written as it came).
    expect(lines[1]).toMatch(/^<147>1 \S+ agent-host pyapp \d+ - - first line$/);
    expect(lines[2]).toBe('second line');
    expect(lines[3]).toMatch(/^<150>1 \S+ agent-host pyapp \d+ - - plain$/);
  });

  it('replaces a stale socket file left by a process that died', async () => {
    const dir = scratchDir('sluice-unix-stale-');
    const sock = path.join(dir, 'log.sock');
    // A listener killed without closing leaves its socket file.
    const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(sock)})`]);
    await waitFor('the socket file', () => {
      try {
        return statSync(sock).isSocket();
      } catch {
        return false;
      }
    });
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const { logger, lines } = memoryLogger();
    await testAgent(yaml(dir), logger);
    expect(lines.some((l) => l.msg === 'replaced a stale socket file')).toBe(true);
    spawnSync('logger', ['-u', sock, '-t', 't', 'after the stale one']);
    await waitFor('the message', () => readLines(path.join(dir, 'out.log')).length === 1);
  });

  it('refuses a path where a live process listens, naming it; and a path that is not a socket', async () => {
    const dir = scratchDir('sluice-unix-taken-');
    const sock = path.join(dir, 'log.sock');
    const other = net.createServer();
    await new Promise<void>((r) => other.listen(sock, r));
    onTestFinished(() => new Promise<void>((r) => other.close(() => r())));
    await expect(startAgent(yaml(dir))).rejects.toThrow(`${sock} is taken: another process listens on it`);
    const dir2 = scratchDir('sluice-unix-file-');
    writeFileSync(path.join(dir2, 'log.sock'), 'not a socket');
    await expect(startAgent(yaml(dir2))).rejects.toThrow('exists and is not a socket');
    expect(readFileSync(path.join(dir2, 'log.sock'), 'utf8')).toBe('not a socket');
  });

  it('sets the mode and group of the socket file, and removes it at stop', async () => {
    const dir = scratchDir('sluice-unix-mode-');
    const g = someGroup();
    const agent = await testAgent(yaml(dir, `, mode: "0620", group: ${g.name}`));
    const st = statSync(path.join(dir, 'log.sock'));
    expect(st.mode & 0o777).toBe(0o620);
    expect(st.gid).toBe(g.gid);
    expect(groupId(g.name)).toBe(g.gid);
    expect(() => groupId('no-such-group-here')).toThrow(/not in \/etc\/group/);
    await agent.stop();
    await sleep(10);
    expect(() => statSync(path.join(dir, 'log.sock'))).toThrow(/ENOENT/);
  });
});
