// npm run bench (part 1 of 3; udp.mjs and relp.mjs follow): sluice, rsyslog 8.2302 and syslog-ng 3.38
// side by side, each tuned as its documentation advises for throughput, taking turns round by round.
//
// TCP: loggen (one connection, BENCH_MESSAGES of 200 bytes, -I so that -n decides) -> X -> TCP out
// to a line-counting sink, in three queue modes:
// - memory: sluice `mode: memory`; rsyslog imptcp, LinkedList queues; syslog-ng without disk-buffer.
// - normal (memory, the disk for what overflows): sluice `mode: normal`; rsyslog LinkedList with a
//   queue.filename (disk-assisted); syslog-ng disk-buffer(reliable(no)).
// - reliable (disk): sluice `mode: reliable` (fsync every 50 ms, the default); rsyslog a Disk queue
//   (no fsync: queue.syncQueueFiles is off by default); syslog-ng disk-buffer(reliable(yes)) (no
//   fsync either).
// File tailing: BENCH_FILE_LINES lines of 200 bytes written before X starts, read from the start.
//
// Tuning, and where it comes from:
// - rsyslog: imptcp (https://www.rsyslog.com/doc/configuration/modules/imptcp.html) rather than
//   imtcp for throughput; main and action queues LinkedList with queue.size="1000000" and
//   queue.dequeueBatchSize="1024" (https://www.rsyslog.com/doc/concepts/queues.html, "Performance":
//   larger dequeue batches). Disk-assisted: the same queue with queue.filename and
//   queue.maxDiskSpace; Disk: queue.type="Disk". imfile in inotify mode
//   (https://www.rsyslog.com/doc/configuration/modules/imfile.html).
// - syslog-ng (OSE 3.38 administration guide, "Managing incoming and outgoing messages with
//   flow-control" and "Tuning syslog-ng"): log-fetch-limit(1000) and log-iw-size(100000) on the
//   source, log-fifo-size(1000000) on the destination, flags(flow-control) so nothing is dropped;
//   disk-buffer() with mem-buf-length(10000) (reliable(no)) or mem-buf-size(163840000) (reliable(yes))
//   and disk-buf-size(1G). file() with follow-freq(1) and log-fetch-limit(1000).
// - sluice: defaults, but for the queue mode under test.
//
// Per row: median msg/s, CPU time per message of X (all its threads, /proc schedstat), X's peak
// RSS (and its RSS once listening, for TCP), what X wrote to disk during the round (/proc/PID/io),
// and the ratio of sluice to the best peer. BENCH_ONLY=regex runs only matching rows,
// BENCH_ROUNDS rounds (default 3), BENCH_PEERS=sluice,rsyslog a subset of the peers.
import { appendFileSync } from 'node:fs';
import path from 'node:path';
import {
  cpuMicros,
  freePort,
  loggenRun,
  median,
  peakRssMb,
  relayConfig,
  requirePeers,
  rssMb,
  startRsyslog,
  startSink,
  startSluice,
  startSyslogNg,
  stop,
  tmp,
  waitCount,
  waitPort,
  writtenMb,
} from './harness.mjs';

const N = Number(process.env.BENCH_MESSAGES ?? 2_000_000);
const FILE_LINES = Number(process.env.BENCH_FILE_LINES ?? 1_000_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const only = process.env.BENCH_ONLY ? new RegExp(process.env.BENCH_ONLY) : null;

const sluiceQueues = {
  memory: '{ mode: memory }',
  // BENCH_NORMAL_QUEUE: another normal queue, e.g. a small memory part that bursts overflow.
  normal: process.env.BENCH_NORMAL_QUEUE ?? '{ mode: normal, max_size: 2GiB }',
  reliable: '{ mode: reliable, max_size: 2GiB }',
};

const sluiceConfig = (dir, source, sink, mode) => relayConfig(dir, source, sink, sluiceQueues[mode]);

const rsQueue = {
  memory: 'queue.type="LinkedList" queue.size="1000000" queue.dequeueBatchSize="1024"',
  normal:
    'queue.type="LinkedList" queue.size="1000000" queue.dequeueBatchSize="1024" queue.filename="da" ' +
    'queue.maxDiskSpace="2g" queue.saveOnShutdown="on"',
  reliable:
    'queue.type="Disk" queue.filename="dq" queue.maxDiskSpace="2g" queue.maxFileSize="64m" ' +
    'queue.dequeueBatchSize="1024"',
};

function rsyslogConfig(input, sink, mode) {
  return `main_queue(queue.type="LinkedList" queue.size="1000000" queue.dequeueBatchSize="1024")
${input}
action(type="omfwd" target="127.0.0.1" port="${sink.port}" protocol="tcp"
    template="RSYSLOG_ForwardFormat" ${rsQueue[mode]})`;
}

const sngBuffer = (dir, mode) =>
  mode === 'memory'
    ? ''
    : mode === 'normal'
      ? `disk-buffer(reliable(no) mem-buf-length(10000) disk-buf-size(1073741824) dir("${dir}"))`
      : `disk-buffer(reliable(yes) mem-buf-size(163840000) disk-buf-size(1073741824) dir("${dir}"))`;

function syslogNgConfig(dir, source, sink, mode) {
  return `@version: 3.38
options { keep-hostname(yes); stats-freq(0); };
source s_in { ${source}; };
destination d_sink { network("127.0.0.1" transport("tcp") port(${sink.port}) log-fifo-size(1000000)
    ${sngBuffer(dir, mode)}); };
log { source(s_in); destination(d_sink); flags(flow-control); };
`;
}

/** TCP in: each starter resolves with the port to send to and the process. */
const tcp = {
  sluice: async (sink, mode) => {
    const dir = tmp();
    const port = await freePort();
    const child = startSluice(
      dir,
      'sluice',
      sluiceConfig(dir, `{ type: syslog_tcp, address: "127.0.0.1:${port}" }`, sink, mode),
    );
    await waitPort(port, 15_000, child);
    return { port, child };
  },
  rsyslog: async (sink, mode) => {
    const dir = tmp();
    const port = await freePort();
    const child = startRsyslog(
      dir,
      rsyslogConfig(`module(load="imptcp")\ninput(type="imptcp" port="${port}" address="127.0.0.1")`, sink, mode),
    );
    await waitPort(port, 15_000, child);
    return { port, child };
  },
  'syslog-ng': async (sink, mode) => {
    const dir = tmp();
    const port = await freePort();
    const child = startSyslogNg(
      dir,
      syslogNgConfig(
        dir,
        `network(transport("tcp") ip("127.0.0.1") port(${port}) max-connections(10) log-fetch-limit(1000) ` +
          `log-iw-size(100000))`,
        sink,
        mode,
      ),
    );
    await waitPort(port, 15_000, child);
    return { port, child };
  },
};

/** File in: the file is written first; each starter begins reading it from the start. */
const file = {
  sluice: (sink, f) => {
    const dir = tmp();
    return {
      child: startSluice(
        dir,
        'sluice',
        sluiceConfig(dir, `{ type: file, paths: ["${f}"], read_from: beginning }`, sink, 'memory'),
      ),
    };
  },
  rsyslog: (sink, f) => {
    const dir = tmp();
    return {
      child: startRsyslog(
        dir,
        rsyslogConfig(
          `module(load="imfile" mode="inotify")\ninput(type="imfile" file="${f}" tag="app" freshStartTail="off")`,
          sink,
          'memory',
        ),
      ),
    };
  },
  'syslog-ng': (sink, f) => {
    const dir = tmp();
    return {
      child: startSyslogNg(
        dir,
        syslogNgConfig(dir, `file("${f}" follow-freq(1) log-fetch-limit(1000) flags(no-parse))`, sink, 'memory'),
      ),
    };
  },
};

// BENCH_PEERS=sluice (or a list) runs only those, for a quick before-and-after of sluice alone.
const PEERS = ['sluice', 'rsyslog', 'syslog-ng'].filter(
  (p) => !process.env.BENCH_PEERS || process.env.BENCH_PEERS.split(',').includes(p),
);
const NAMES = { sluice: 'sluice', rsyslog: 'rsyslog 8.2302', 'syslog-ng': 'syslog-ng 3.38' };
const rows = [
  ...['memory', 'normal', 'reliable'].map((mode) => ({
    row: `TCP, ${mode} queue`,
    run: (peer, sink) => tcpRound(peer, sink, mode),
  })),
  // The destination keeps up on average but stops reading for 300 ms every second: memory overflows
  // in each stall, and a normal queue should use the disk for that overflow only.
  ...['memory', 'normal'].map((mode) => ({
    row: `TCP, ${mode} queue, sink stalls 300 ms in 1000`,
    run: async (peer, sink) => {
      sink.stall(Number(process.env.BENCH_STALL_EVERY ?? 1000), Number(process.env.BENCH_STALL_MS ?? 300));
      try {
        return await tcpRound(peer, sink, mode);
      } finally {
        sink.stall();
      }
    },
  })),
  { row: 'file tailing (memory queue)', run: (peer, sink) => fileRound(peer, sink) },
].filter((r) => !only || only.test(r.row));

async function measured(child, sink, body) {
  const cpu0 = cpuMicros(child.pid);
  const w0 = writtenMb(child.pid);
  const base = sink.count;
  const r = await body();
  const got = sink.count - base;
  return {
    ...r,
    cpuUs: (cpuMicros(child.pid) - cpu0) / Math.max(1, got),
    peakMb: peakRssMb(child.pid),
    diskMb: writtenMb(child.pid) - w0,
  };
}

async function tcpRound(peer, sink, mode) {
  const t = await tcp[peer](sink, mode);
  try {
    const idleMb = rssMb(t.child.pid);
    const r = await measured(t.child, sink, () => loggenRun(t.port, sink, N));
    if (r.delivered < r.sent || r.sent < r.asked)
      console.error(`${peer} ${mode}: loggen sent ${r.sent} of ${r.asked}, ${r.delivered} arrived`);
    return { rate: r.rate, cpuUs: r.cpuUs, peakMb: r.peakMb, idleMb, diskMb: r.diskMb };
  } finally {
    await stop(t.child);
  }
}

let fileDir = null;
/** One file of FILE_LINES 200-byte lines, written once and read by every peer in turn. */
function testFile() {
  if (fileDir) return path.join(fileDir, 'app.log');
  fileDir = tmp();
  const f = path.join(fileDir, 'app.log');
  const pad = 'x'.repeat(160);
  const chunk = 10_000;
  for (let i = 0; i < FILE_LINES; i += chunk) {
    let s = '';
    for (let j = i; j < Math.min(FILE_LINES, i + chunk); j++)
      s += `line ${String(j).padStart(10, '0')} ${pad}\n`.padEnd(200, 'y');
    appendFileSync(f, s);
  }
  return f;
}

async function fileRound(peer, sink) {
  const f = testFile();
  const base = sink.count;
  const start = process.hrtime.bigint();
  const t = file[peer](sink, f);
  try {
    const r = await measured(t.child, sink, async () => {
      const got = await waitCount(sink, base + FILE_LINES, 300_000);
      return { delivered: got - base };
    });
    const secs = Number(process.hrtime.bigint() - start) / 1e9;
    if (r.delivered < FILE_LINES) console.error(`${peer} file: ${r.delivered} of ${FILE_LINES} arrived`);
    return { rate: r.delivered / secs, cpuUs: r.cpuUs, peakMb: r.peakMb };
  } finally {
    await stop(t.child);
  }
}

requirePeers();
console.log(
  `pipeline benchmark: TCP ${N.toLocaleString('en')} messages and a file of ${FILE_LINES.toLocaleString('en')} ` +
    `lines, 200 bytes each, ${ROUNDS} rounds, the peers taking turns`,
);
const results = new Map(rows.map((r) => [r.row, new Map(PEERS.map((p) => [p, []]))]));
const sink = await startSink();
try {
  for (let round = 0; round < ROUNDS; round++) {
    for (const { row, run } of rows) {
      // Each round starts with the next peer, so a machine that gets busier or quieter weighs on all alike.
      for (let k = 0; k < PEERS.length; k++) {
        const peer = PEERS[(k + round) % PEERS.length];
        results
          .get(row)
          .get(peer)
          .push(await run(peer, sink));
      }
    }
  }
} finally {
  await stop(sink.child);
}

const fmt = (xs, key, digits = 0) => {
  const v = median(xs.map((x) => x[key]).filter((x) => x !== undefined && !Number.isNaN(x)));
  return v === undefined ? '' : v.toFixed(digits);
};
console.log(`\n| row | ${PEERS.map((p) => NAMES[p]).join(' | ')} | sluice ÷ best peer |`);
console.log(`|---|${PEERS.map(() => '---:').join('|')}|---:|`);
for (const [row, byPeer] of results) {
  const rate = (p) => median(byPeer.get(p).map((x) => x.rate));
  const cells = PEERS.map((p) => {
    const xs = byPeer.get(p);
    const disk = xs[0]?.diskMb !== undefined ? `, ${fmt(xs, 'diskMb')} MB written` : '';
    return (
      `${Math.round(rate(p)).toLocaleString('en')} msg/s, ${fmt(xs, 'cpuUs', 2)} µs/msg, peak ` +
      `${fmt(xs, 'peakMb')} MB${xs[0]?.idleMb !== undefined ? `, idle ${fmt(xs, 'idleMb')} MB` : ''}${disk}`
    );
  });
  const peers = PEERS.filter((p) => p !== 'sluice');
  const ratio =
    PEERS.includes('sluice') && peers.length > 0 ? (rate('sluice') / Math.max(...peers.map(rate))).toFixed(2) : '';
  console.log(`| ${row} | ${cells.join(' | ')} | ${ratio} |`);
}
