// npm run bench:journal: a systemd journal pre-filled with JOURNAL_ENTRIES entries (default 500k) of
// about 200 bytes, read from its beginning and forwarded to the line-counting sink over TCP, by
// sluice (journald source), rsyslog 8.2302 (imjournal) and syslog-ng 3.38 (systemd-journal()),
// taking turns round by round on the same journal. Entries/s over the whole read, CPU per entry
// (for sluice its journalctl child is counted too), peak RSS.
//
// The journal is written by a real systemd-journald run in a private mount namespace (as the tests
// do). sluice reads its directory (`directory:`); rsyslog and syslog-ng know only the system
// journal, so each runs in a mount namespace of its own whose /run/log is that journald's.
//
// Tuning, each as its documentation advises for throughput:
// - rsyslog imjournal (https://www.rsyslog.com/doc/configuration/modules/imjournal.html):
//   Ratelimit.Interval="0" (its default rate limit, 20,000 per 10 min, would throttle any bulk read),
//   PersistStateInterval="100000" (the state file is written every 10 entries by default),
//   a LinkedList main queue with dequeueBatchSize 1024, as bench/pipeline.mjs.
// - syslog-ng systemd-journal() (https://syslog-ng.github.io/admin-guide/060_Sources/160_systemd-journal/):
//   log-fetch-limit(1000) and log-iw-size(100000), flow-control, as bench/pipeline.mjs.
// - sluice: read_from: beginning, a memory queue. It reads the journal files directly
//   (`catch_up: files`, its default) up to what they hold, then follows with journalctl.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  cpuMicros,
  median,
  peakRssMb,
  relayConfig,
  requirePeers,
  startProcess,
  startRsyslog,
  startSink,
  startSluice,
  startSyslogNg,
  stop,
  tmp,
  waitCount,
} from './harness.mjs';

const N = Number(process.env.JOURNAL_ENTRIES ?? 500_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const JOURNALD = ['/lib/systemd/systemd-journald', '/usr/lib/systemd/systemd-journald'].find((p) => existsSync(p));

/** Temporary directories of this run, removed at its end. */
const scratches = [];
function scratch() {
  const d = tmp();
  scratches.push(d);
  return d;
}

/** A journald in a private mount namespace writing under `dir`/log/journal; resolves once it listens. */
async function startJournald(dir) {
  mkdirSync(path.join(dir, 'log/journal'), { recursive: true });
  mkdirSync(path.join(dir, 'sockets'), { recursive: true });
  const conf = path.join(dir, 'journald.conf');
  writeFileSync(
    conf,
    '[Journal]\nStorage=volatile\nRateLimitIntervalSec=0\nRateLimitBurst=0\nReadKMsg=no\nForwardToSyslog=no\n' +
      'RuntimeMaxFileSize=128M\nRuntimeMaxUse=2G\nRuntimeKeepFree=0\n',
  );
  const child = spawn(
    'unshare',
    [
      '-m',
      '--propagation',
      'private',
      'sh',
      '-c',
      `mount --bind ${dir}/sockets /run/systemd/journal && mount --bind ${dir}/log /run/log && ` +
        `mount --bind ${conf} /etc/systemd/journald.conf && exec ${JOURNALD}`,
    ],
    { stdio: 'ignore' },
  );
  for (let i = 0; i < 200 && !existsSync(path.join(dir, 'sockets/socket')); i++)
    await new Promise((r) => setTimeout(r, 50));
  return child;
}

/** Writes `n` entries of about 200 bytes over the native protocol (python3's socket, as sd_journal_send). */
function fill(dir, n) {
  const py = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
pad = 'x' * 150
for i in range(int(sys.argv[2])):
    s.sendto(('MESSAGE=entry %010d %s\\nSYSLOG_IDENTIFIER=bench\\nPRIORITY=6\\n' % (i, pad)).encode(), sys.argv[1])
`;
  const r = spawnSync('python3', ['-c', py, path.join(dir, 'sockets/socket'), String(n)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`filling the journal failed: ${r.stderr}`);
}

/** A peer in a mount namespace whose /run/log is the bench journal's (and /var/log/journal empty). */
function inJournalNamespace(dir, cmd, args, env) {
  const script =
    `mount --bind ${dir}/log /run/log && (mount -t tmpfs tmpfs /var/log/journal 2>/dev/null || true) && ` +
    'exec "$0" "$@"';
  return startProcess('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script, cmd, ...args], env);
}

const starters = {
  sluice: (jdir, sink) => {
    const dir = scratch();
    return startSluice(
      dir,
      'sluice',
      relayConfig(
        dir,
        `{ type: journald, directory: ${jdir}/log/journal, read_from: beginning, identifiers: [bench] }`,
        sink,
        '{ mode: memory }',
      ),
    );
  },
  rsyslog: (jdir, sink) =>
    startRsyslog(
      scratch(),
      `main_queue(queue.type="LinkedList" queue.size="1000000" queue.dequeueBatchSize="1024")
module(load="imjournal" StateFile="imjournal.state" Ratelimit.Interval="0" PersistStateInterval="100000")
if $programname == "bench" then action(type="omfwd" target="127.0.0.1" port="${sink.port}" protocol="tcp"
    template="RSYSLOG_SyslogProtocol23Format")`,
      (cmd, args, env) => inJournalNamespace(jdir, cmd, args, env),
    ),
  'syslog-ng': (jdir, sink) =>
    startSyslogNg(
      scratch(),
      `@version: 3.38
options { keep-hostname(yes); stats-freq(0); };
source s_in { systemd-journal(log-fetch-limit(1000) log-iw-size(100000)); };
filter f_bench { program("bench"); };
destination d_sink { network("127.0.0.1" transport("tcp") port(${sink.port}) log-fifo-size(1000000)); };
log { source(s_in); filter(f_bench); destination(d_sink); flags(flow-control); };
`,
      (cmd, args, env) => inJournalNamespace(jdir, cmd, args, env),
    ),
};

/** CPU of a process and its children (sluice's journalctl), in µs. */
function treeCpu(pid) {
  let us = cpuMicros(pid);
  for (const p of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const ppid = Number(readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1].split(' ')[1]);
      if (ppid === pid) us += treeCpu(Number(p));
    } catch {
      // gone
    }
  }
  return us;
}

async function round(peer, jdir, sink) {
  const base = sink.count;
  const start = process.hrtime.bigint();
  const child = starters[peer](jdir, sink);
  try {
    let last = base;
    let lastMove = Date.now();
    let cpu = 0;
    // Until every entry arrived, or nothing moved for 20 s; CPU sampled while the process lives.
    while (sink.count - base < N && Date.now() - lastMove < 20_000) {
      await waitCount(sink, base + N, 200);
      if (sink.count !== last) {
        last = sink.count;
        lastMove = Date.now();
      }
      if (child.exitCode !== null) throw new Error(`${peer} exited: ${child.errText()}`);
      cpu = treeCpu(child.pid);
    }
    const got = sink.count - base;
    const secs = Number(process.hrtime.bigint() - start) / 1e9;
    if (got < N) console.error(`${peer}: ${got} of ${N} entries arrived`);
    return { rate: got / secs, cpuUs: cpu / Math.max(1, got), peakMb: peakRssMb(child.pid), got };
  } finally {
    await stop(child);
  }
}

requirePeers();
if (!JOURNALD) throw new Error('systemd-journald is missing: run "bash scripts/install-peers.sh" first');
const jdir = tmp();
const journald = await startJournald(jdir);
const t0 = Date.now();
fill(jdir, N);
console.log(`journal: ${N} entries written in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
const sink = await startSink();
const PEERS = ['sluice', 'rsyslog', 'syslog-ng'].filter(
  (p) => !process.env.BENCH_PEERS || process.env.BENCH_PEERS.split(',').includes(p),
);
const results = Object.fromEntries(PEERS.map((p) => [p, []]));
for (let r = 0; r < ROUNDS; r++) for (const p of PEERS) results[p].push(await round(p, jdir, sink));
const best = Math.max(...PEERS.filter((p) => p !== 'sluice').map((p) => median(results[p].map((x) => x.rate))), 0);
console.log(`\njournal, ${N} entries of ~200 bytes from the beginning, ${ROUNDS} rounds (medians)`);
console.log('| peer | entries/s | CPU µs/entry | peak RSS MB | ÷ best peer |');
console.log('|---|---:|---:|---:|---:|');
for (const p of PEERS) {
  const rate = median(results[p].map((x) => x.rate));
  const cpu = median(results[p].map((x) => x.cpuUs));
  const rss = median(results[p].map((x) => x.peakMb));
  console.log(
    `| ${p} | ${Math.round(rate).toLocaleString('en')} | ${cpu.toFixed(2)} | ${Math.round(rss)} | ${best ? (rate / best).toFixed(2) : '-'}× |`,
  );
}
sink.child.kill();
journald.kill();
// The journal (about 2 KB an entry on disk) and the peers' state go: a run leaves nothing behind.
await new Promise((r) => journald.once('exit', r));
for (const d of [jdir, ...scratches]) rmSync(d, { recursive: true, force: true });
