// npm run bench:udp: UDP in -> memory queue -> TCP out to a counting sink, paced at steady rates
// (bench/udp-pace.c: every millisecond its share, 200-byte datagrams), and once in loggen's bursts,
// for sluice, rsyslog 8.2302 and syslog-ng 3.38 one after another. Reports the share delivered at
// each rate, the highest rate with under 0.5% lost, and CPU time per message. Peers are tuned as
// their documentation advises for UDP throughput:
// - rsyslog imudp (https://www.rsyslog.com/doc/configuration/modules/imudp.html): threads="2",
//   batchSize="256", rcvbufSize="4m"; the omfwd action on a LinkedList queue with
//   queue.dequeueBatchSize="1024" (https://www.rsyslog.com/doc/concepts/queues.html).
// - syslog-ng network(transport("udp")) (syslog-ng OSE 3.38 admin guide, "udp()" and "Flow-control"):
//   so-rcvbuf(4194304), log-fetch-limit(1000), log-iw-size(100000); log-fifo-size(1000000).
// - sluice: receive_buffer_size 4 MiB (its default), memory queue.
// Linux caps socket buffers at net.core.rmem_max; all three ask for the same 4 MiB.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import {
  cpuMicros,
  freePort,
  peers,
  relayConfig,
  requirePeers,
  root,
  runTimed,
  sngEnv,
  startRsyslog,
  startSink,
  startSluice,
  startSyslogNg,
  stop,
  tmp,
} from './harness.mjs';

const RATES = (process.env.BENCH_RATES ?? '50000,100000,200000,300000,400000').split(',').map(Number);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const pace = path.join(tmp(), 'udp-pace');
execFileSync('gcc', ['-O2', '-o', pace, path.join(root, 'bench/udp-pace.c')]);

async function sluice(sink) {
  const dir = tmp();
  const port = await freePort();
  const child = startSluice(
    dir,
    'sluice',
    relayConfig(
      dir,
      `{ type: syslog_udp, address: "127.0.0.1:${port}", receive_buffer_size: 4MiB }`,
      sink,
      '{ mode: memory }',
      'error',
    ),
  );
  return { port, child };
}

async function rsyslog(sink) {
  const dir = tmp();
  const port = await freePort();
  const child = startRsyslog(
    dir,
    `module(load="imudp" threads="2" batchSize="256")
input(type="imudp" address="127.0.0.1" port="${port}" rcvbufSize="4m")
action(type="omfwd" target="127.0.0.1" port="${sink.port}" protocol="tcp" template="RSYSLOG_ForwardFormat"
       queue.type="LinkedList" queue.size="1000000" queue.dequeueBatchSize="1024")`,
  );
  return { port, child };
}

async function syslogNg(sink) {
  const dir = tmp();
  const port = await freePort();
  const child = startSyslogNg(
    dir,
    `@version: 3.38
options { keep-hostname(yes); log-fifo-size(1000000); stats-freq(0); };
source s_in { network(transport("udp") ip("127.0.0.1") port(${port}) so-rcvbuf(4194304) log-fetch-limit(1000)
    log-iw-size(100000)); };
destination d_sink { network("127.0.0.1" transport("tcp") port(${sink.port})); };
log { source(s_in); destination(d_sink); };
`,
  );
  return { port, child };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Waits until the sink's count stops moving for 1.5 s (or reaches `want`). */
async function settle(sink, want) {
  let last = -1;
  let since = Date.now();
  for (;;) {
    await sleep(50);
    if (sink.count >= want) return;
    if (sink.count !== last) {
      last = sink.count;
      since = Date.now();
    } else if (Date.now() - since > 1500) return;
  }
}

/** Runs a sender to its end; resolves with its output. */
const run = async (cmd, args, env = process.env) => (await runTimed(cmd, args, SECONDS * 1000 + 120_000, env)).out;

async function measure(name, start) {
  const sink = await startSink();
  const target = await start(sink);
  await sleep(1500);
  const rows = [];
  try {
    for (const rate of RATES) {
      const base = sink.count;
      const cpu0 = cpuMicros(target.child.pid);
      const out = await run(pace, ['127.0.0.1', String(target.port), String(rate), String(SECONDS)]);
      const sent = Number(/sent=(\d+)/.exec(out)?.[1] ?? 0);
      // On loopback the kernel delivers each datagram in the sender's sendto: a busy receiver slows
      // the pacer, so the rate reached is reported beside the rate asked for.
      const sendSeconds = Number(/seconds=([\d.]+)/.exec(out)?.[1] ?? SECONDS);
      await settle(sink, base + sent);
      const got = sink.count - base;
      const cpu = (cpuMicros(target.child.pid) - cpu0) / Math.max(1, got);
      if (process.env.BENCH_DEBUG)
        console.error(
          name,
          rate,
          'cpu µs',
          cpuMicros(target.child.pid) - cpu0,
          'got',
          got,
          'sent',
          sent,
          'in',
          sendSeconds,
        );
      rows.push({
        load: `${rate.toLocaleString('en')}/s paced`,
        rate,
        reached: sent / sendSeconds,
        delivered: got / sent,
        cpu,
      });
    }
    // loggen's bursts: -D (UDP), about 60k msg/s on average, for SECONDS.
    const base = sink.count;
    const cpu0 = cpuMicros(target.child.pid);
    const out = await run(
      path.join(peers, 'syslog-ng/usr/bin/loggen'),
      ['-i', '-D', '-s', '200', '-r', '60000', '-I', String(SECONDS), '127.0.0.1', String(target.port)],
      sngEnv(),
    );
    const sent = Number([...out.matchAll(/count=(\d+)/g)].at(-1)?.[1] ?? 0); // the summary is the last line
    await settle(sink, base + sent);
    const got = sink.count - base;
    rows.push({
      load: 'loggen -D -r 60000 (bursts)',
      rate: 0,
      delivered: got / Math.max(1, sent),
      cpu: (cpuMicros(target.child.pid) - cpu0) / Math.max(1, got),
    });
  } finally {
    await stop(target.child);
    await stop(sink.child);
  }
  // The rate the sender reached, not the one asked for: a pacer slowed by the receiver tested less.
  const clean = rows.filter((r) => r.rate > 0 && r.delivered >= 0.995).map((r) => Math.round(r.reached));
  return { name, rows, best: clean.length ? Math.max(...clean) : 0 };
}

requirePeers();
console.log(`UDP benchmark: 200-byte datagrams, ${SECONDS} s per rate, udp-pace (or loggen) -> X -> TCP sink`);
const results = [];
const only = process.env.BENCH_PEERS?.split(','); // e.g. BENCH_PEERS=sluice for a quick look
for (const [key, name, start] of [
  ['sluice', 'sluice', sluice],
  ['rsyslog', 'rsyslog 8.2302 (imudp threads=2)', rsyslog],
  ['syslog-ng', 'syslog-ng 3.38', syslogNg],
]) {
  if (!only || only.includes(key)) results.push(await measure(name, start));
}
console.log(`\n| load | ${results.map((r) => r.name).join(' | ')} |`);
console.log(`|---|${results.map(() => '---:').join('|')}|`);
for (let i = 0; i < results[0].rows.length; i++) {
  const cell = (row) =>
    `${(row.delivered * 100).toFixed(1)}%${row.reached ? ` of ${Math.round(row.reached / 1000)}k/s sent` : ''}, ` +
    `${row.cpu.toFixed(2)} µs/msg`;
  console.log(`| ${results[0].rows[i].load} | ${results.map((r) => cell(r.rows[i])).join(' | ')} |`);
}
console.log(`| highest rate sent with < 0.5% lost | ${results.map((r) => r.best.toLocaleString('en')).join(' | ')} |`);
const peerResults = results.filter((r) => r.name !== 'sluice');
if (results[0].name === 'sluice' && peerResults.length > 0) {
  const bestPeer = Math.max(...peerResults.map((r) => r.best));
  console.log(
    `\nsluice: ${(results[0].best / Math.max(1, bestPeer)).toFixed(2)}x the best peer's highest loss-free rate`,
  );
}
