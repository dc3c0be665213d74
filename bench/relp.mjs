// npm run bench:relp: librelp's own sender (scripts/relp-tools/relp-send.c, built against Debian's
// librelp-dev by scripts/install-peers.sh) -> X's RELP input -> TCP out to a counting sink.
// One session, BENCH_RELP_WINDOW messages unanswered at most (librelp's default window is 128),
// BENCH_MESSAGES of 200 bytes, timed after a session of BENCH_WARMUP (20,000) untimed ones. The rate is taken from the first message to the last answer
// (relp-send exits once every message is answered), and every message must reach the sink.
// X is:
// - sluice, RELP source, memory queue; and the default reliable queue (answers after the fsync,
//   `sync: interval` 50 ms).
// - rsyslog 8.2302 imrelp, the ruleset on a LinkedList queue (memory) and on a Disk queue; imrelp
//   answers once a message is in the queue, and rsyslog's disk queue does not fsync unless
//   queue.syncQueueFiles="on" (https://www.rsyslog.com/doc/rainerscript/queue_parameters.html), so
//   it is shown both ways. queue.dequeueBatchSize="1024" as rsyslog's queue docs advise for
//   throughput (https://www.rsyslog.com/doc/concepts/queues.html).
// syslog-ng OSE has no RELP source (RELP is in syslog-ng PE only), so it has no row here.
import path from 'node:path';
import {
  freePort,
  median,
  peers,
  relayConfig,
  runTimed,
  startRsyslog,
  startSink,
  startSluice,
  stop,
  tmp,
  waitCount,
  waitPort,
} from './harness.mjs';

const N = Number(process.env.BENCH_MESSAGES ?? 50_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const WINDOW = Number(process.env.BENCH_RELP_WINDOW ?? 128);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 20_000);
const relpSend = path.join(peers, 'relp-tools', 'relp-send');

async function sluice(sink, queue) {
  const dir = tmp();
  const port = await freePort();
  const child = startSluice(
    dir,
    'sluice',
    relayConfig(dir, `{ type: relp, address: "127.0.0.1:${port}" }`, sink, queue),
  );
  await waitPort(port, 15_000, child);
  return { port, stop: () => stop(child) };
}

async function rsyslog(sink, queue) {
  const dir = tmp();
  const port = await freePort();
  const child = startRsyslog(
    dir,
    `module(load="imrelp")
input(type="imrelp" port="${port}" address="127.0.0.1" ruleset="out")
ruleset(name="out" ${queue} queue.dequeueBatchSize="1024") {
  action(type="omfwd" target="127.0.0.1" port="${sink.port}" protocol="tcp" template="RSYSLOG_ForwardFormat")
}`,
  );
  await waitPort(port, 15_000, child);
  return { port, stop: () => stop(child) };
}

const variants = [
  ['sluice, memory queue', (s) => sluice(s, '{ mode: memory }')],
  ['sluice, reliable queue (default: fsync, sync: interval 50ms)', (s) => sluice(s, '{ mode: reliable }')],
  ['rsyslog 8.2302 imrelp, LinkedList queue', (s) => rsyslog(s, 'queue.type="LinkedList" queue.size="1000000"')],
  [
    'rsyslog 8.2302 imrelp, Disk queue, no fsync',
    (s) => rsyslog(s, 'queue.type="Disk" queue.fileName="q" queue.maxFileSize="1g"'),
  ],
  [
    'rsyslog 8.2302 imrelp, Disk queue, syncQueueFiles="on"',
    (s) => rsyslog(s, 'queue.type="Disk" queue.fileName="q" queue.maxFileSize="1g" queue.syncQueueFiles="on"'),
  ],
];
const only = process.env.BENCH_ONLY ? new RegExp(process.env.BENCH_ONLY) : null;

console.log(
  `RELP source benchmark: relp-send (librelp 1.11), ${N} messages of 200 bytes after ${WARMUP} untimed, window ${WINDOW}, ${ROUNDS} rounds ` +
    `(variants take turns each round)`,
);
const sink = await startSink();
const rates = new Map(variants.map(([name]) => [name, []]));
try {
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, start] of variants) {
      if (only && !only.test(name)) continue;
      const target = await start(sink);
      try {
        // A receiver runs for days: the timed run starts after a warm-up run (V8's compilers have
        // seen the path; a disk queue's file has its blocks), the same for every receiver.
        if (WARMUP > 0) {
          const before = sink.count;
          await runTimed(relpSend, ['127.0.0.1', String(target.port), String(WARMUP), String(WINDOW), '200'], 600_000);
          await waitCount(sink, before + WARMUP, 10_000);
        }
        const base = sink.count;
        const r = await runTimed(
          relpSend,
          ['127.0.0.1', String(target.port), String(N), String(WINDOW), '200'],
          600_000,
        );
        const got = await waitCount(sink, base + N, 10_000);
        if (r.code !== 0 || got - base < N)
          console.error(`${name}: relp-send exit ${r.code}, ${got - base} of ${N} arrived: ${r.out.trim()}`);
        rates.get(name).push(N / r.seconds);
      } finally {
        await target.stop();
      }
    }
  }
} finally {
  await stop(sink.child);
}
console.log('\n| RELP input | median msg/s | rounds |');
console.log('|---|---:|---|');
for (const [name, rs] of rates) {
  if (rs.length)
    console.log(
      `| ${name} | ${Math.round(median(rs)).toLocaleString('en')} | ` +
        `${rs.map((x) => `${Math.round(x / 1000)}k`).join(', ')} |`,
    );
}
const mem = rates.get(variants[0][0]);
const rel = rates.get(variants[1][0]);
if (mem.length && rel.length)
  console.log(`\nsluice reliable ÷ sluice memory: ${(median(rel) / median(mem)).toFixed(2)} (target >= 0.5)`);
// Against the peer doing the same: answered once in memory, and answered once on disk (rsyslog's
// disk queue without fsync is shown, not compared: it answers before anything is durable).
const ratio = (a, b) => {
  const x = rates.get(variants[a][0]);
  const y = rates.get(variants[b][0]);
  return x.length && y.length ? (median(x) / median(y)).toFixed(2) : 'n/a';
};
console.log(`sluice memory ÷ rsyslog LinkedList: ${ratio(0, 2)}`);
console.log(`sluice reliable ÷ rsyslog Disk queue with syncQueueFiles: ${ratio(1, 4)}`);
