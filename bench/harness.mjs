// Shared pieces of the benchmarks: peers, the sink, processes, timing.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const peers = process.env.SLUICE_PEERS_DIR || path.join(root, '.peers');
const sng = path.join(peers, 'syslog-ng');

/** The directories tmp() made: removed when the benchmark exits (queue files of a run are hundreds of MB), unless BENCH_KEEP is set. */
const made = [];
process.on('exit', () => {
  if (process.env.BENCH_KEEP) return;
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

export function tmp() {
  const d = mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-'));
  made.push(d);
  return d;
}

export function requirePeers() {
  if (!existsSync(path.join(sng, 'usr/bin/loggen'))) {
    throw new Error('loggen is missing: run "bash scripts/install-peers.sh" first');
  }
}

export const sngEnv = () => ({
  ...process.env,
  LD_LIBRARY_PATH: [
    path.join(sng, 'usr/lib/syslog-ng'),
    path.join(sng, 'usr/lib/x86_64-linux-gnu'),
    path.join(sng, 'lib/x86_64-linux-gnu'),
  ].join(':'),
  SYSLOGNG_PREFIX: path.join(sng, 'usr'),
});

export async function freePort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

export async function waitPort(port, ms = 15_000, child = null) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const ok = await new Promise((r) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        r(true);
      });
      s.on('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on ${port} after ${ms} ms${child ? `: ${child.errText?.() ?? ''}` : ''}`);
}

/** Starts the line-counting sink; resolves with its port and a live count. */
export function startSink() {
  const child = spawn(process.execPath, [path.join(root, 'bench/sink.mjs')], { stdio: ['pipe', 'pipe', 'inherit'] });
  // stall(every, ms): the sink stops reading every `every` ms for `ms` ms; stall() reads steadily again.
  const stall = (every, ms) => child.stdin.write(every ? `stall ${every} ${ms}\n` : 'steady\n');
  const state = { count: 0, port: 0, child, countAt: [], stall };
  return new Promise((resolve) => {
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += d.toString();
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.startsWith('port ')) {
          state.port = Number(line.slice(5));
          resolve(state);
        } else if (line.startsWith('count ')) {
          state.count = Number(line.slice(6));
        }
      }
    });
  });
}

/**
 * Writes `yaml` to `<dir>/<name>.yaml` and starts `sluice run` on it. BENCH_PROFILE_DIR: each sluice
 * process writes a CPU profile there.
 */
export function startSluice(dir, name, yaml) {
  const cfg = path.join(dir, `${name}.yaml`);
  writeFileSync(cfg, yaml);
  const prof = process.env.BENCH_PROFILE_DIR
    ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE_DIR}`, `--cpu-prof-name=${name}.cpuprofile`]
    : [];
  // The V8 flags bin/sluice and the Debian launcher give it.
  return startProcess(process.execPath, [
    '--max-semi-space-size=8',
    ...prof,
    path.join(root, 'dist/cli.js'),
    'run',
    '-c',
    cfg,
  ]);
}

export function startProcess(cmd, args, env = process.env) {
  const child = spawn(cmd, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => (err += d.toString()));
  child.errText = () => err;
  return child;
}

export async function stop(child) {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.on('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(t);
}

/**
 * Sends `n` messages of `size` bytes with loggen to `port`, and measures until the sink has counted
 * all of them (or stops moving for 10 s). Returns msg/s over the whole delivery, and what loggen
 * says it sent. `-I`: loggen stops after 10 s by default whatever `-n` says, which cut long rounds
 * short and made them look like stalls.
 */
/**
 * loggen sending `n` messages of `size` bytes over TCP to `port` as fast as it can; its report on
 * stderr. `-I`: loggen stops after 10 s by default whatever `-n` says.
 */
export function startLoggen(port, n, size = 200) {
  return spawn(
    path.join(sng, 'usr/bin/loggen'),
    ['-i', '-S', '-s', String(size), '-r', '100000000', '-I', '3600', '-n', String(n), '-Q', '127.0.0.1', String(port)],
    { env: sngEnv(), stdio: ['ignore', 'ignore', 'pipe'] },
  );
}

export async function loggenRun(port, sink, n, size = 200) {
  const base = sink.count;
  const start = process.hrtime.bigint();
  const loggen = startLoggen(port, n, size);
  let report = '';
  loggen.stderr.on('data', (d) => (report += d));
  const exited = new Promise((r) => loggen.on('exit', r));
  let lastCount = -1;
  let lastMove = process.hrtime.bigint();
  for (;;) {
    await new Promise((r) => setTimeout(r, 10));
    const got = sink.count - base;
    if (got !== lastCount) {
      lastCount = got;
      lastMove = process.hrtime.bigint();
    } else if (Number(process.hrtime.bigint() - lastMove) > 10e9) {
      break; // stalled: the rate is taken up to the last progress, and the shortfall reported
    }
    if (got >= n) break;
  }
  const secs = Number(lastMove - start) / 1e9;
  if (loggen.exitCode === null) loggen.kill('SIGKILL');
  await exited;
  const delivered = sink.count - base;
  // loggen's last line: "average rate = ..., count=N, ...".
  const sent = Number([...report.matchAll(/count=(\d+)/g)].at(-1)?.[1] ?? NaN);
  return { delivered, sent: Number.isNaN(sent) ? n : sent, asked: n, seconds: secs, rate: delivered / secs };
}

export const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Runs `cmd` to its exit (killed after `timeoutMs`); resolves with its exit code, output and wall time in seconds. */
export function runTimed(cmd, args, timeoutMs, env = process.env) {
  return new Promise((resolve) => {
    const start = process.hrtime.bigint();
    const c = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (out += d));
    const t = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    c.on('exit', (code) => {
      clearTimeout(t);
      resolve({ code, out, seconds: Number(process.hrtime.bigint() - start) / 1e9 });
    });
  });
}

/** Waits until the sink has counted `want` (or `ms` pass); resolves with its count. */
export async function waitCount(sink, want, ms) {
  const deadline = Date.now() + ms;
  while (sink.count < want && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  return sink.count;
}

/**
 * CPU time of every thread of `pid`, in µs, from the scheduler's own accounting
 * (/proc/PID/task/TID/schedstat, nanoseconds on a CPU). utime + stime in clock ticks is sampled at
 * 100 Hz and, on a VM with steal time, charged every process about the same ~10 µs/msg.
 */
export function cpuMicros(pid) {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return ns / 1000;
}

/** Peak resident memory of a live process so far, in MB (VmHWM). */
export function peakRssMb(pid) {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Resident memory of a live process now, in MB (VmRSS). */
export function rssMb(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Starts rsyslogd 8.2302 from .peers on `conf` (workDirectory is `dir`/work). */
export function startRsyslog(dir, conf, run = startProcess) {
  const rs = path.join(peers, 'rsyslog');
  const lib = path.join(rs, 'usr/lib/x86_64-linux-gnu');
  const work = path.join(dir, 'work');
  if (!existsSync(work)) mkdirSync(work);
  const file = path.join(dir, 'rsyslog.conf');
  writeFileSync(file, `global(workDirectory="${work}")\n${conf}\n`);
  return run(
    path.join(rs, 'usr/sbin/rsyslogd'),
    ['-n', '-C', '-f', file, '-i', path.join(dir, 'pid'), '-M', path.join(lib, 'rsyslog')],
    { ...process.env, LD_LIBRARY_PATH: lib },
  );
}

/** Starts syslog-ng 3.38 from .peers on `conf` (a whole config, @version included). */
export function startSyslogNg(dir, conf, run = startProcess) {
  const cfg = path.join(dir, 'syslog-ng.conf');
  writeFileSync(cfg, conf);
  return run(
    path.join(sng, 'usr/sbin/syslog-ng'),
    [
      '-F',
      '-f',
      cfg,
      '-R',
      path.join(dir, 'persist'),
      '-p',
      path.join(dir, 'pid'),
      '-c',
      path.join(dir, 'ctl'),
      '--no-caps',
      `--module-path=${path.join(sng, 'usr/lib/syslog-ng/3.38')}`,
    ],
    sngEnv(),
  );
}

/** Bytes a live process has caused to be written to storage so far, in MB (/proc/PID/io write_bytes). */
export function writtenMb(pid) {
  try {
    const m = /write_bytes:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/io`, 'utf8'));
    return m ? Number(m[1]) / 1e6 : NaN;
  } catch {
    return NaN;
  }
}

/** A sluice config with one source (`source`, a YAML flow map) forwarding to the sink over TCP on `queue`. */
export function relayConfig(dir, source, sink, queue, level = 'warn') {
  return `
state_dir: ${dir}/state
log: { level: ${level}, format: json }
admin: { enabled: false }
sources:
  in: ${source}
destinations:
  sink: { type: syslog, address: "127.0.0.1:${sink.port}", framing: lf, queue: ${queue} }
pipelines:
  p: { from: [in], to: [sink] }
`;
}
