import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeDir, tempDir, waitFor } from '../helpers/agent.js';
import { PEERS_DIR } from '../helpers/peers.js';

// The Debian package, built with `npm run package`, installed with dpkg into a clean bookworm root
// (debootstrap, made by scripts/install-peers.sh), and used there: the real install path.

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const version = (JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8')) as { version: string }).version;
const template = path.join(PEERS_DIR, 'bookworm');
const ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' };

let root = '';
const inRoot = (...args: string[]): SpawnSyncReturns<string> =>
  spawnSync('chroot', [root, ...args], { encoding: 'utf8', env: ENV, timeout: 60_000 });
const ok = (r: SpawnSyncReturns<string>): string => {
  if (r.status !== 0) throw new Error(`exit ${r.status}: ${r.stderr}${r.stdout}`);
  return r.stdout;
};

describe('the Debian package', () => {
  beforeAll(() => {
    if (!existsSync(`${template}.complete`))
      throw new Error(`${template} is missing: run scripts/install-peers.sh (npm test does)`);
    // npm test has built dist/ already; other test files run the CLI from it meanwhile.
    const built = spawnSync('bash', [path.join(repo, 'scripts/package-deb.sh')], {
      cwd: repo,
      encoding: 'utf8',
      timeout: 600_000,
      env: { ...process.env, SLUICE_PACKAGE_NO_BUILD: '1' },
    });
    if (built.status !== 0) throw new Error(`npm run package failed: ${built.stderr}${built.stdout}`);
    root = tempDir('sluice-deb-root-');
    ok(spawnSync('cp', ['-a', `${template}/.`, root], { encoding: 'utf8' }));
    ok(spawnSync('mount', ['-t', 'proc', 'proc', path.join(root, 'proc')], { encoding: 'utf8' }));
    ok(
      spawnSync('cp', [path.join(repo, 'dist', `sluice_${version}_amd64.deb`), path.join(root, 'tmp/sluice.deb')], {
        encoding: 'utf8',
      }),
    );
  }, 900_000);

  afterAll(() => {
    if (!root) return;
    spawnSync('umount', [path.join(root, 'proc')]);
    removeDir(root);
  });

  it('installs with dpkg -i: the command, its bundled runtime, the sluice user, the conffile and the unit', () => {
    const out = ok(inRoot('dpkg', '-i', '/tmp/sluice.deb'));
    expect(out).toMatch(new RegExp(`Setting up sluice \\(${version.replace(/\./g, '\\.')}\\)`));
    expect(ok(inRoot('sluice', '--version')).trim()).toBe(`sluice ${version}`);
    expect(ok(inRoot('/usr/lib/sluice/bin/node', '--version')).trim()).toMatch(/^v24\./);
    // The command starts node with sluice's OpenSSL settings: no TLS 1.3 session tickets.
    expect(readFileSync(path.join(root, 'usr/bin/sluice'), 'utf8')).toContain(
      '--openssl-config=/usr/lib/sluice/app/bin/openssl.cnf',
    );
    expect(readFileSync(path.join(root, 'usr/lib/sluice/app/bin/openssl.cnf'), 'utf8')).toMatch(/^NumTickets = 0$/m);
    expect(ok(inRoot('getent', 'passwd', 'sluice'))).toMatch(
      /^sluice:x:\d+:\d+:.*:\/var\/lib\/sluice:\/usr\/sbin\/nologin$/m,
    );
    // A member of adm, and of systemd-journal where the host has that group (for the journal).
    const groups = ok(inRoot('id', '-nG', 'sluice'))
      .trim()
      .split(' ');
    expect(groups).toContain('adm');
    if (inRoot('getent', 'group', 'systemd-journal').status === 0) expect(groups).toContain('systemd-journal');
    expect(ok(inRoot('dpkg-query', '-W', '-f', '${Conffiles}', 'sluice'))).toContain('/etc/sluice/sluice.yaml');
    // UDP sockets may have the 4 MiB receive buffer they ask for, from the next boot on.
    expect(readFileSync(path.join(root, 'usr/lib/sysctl.d/60-sluice.conf'), 'utf8')).toMatch(
      /^net\.core\.rmem_max = 4194304$/m,
    );
    for (const f of [
      '/etc/sluice/sluice.yaml',
      '/lib/systemd/system/sluice.service',
      '/usr/share/doc/sluice/configuration.md',
    ]) {
      expect(existsSync(path.join(root, f))).toBe(true);
    }
  });

  it('has a unit that systemd-analyze verifies, with the service settings an operator expects', () => {
    const verify = spawnSync('systemd-analyze', [`--root=${root}`, 'verify', 'sluice.service'], { encoding: 'utf8' });
    expect(verify.stderr).toBe('');
    expect(verify.status).toBe(0);
    const unit = readFileSync(path.join(root, 'lib/systemd/system/sluice.service'), 'utf8');
    for (const line of [
      'Restart=on-failure',
      'StateDirectory=sluice',
      'User=sluice',
      'SupplementaryGroups=adm systemd-journal',
      'AmbientCapabilities=CAP_NET_BIND_SERVICE',
      'ProtectSystem=strict',
      'ProtectHome=yes',
      'NoNewPrivileges=yes',
      'PrivateTmp=yes',
      'ExecReload=/usr/bin/sluice reload -c /etc/sluice/sluice.yaml --pid $MAINPID',
    ]) {
      expect(unit.split('\n')).toContain(line);
    }
    // The hardening, as systemd rates it (0 = fully locked down, 10 = fully exposed; --threshold is in tenths).
    const security = spawnSync(
      'systemd-analyze',
      ['security', '--offline=yes', `--root=${root}`, '--threshold=25', 'sluice.service'],
      { encoding: 'utf8' },
    );
    expect(security.stdout).toMatch(/Overall exposure level for sluice\.service: [0-2]\.\d/);
    expect(security.status).toBe(0);
  });

  it('checks its default config, and a short run as the sluice user receives logger messages over UDP and TCP into ' +
    'its file', async () => {
    const check = ok(inRoot('sluice', 'check', '-c', '/etc/sluice/sluice.yaml'));
    expect(check).toMatch(/from local_udp: udp:\/\/127\.0\.0\.1:514/);
    expect(check).toMatch(/from journal: journal \(system\)/);
    expect(check).toMatch(/\/etc\/sluice\/sluice\.yaml: OK/);
    // As the unit runs it: user sluice, with CAP_NET_BIND_SERVICE as its only (ambient) capability.
    const asService = [
      'setpriv',
      '--reuid=sluice',
      '--regid=sluice',
      '--init-groups',
      '--inh-caps=+net_bind_service',
      '--ambient-caps=+net_bind_service',
    ];
    const child = spawn('chroot', [root, ...asService, 'sluice', 'run', '-c', '/etc/sluice/sluice.yaml'], {
      env: ENV,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let log = '';
    child.stderr.on('data', (d: Buffer) => (log += d.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    const file = path.join(root, 'var/log/sluice/messages.log');
    try {
      await waitFor('sluice to start in the root', () => log.includes('sluice is running'), 30_000);
      ok(
        inRoot(
          'logger',
          '-n',
          '127.0.0.1',
          '-P',
          '514',
          '-d',
          '--rfc5424',
          '-t',
          'debtest',
          'installed package over udp',
        ),
      );
      ok(
        inRoot(
          'logger',
          '-n',
          '127.0.0.1',
          '-P',
          '514',
          '-T',
          '--rfc5424',
          '-t',
          'debtest',
          'installed package over tcp',
        ),
      );
      await waitFor(
        'both messages in /var/log/sluice/messages.log',
        () =>
          existsSync(file) &&
          readFileSync(file, 'utf8')
            .split('\n')
            .filter((l) => l.includes('debtest')).length === 2,
        20_000,
      );
      const lines = readFileSync(file, 'utf8').trim().split('\n');
      expect(lines.some((l) => / debtest .* installed package over udp$/.test(l))).toBe(true);
      expect(lines.some((l) => / debtest .* installed package over tcp$/.test(l))).toBe(true);
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
    const queue = path.join(root, 'var/lib/sluice/queues/local_file/queue.sq');
    expect(existsSync(queue)).toBe(true);
    const owner = ok(inRoot('stat', '-c', '%U', '/var/lib/sluice/queues/local_file/queue.sq')).trim();
    expect(owner).toBe('sluice');
  }, 60_000);

  it('keeps a changed conffile on reinstall; remove keeps queues and config; purge deletes them and the user', () => {
    const conf = path.join(root, 'etc/sluice/sluice.yaml');
    writeFileSync(conf, `${readFileSync(conf, 'utf8')}# changed by the operator\n`);
    ok(inRoot('dpkg', '-i', '/tmp/sluice.deb')); // an upgrade to the same version
    expect(readFileSync(conf, 'utf8')).toContain('# changed by the operator');

    ok(inRoot('dpkg', '-r', 'sluice'));
    expect(existsSync(path.join(root, 'usr/bin/sluice'))).toBe(false);
    expect(existsSync(path.join(root, 'var/lib/sluice/queues/local_file/queue.sq'))).toBe(true);
    expect(existsSync(path.join(root, 'var/log/sluice/messages.log'))).toBe(true);
    expect(existsSync(conf)).toBe(true);

    ok(inRoot('dpkg', '-P', 'sluice'));
    expect(existsSync(path.join(root, 'var/lib/sluice'))).toBe(false);
    expect(existsSync(path.join(root, 'var/log/sluice'))).toBe(false);
    expect(existsSync(path.join(root, 'etc/sluice/sluice.yaml'))).toBe(false);
    expect(inRoot('getent', 'passwd', 'sluice').status).not.toBe(0);
  });
});
