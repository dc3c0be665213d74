import { spawnSync } from 'node:child_process';
import { chmodSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { memoryLogger, readLines, scratchDir, sleep, testAgent, waitFor } from '../../helpers/agent.js';
import { root, seeded, SluiceProcess } from '../../torture/harness.js';
import { TestJournald } from '../../helpers/journald.js';

async function journald(dir: string): Promise<TestJournald> {
  const j = new TestJournald(dir);
  onTestFinished(() => j.stop());
  await j.start();
  return j;
}

function agentYaml(dir: string, j: TestJournald, source: string, dest = 'format: rfc5424'): string {
  return `state_dir: ${dir}/state
admin: { enabled: false }
hostname: agent-host
sources:
  journal: { type: journald, directory: ${j.journal}, checkpoint_interval: 50ms, ${source} }
destinations:
  out: { type: file, path: ${dir}/out.log, ${dest}, queue: { mode: reliable, sync_interval: 10ms } }
pipelines:
  p: { from: [journal], to: [out] }
`;
}

describe('journald source, against a real systemd-journald', () => {
  it('takes entries from the native protocol, logger and systemd-cat with their fields, MESSAGE as bytes', async () => {
    const dir = scratchDir('sluice-journald-');
    const j = await journald(dir);
    j.send([
      [
        ['MESSAGE', 'before sluice started'],
        ['SYSLOG_IDENTIFIER', 'early'],
      ],
    ]);
    const { logger } = memoryLogger();
    const agent = await testAgent(
      agentYaml(dir, j, 'read_from: beginning, fields: [_TRANSPORT, CUSTOM_FIELD, _UID]', 'format: raw'),
      logger,
    );
    const binary = Buffer.from([0x66, 0x6f, 0x6e, 0x64, 0xfc, 0x0a, 0x00, 0x01, 0xff]); // Latin-1 "fondü", LF, NUL
    j.send([
      [
        ['MESSAGE', binary],
        ['PRIORITY', '3'],
        ['SYSLOG_FACILITY', '10'],
        ['SYSLOG_IDENTIFIER', 'native app'],
        ['CUSTOM_FIELD', 'a "quoted" ] value\\'],
        ['MESSAGE_ID', 'fc2e22bc6ee647b6b90729ab34a250b1'],
      ],
    ]);
    spawnSync('logger', ['-u', j.devLog, '-t', 'viaLogger', '-p', 'local3.warning', 'hello through /dev/log']);
    j.run('systemd-cat -t viaCat -p info', 'hello through stdout\n');
    const out = path.join(dir, 'out.log');
    await waitFor(
      'four entries',
      () => readLines(out).filter((l) => /early|native|viaLogger|viaCat/.test(l)).length >= 4,
    );
    const bytes = readFileSync(out);
    const lines = readLines(out);
    const early = lines.find((l) => l.includes(' early '))!;
    expect(early).toMatch(
      /^<13>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z \S+ early \d+ - \[journal@32473 _TRANSPORT="journal" _UID="0"\] before sluice started$/,
    );
    // PRI 10*8+3, the binary MESSAGE byte for byte after the header, the quoted field escaped.
    const at = bytes.indexOf('<83>1 ');
    expect(at).toBeGreaterThanOrEqual(0);
    const nativeLine = bytes.subarray(at, bytes.indexOf(Buffer.from([0x00, 0x01, 0xff]), at) + 3);
    expect(nativeLine.toString('latin1')).toMatch(
      /^<83>1 \S+ \S+ native_app \d+ fc2e22bc6ee647b6b90729ab34a250b1 \[journal@32473 _TRANSPORT="journal" CUSTOM_FIELD="a \\"quoted\\" \\] value\\\\" _UID="0"\] /,
    );
    expect(nativeLine.subarray(nativeLine.length - binary.length).equals(binary)).toBe(true);
    expect(lines.find((l) => l.includes('viaLogger'))).toMatch(
      /^<156>1 \S+ \S+ viaLogger \d+ - \[journal@32473 _TRANSPORT="syslog" _UID="0"\] hello through \/dev\/log$/,
    );
    expect(lines.find((l) => l.includes('viaCat'))).toMatch(
      /^<14>1 \S+ \S+ viaCat \d+ - \[journal@32473 _TRANSPORT="stdout" _UID="0"\] hello through stdout$/,
    );
    expect(agent.stats().sources.journal?.received).toBeGreaterThanOrEqual(4);
  });
});

describe('journald source, which entries', () => {
  it('identifiers and raw matches: each list any of its values, the two together both', async () => {
    const dir = scratchDir('sluice-journald-select-');
    const j = await journald(dir);
    const out = path.join(dir, 'out.log');
    await testAgent(
      agentYaml(
        dir,
        j,
        'read_from: beginning, identifiers: [one, two], matches: ["COLOR=red", "COLOR=blue"]',
        'format: raw',
      ),
    );
    const e = (id: string, color: string) =>
      [
        ['MESSAGE', `${id}-${color}`],
        ['SYSLOG_IDENTIFIER', id],
        ['COLOR', color],
      ] as [string, string][];
    j.send([
      e('one', 'red'),
      e('one', 'green'),
      e('two', 'blue'),
      e('three', 'red'),
      e('two', 'green'),
      e('one', 'blue'),
    ]);
    j.send([
      [
        ['MESSAGE', 'end'],
        ['SYSLOG_IDENTIFIER', 'one'],
        ['COLOR', 'red'],
      ],
    ]);
    await waitFor('the last entry', () => readLines(out).some((l) => l.endsWith(' end')));
    expect(readLines(out).map((l) => l.split(' ').pop())).toEqual(['one-red', 'two-blue', 'one-blue', 'end']);
  });
});

describe('journald source, units', () => {
  // journald sets _SYSTEMD_UNIT itself, from the sender's cgroup (none here, without systemd as PID 1);
  // journalctl --unit also takes a root process's OBJECT_SYSTEMD_UNIT, which a test can send.
  it('units: entries of those units only (journalctl --unit)', async () => {
    const dir = scratchDir('sluice-journald-units-');
    const j = await journald(dir);
    const out = path.join(dir, 'out.log');
    await testAgent(agentYaml(dir, j, 'read_from: beginning, units: [web.service, db.service]', 'format: raw'));
    const e = (unit: string | null, msg: string) =>
      [['MESSAGE', msg], ['SYSLOG_IDENTIFIER', 'u'], ...(unit ? [['OBJECT_SYSTEMD_UNIT', unit]] : [])] as [
        string,
        string,
      ][];
    j.send([
      e('web.service', 'w1'),
      e('cron.service', 'c1'),
      e(null, 'n1'),
      e('db.service', 'd1'),
      e('web.service', 'w2'),
    ]);
    await waitFor('w2', () => readLines(out).some((l) => l.endsWith(' w2')));
    await sleep(200);
    expect(readLines(out).map((l) => l.split(' ').pop())).toEqual(['w1', 'd1', 'w2']);
  });
});

describe('journald source, crashes and failures', () => {
  it('SIGKILLed again and again while 100,000 entries are logged: every entry in the file exactly once', async () => {
    const dir = scratchDir('sluice-journald-kill-');
    const j = await journald(dir);
    const config = path.join(dir, 'agent.yaml');
    writeFileSync(
      config,
      agentYaml(dir, j, 'read_from: beginning, identifiers: [load]', 'format: raw, exactly_once: true').replace(
        'admin: { enabled: false }',
        'admin: { enabled: false }\nlog: { level: info, format: json }',
      ),
    );
    const agent = new SluiceProcess(config);
    onTestFinished(() => agent.kill());
    agent.start();
    const rng = seeded(20261130);
    const total = 100_000;
    const sent = (async () => {
      for (let n = 0; n < total; ) {
        const k = Math.min(total - n, rng.int(500, 5000));
        j.send(
          Array.from({ length: k }, (_, i) => [
            ['MESSAGE', `entry ${n + i} ${'x'.repeat(rng.int(0, 200))}`],
            ['SYSLOG_IDENTIFIER', 'load'],
          ]),
        );
        n += k;
        await sleep(rng.int(0, 100));
      }
    })();
    let kills = 0;
    for (let round = 0; round < 8; round++) {
      await sleep(rng.int(200, 1200));
      await agent.kill();
      kills++;
      await sleep(rng.int(0, 300));
      agent.start();
    }
    await sent;
    const out = path.join(dir, 'out.log');
    // Newlines counted in the bytes (a 20 MB file read into strings every few ms slows the test more
    // than sluice); as long as lines keep arriving, up to 5 minutes.
    const count = () => {
      try {
        const b = readFileSync(out);
        let n = 0;
        for (let at = b.indexOf(10); at >= 0; at = b.indexOf(10, at + 1)) n++;
        return n;
      } catch {
        return 0;
      }
    };
    let last = -1;
    let since = Date.now();
    for (let i = 0; i < 1500 && count() < total; i++) {
      const n = count();
      if (n !== last) [last, since] = [n, Date.now()];
      else if (Date.now() - since > 30_000) break;
      await sleep(200);
    }
    expect(count(), `entries arrived; the agent said: ${agent.logLines.slice(-5).join(' | ')}`).toBeGreaterThanOrEqual(
      total,
    );
    await sleep(500);
    await agent.stop();
    const seen = new Map<number, number>();
    for (const l of readLines(out)) {
      const m = / entry (\d+) /.exec(`${l} `);
      if (m) seen.set(Number(m[1]), (seen.get(Number(m[1])) ?? 0) + 1);
    }
    const missing = Array.from({ length: total }, (_, i) => i).filter((i) => !seen.has(i));
    const twice = [...seen].filter(([, c]) => c > 1).map(([i]) => i);
    expect(kills).toBe(8);
    expect(missing.slice(0, 20)).toEqual([]);
    expect(twice.slice(0, 20)).toEqual([]);
    expect(agent.crashes).toEqual([]);
  }, 400_000);
});

describe('journald source, a journal that changes under it', () => {
  it('a cursor the journal vacuumed away: says at error level how far it jumped, counts it, and goes on from the oldest entry', async () => {
    const dir = scratchDir('sluice-journald-vacuum-');
    const j = await journald(dir);
    const out = path.join(dir, 'out.log');
    const yaml = agentYaml(dir, j, 'read_from: beginning, identifiers: [t]', 'format: raw');
    const batch = (tag: string) =>
      Array.from(
        { length: 50 },
        (_, i) =>
          [
            ['MESSAGE', `${tag}${i}`],
            ['SYSLOG_IDENTIFIER', 't'],
          ] as [string, string][],
      );
    let agent = await testAgent(yaml);
    j.send(batch('a'));
    await waitFor('the first 50', () => readLines(out).length >= 50);
    await agent.stop();
    await j.rotate();
    j.send(batch('b')); // logged while sluice is stopped, then vacuumed before it starts again
    await j.rotate();
    j.send(batch('c'));
    const r = spawnSync('journalctl', [`--directory=${j.journal}`, '--vacuum-files=1'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    const { logger, lines } = memoryLogger();
    agent = await testAgent(yaml, logger);
    await waitFor('the last 50', () => readLines(out).length >= 100);
    await sleep(300);
    const got = readLines(out).map((l) => l.split(' ').pop());
    expect(got).toEqual([...batch('a'), ...batch('c')].map((e) => e[0]![1]));
    const jump = lines.find((l) => String(l.msg).includes('no longer holds the entries after the saved cursor'));
    expect(jump).toMatchObject({ level: 50 });
    // At least the 50 entries of b (the journal also lost its own notes between them).
    expect(jump!.entries_skipped).toBeGreaterThanOrEqual(50);
    expect(agent.stats().sources.journal!.dropped.journal_vacuumed).toBe(jump!.entries_skipped);
  });

  it('journalctl killed while following: logged, counted, started again after the last entry handed on; nothing lost or twice', async () => {
    const dir = scratchDir('sluice-journald-restart-');
    const j = await journald(dir);
    const out = path.join(dir, 'out.log');
    const { logger, lines } = memoryLogger();
    const agent = await testAgent(agentYaml(dir, j, 'read_from: end, identifiers: [t]', 'format: raw'), logger);
    const batch = (from: number, n: number) =>
      Array.from(
        { length: n },
        (_, i) =>
          [
            ['MESSAGE', `m${from + i}`],
            ['SYSLOG_IDENTIFIER', 't'],
          ] as [string, string][],
      );
    j.send(batch(0, 300));
    await waitFor('the first 300', () => readLines(out).length >= 300);
    for (let round = 0; round < 3; round++) {
      // What was logged meanwhile may have come from the files, before journalctl runs again.
      await waitFor('journalctl to follow', () => followers(j.journal).length > 0, 10_000);
      const pids = followers(j.journal);
      expect(pids.length).toBe(1);
      process.kill(pids[0]!, 'SIGKILL');
      j.send(batch(300 + round * 300, 300));
      await waitFor(`batch ${round + 2}`, () => readLines(out).length >= 600 + round * 300, 20_000);
    }
    await sleep(300);
    expect(readLines(out).map((l) => l.split(' ').pop())).toEqual(batch(0, 1200).map((e) => e[0]![1]));
    expect(agent.stats().sources.journal!.connectionErrors).toBe(3);
    expect(lines.filter((l) => String(l.msg).startsWith('journalctl exited')).length).toBeGreaterThanOrEqual(1);
  });

  it('journalctl missing: logged at error level with what to do, retried with backoff, and the agent runs on', async () => {
    const dir = scratchDir('sluice-journald-missing-');
    const { logger, lines } = memoryLogger();
    const agent = await testAgent(
      `state_dir: ${dir}/state
admin: { enabled: false }
sources:
  journal: { type: journald, journalctl: ${dir}/no-such-journalctl }
destinations:
  out: { type: file, path: ${dir}/out.log }
pipelines:
  p: { from: [journal], to: [out] }
`,
      logger,
    );
    await waitFor('two tries', () => agent.stats().sources.journal!.connectionErrors >= 2, 10_000);
    const e = lines.find((l) => String(l.msg).includes('cannot run'));
    expect(e).toMatchObject({ level: 50, code: 'ENOENT' });
    expect(String(e!.msg)).toContain(`${dir}/no-such-journalctl`);
    expect(String(e!.msg)).toContain('set `journalctl:` of source journal to its path');
    expect(agent.running).toBe(true);
  });
});

/** PIDs of the journalctl processes following `journal` (read from /proc). */
function followers(journal: string): number[] {
  const out: number[] = [];
  for (const p of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      if (cmd.includes('--follow') && cmd.includes(`--directory=${journal}`)) out.push(Number(p));
    } catch {
      // gone
    }
  }
  return out;
}

describe('journald source, history read from the files', () => {
  /** A journalctl that notes its arguments, one call a line, in `<dir>/calls.log`. */
  function recordingJournalctl(dir: string): string {
    const wrapper = path.join(dir, 'journalctl');
    writeFileSync(wrapper, `#!/bin/sh\necho "$@" >> ${dir}/calls.log\nexec journalctl "$@"\n`);
    chmodSync(wrapper, 0o755);
    return wrapper;
  }
  const follows = (dir: string) =>
    readLines(path.join(dir, 'calls.log')).filter((l) => l.split(' ').includes('--follow'));
  const history = (from: number, n: number, big?: number) =>
    Array.from(
      { length: n },
      (_, i) =>
        [
          ['MESSAGE', from + i === big ? `h${from + i} ${'y'.repeat(4000)}` : `h${from + i}`],
          ['SYSLOG_IDENTIFIER', 'h'],
        ] as [string, string][],
    );
  const ours = (out: string) =>
    readLines(out)
      .filter((l) => / h\d+/.test(l))
      .map((l) => /(h\d+)/.exec(l)![1]);

  it('catch_up: files reads what is there from the files, a compressed field on through journalctl, then follows', async () => {
    const dir = scratchDir('sluice-journald-catchup-');
    const j = await journald(dir);
    // journald compresses the MESSAGE of h1500 (over 512 bytes): the files are read up to it.
    j.send(history(0, 2000, 1500));
    const journal = j.export();
    const before = journal.find((e) => e.fields.get('MESSAGE')?.toString() === 'h1499')!;
    const { logger, lines } = memoryLogger();
    const out = path.join(dir, 'out.log');
    await testAgent(
      agentYaml(dir, j, `read_from: beginning, journalctl: ${recordingJournalctl(dir)}`, 'format: raw'),
      logger,
    );
    await waitFor('the history', () => ours(out).length >= 2000, 20_000);
    j.send(history(2000, 500));
    await waitFor('what came after', () => ours(out).length >= 2500, 20_000);
    await sleep(300);
    expect(ours(out)).toEqual(history(0, 2500).map((e) => e[0]![1]));
    // journalctl followed from the last entry read from the files, the one before the compressed field.
    expect(follows(dir)[0]).toContain(`--after-cursor=${before.fields.get('__CURSOR')!.toString()}`);
    const stopped = lines.find((l) => String(l.msg).startsWith('reading the journal files directly stopped'));
    expect(String(stopped?.err)).toContain('compressed');
  }, 60_000);

  it('catch_up: journalctl reads everything through journalctl', async () => {
    const dir = scratchDir('sluice-journald-catchup-');
    const j = await journald(dir);
    j.send(history(0, 300));
    const out = path.join(dir, 'out.log');
    await testAgent(
      agentYaml(
        dir,
        j,
        `read_from: beginning, catch_up: journalctl, journalctl: ${recordingJournalctl(dir)}`,
        'format: raw',
      ),
      memoryLogger().logger,
    );
    await waitFor('the history', () => ours(out).length >= 300, 20_000);
    expect(ours(out)).toEqual(history(0, 300).map((e) => e[0]![1]));
    expect(follows(dir)[0]).not.toContain('cursor');
  });
});

describe('sluice check and a journald source', () => {
  it('says the journal is readable as the user it runs as, and warns for a user that cannot read it', async () => {
    const dir = scratchDir('sluice-journald-check-');
    chmodSync(dir, 0o755);
    const j = await journald(dir);
    j.send([[['MESSAGE', 'something to read']]]);
    const config = path.join(dir, 'check.yaml');
    writeFileSync(config, agentYaml(dir, j, 'read_from: end'), { mode: 0o644 });
    const cli = path.join(root, 'dist/cli.js');
    const asRoot = spawnSync(process.execPath, [cli, 'check', '-c', config], { encoding: 'utf8' });
    expect(asRoot.status, asRoot.stderr).toBe(0);
    expect(asRoot.stdout).toMatch(/^journal journal: ok, readable as root \(uid 0\)$/m);
    expect(asRoot.stdout).toMatch(/: OK$/m);
    // nobody, with no groups: not in systemd-journal, and the journal files are root's (0640).
    const asNobody = spawnSync(
      'setpriv',
      ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, cli, 'check', '-c', config],
      { encoding: 'utf8' },
    );
    expect(asNobody.stdout).toMatch(/^journal journal: WARNING /m);
    expect(asNobody.stdout).toMatch(/\(1 warning\(s\)\)$/m);
  });
});

describe('journal fields after the journald source', () => {
  it('are used by a where filter (sd:) and a path template (${.SDATA.<id>.<param>})', async () => {
    const dir = scratchDir('sluice-journald-sd-');
    const j = await journald(dir);
    await testAgent(`state_dir: ${dir}/state
admin: { enabled: false }
sources:
  journal: { type: journald, directory: ${j.journal}, read_from: beginning, identifiers: [sd], fields: [_TRANSPORT, TEAM] }
destinations:
  out: { type: file, path: "${dir}/by-team/\${.SDATA.journal@32473.TEAM}.log", format: raw }
pipelines:
  p: { from: [journal], where: { sd: { "journal@32473._TRANSPORT": "^journal$", "journal@32473.TEAM": "^(web|db)$" } }, to: [out] }
`);
    const e = (team: string | null, msg: string) =>
      [['MESSAGE', msg], ['SYSLOG_IDENTIFIER', 'sd'], ...(team ? [['TEAM', team]] : [])] as [string, string][];
    j.send([e('web', 'w1'), e('ops', 'o1'), e(null, 'none'), e('db', 'd1'), e('web', 'w2')]);
    const web = path.join(dir, 'by-team/web.log');
    await waitFor('w2', () => readLines(web).some((l) => l.endsWith(' w2')));
    await sleep(200);
    expect(readLines(web).map((l) => l.split(' ').pop())).toEqual(['w1', 'w2']);
    expect(readLines(path.join(dir, 'by-team/db.log')).map((l) => l.split(' ').pop())).toEqual(['d1']);
    expect(readdirSync(path.join(dir, 'by-team')).sort()).toEqual(['db.log', 'web.log']);
  });
});
