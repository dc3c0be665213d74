// npm run bench:forward: forwarding with acknowledgements, side by side.
//  1. loggen -> agent (TCP in, reliable queue, fsync) -> sluice protocol -> central (reliable queue,
//     fsync) -> TCP -> line-counting sink. Target: >= 150k msg/s of 200-byte messages.
//  2. loggen -> X -> RELP -> rsyslog 8.2302 imrelp -> omfwd TCP -> the same sink, where X is sluice
//     (TCP in, memory or reliable queue, RELP destination) or rsyslog's own imtcp -> omrelp.
//     Target: sluice >= omrelp. Run against two receivers, each the same for every sender:
//     - `default`: imrelp's ruleset queue as rsyslog ships it. Its worker takes whatever is queued,
//       often one message, and sleeps when the queue is empty, so imrelp wakes it (futex) for
//       nearly every message. How often depends on how much CPU the sender leaves free on this
//       shared machine: the lighter the sender, the more the receiver wakes and the more CPU
//       per message it spends, which hides the sender's own speed.
//     - `batched`: the same, with queue.minDequeueBatchSize (rsyslog's documented knob for this),
//       so the worker takes at least 256 messages or waits 2 ms. The receiver then costs about
//       the same whoever sends, and the senders' difference shows.
//     BENCH_RELP_RECEIVER=default or batched runs one of them.
import { readdirSync, readFileSync } from 'node:fs';
import {
  freePort,
  loggenRun,
  median,
  peakRssMb,
  requirePeers,
  startRsyslog,
  startSink,
  startSluice,
  stop,
  tmp,
  waitPort,
} from './harness.mjs';

const N = Number(process.env.BENCH_MESSAGES ?? 1_000_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const TOKEN = 'bench-token-0123456789abcdef';
// The same RELP window (messages unanswered at once) for sluice and omrelp.
const RELP_WINDOW = Number(process.env.BENCH_RELP_WINDOW ?? 4096);

async function agentToCentral(sink) {
  const dir = tmp();
  const centralPort = await freePort();
  const inPort = await freePort();
  const central = startSluice(
    dir,
    'central',
    `
state_dir: ${dir}/central
log: { level: warn, format: json }
admin: { enabled: false }
sources:
  agents: { type: sluice, address: "127.0.0.1:${centralPort}", tokens: ["${TOKEN}"] }
destinations:
  sink: { type: syslog, address: "127.0.0.1:${sink.port}", framing: lf, queue: { mode: reliable, max_size: 2GiB,
      sync_interval: 50ms } }
pipelines:
  p: { from: [agents], to: [sink] }
`,
  );
  await waitPort(centralPort);
  const agent = startSluice(
    dir,
    'agent',
    `
state_dir: ${dir}/agent
log: { level: warn, format: json }
admin: { enabled: false }
sources:
  in: { type: syslog_tcp, address: "127.0.0.1:${inPort}" }
destinations:
  central: { type: sluice, urls: ["ws://127.0.0.1:${centralPort}"], token: "${TOKEN}",
      compression: ${process.env.BENCH_COMPRESSION ?? 'deflate'}, queue: { mode: reliable, max_size: 2GiB,
      sync_interval: 50ms } }
pipelines:
  p: { from: [in], to: [central] }
`,
  );
  await waitPort(inPort);
  return {
    port: inPort,
    cpu: { sender: agent, receiver: central },
    stop: async () => {
      await stop(agent);
      await stop(central);
    },
  };
}

/** The receivers of part 2 (see the top of this file): extra parameters of imrelp's ruleset queue. */
const RECEIVERS = {
  default: '',
  batched: 'queue.minDequeueBatchSize="256" queue.minDequeueBatchSize.timeout="2"',
};

/** rsyslog imrelp forwarding everything to the sink: the receiving end of part 2. */
async function imrelpToSink(sink, receiver) {
  const dir = tmp();
  const port = await freePort();
  const child = startRsyslog(
    dir,
    `
module(load="imrelp")
input(type="imrelp" port="${port}" ruleset="out")
template(name="raw" type="string" string="%rawmsg%")
ruleset(name="out" queue.type="LinkedList" queue.size="200000" ${RECEIVERS[receiver]})
    { action(type="omfwd" target="127.0.0.1" port="${sink.port}" protocol="tcp" template="raw") }
`,
  );
  await waitPort(port);
  return { port, child };
}

async function sluiceToImrelp(sink, receiver, queue) {
  const rx = await imrelpToSink(sink, receiver);
  const dir = tmp();
  const inPort = await freePort();
  const agent = startSluice(
    dir,
    'relp',
    `
state_dir: ${dir}/state
log: { level: warn, format: json }
admin: { enabled: false }
sources:
  in: { type: syslog_tcp, address: "127.0.0.1:${inPort}" }
destinations:
  r: { type: relp, address: "127.0.0.1:${rx.port}", window: ${RELP_WINDOW}, queue: ${queue} }
pipelines:
  p: { from: [in], to: [r] }
`,
  );
  await waitPort(inPort);
  return {
    port: inPort,
    cpu: { sender: agent, receiver: rx.child },
    stop: async () => {
      await stop(agent);
      await stop(rx.child);
    },
  };
}

async function omrelpToImrelp(sink, receiver) {
  const rx = await imrelpToSink(sink, receiver);
  const dir = tmp();
  const inPort = await freePort();
  const child = startRsyslog(
    dir,
    `
module(load="imtcp")
module(load="omrelp")
input(type="imtcp" port="${inPort}" ruleset="fwd")
template(name="raw" type="string" string="%rawmsg%")
ruleset(name="fwd" queue.type="LinkedList" queue.size="200000")
    { action(type="omrelp" target="127.0.0.1" port="${rx.port}" template="raw" windowSize="${RELP_WINDOW}") }
`,
  );
  await waitPort(inPort);
  return {
    port: inPort,
    cpu: { sender: child, receiver: rx.child },
    stop: async () => {
      await stop(child);
      await stop(rx.child);
    },
  };
}

const TICKS = 100; // USER_HZ on Linux
/** User plus system CPU seconds a live process has used so far (Linux /proc). */
function cpuSeconds(child) {
  const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / TICKS;
}

function threads(child) {
  const out = [];
  for (const tid of readdirSync(`/proc/${child.pid}/task`)) {
    try {
      const comm = readFileSync(`/proc/${child.pid}/task/${tid}/comm`, 'utf8').trim();
      const [run, wait, slices] = readFileSync(`/proc/${child.pid}/task/${tid}/schedstat`, 'utf8')
        .trim()
        .split(' ')
        .map(Number);
      // Voluntary switches: how often the thread went to sleep (an empty socket, a lock, a condition).
      const sleeps = /voluntary_ctxt_switches:\s+(\d+)/.exec(
        readFileSync(`/proc/${child.pid}/task/${tid}/status`, 'utf8'),
      )?.[1];
      if (run > 1e8)
        out.push(
          `${comm} cpu ${(run / 1e9).toFixed(2)}s wait ${(wait / 1e9).toFixed(2)}s slices ${slices} sleeps ${sleeps}`,
        );
    } catch {
      // the thread ended
    }
  }
  return out;
}

/**
 * Runs ROUNDS rounds of every pipeline in `entries` against one sink. The pipelines take turns
 * round by round, each round starting with the next one, so that a machine that gets busier or
 * quieter during the run weighs on all of them alike.
 */
async function measureSet(entries) {
  const sink = await startSink();
  const results = entries.map(({ name }) => ({ name, rates: [], senderUs: [], receiverUs: [], senderRss: [] }));
  try {
    for (let round = 0; round < ROUNDS; round++) {
      for (let j = 0; j < entries.length; j++) {
        const k = (round + j) % entries.length;
        const res = results[k];
        const target = await entries[k].start(sink);
        try {
          const before = { s: cpuSeconds(target.cpu.sender), r: cpuSeconds(target.cpu.receiver) };
          const r = await loggenRun(target.port, sink, N);
          if (r.delivered < r.sent) console.error(`${res.name}: only ${r.delivered} of ${r.sent} arrived`);
          res.rates.push(r.rate);
          // CPU time per delivered message of the sending and the receiving process, in microseconds.
          res.senderUs.push(((cpuSeconds(target.cpu.sender) - before.s) / r.delivered) * 1e6);
          res.receiverUs.push(((cpuSeconds(target.cpu.receiver) - before.r) / r.delivered) * 1e6);
          res.senderRss.push(peakRssMb(target.cpu.sender.pid));
          if (process.env.BENCH_THREADS) {
            // Per thread: CPU seconds, seconds spent runnable but waiting for a CPU, and time slices.
            for (const [who, child] of Object.entries(target.cpu))
              console.log(`  ${res.name} ${who}: ${threads(child).join('; ')}`);
          }
        } finally {
          await target.stop();
        }
      }
    }
  } finally {
    await stop(sink.child);
  }
  return results.map((r) => ({
    ...r,
    median: median(r.rates),
    senderUs: median(r.senderUs),
    receiverUs: median(r.receiverUs),
    senderRss: median(r.senderRss),
  }));
}

requirePeers();
console.log(
  `forwarding benchmark: ${N} messages of 200 bytes per round, ${ROUNDS} rounds, loggen -> ... -> line-counting sink ` +
    `(TCP)`,
);
const only = process.env.BENCH_ONLY; // 'central' or 'relp' to run one part
const skip = { name: 'skipped', median: NaN, rates: [] };
const [a] =
  only === 'relp'
    ? [skip]
    : await measureSet([
        { name: 'agent -> sluice protocol -> central (reliable queues, fsync both sides)', start: agentToCentral },
      ]);
const us = (x) => (x === undefined ? '' : x.toFixed(2));
function table(results) {
  console.log('');
  console.log(
    '| pipeline | median msg/s | rounds, in run order | sender CPU µs/msg | receiver CPU µs/msg ' +
      '| sender peak RSS MB |',
  );
  console.log('|---|---:|---|---:|---:|---:|');
  for (const r of results)
    console.log(
      `| ${r.name} | ${Math.round(r.median).toLocaleString('en')} | ` +
        `${r.rates.map((x) => `${Math.round(x / 1000)}k`).join(', ')} | ${us(r.senderUs)} | ${us(r.receiverUs)} | ` +
        `${r.senderRss === undefined ? '' : Math.round(r.senderRss)} |`,
    );
}
if (only === 'central') {
  table([a]);
  console.log(`\nagent -> central: ${Math.round(a.median).toLocaleString('en')} msg/s (target >= 150,000)`);
  process.exit(0);
}
const receivers = process.env.BENCH_RELP_RECEIVER ? [process.env.BENCH_RELP_RECEIVER] : Object.keys(RECEIVERS);
for (const rcv of receivers)
  if (!(rcv in RECEIVERS))
    throw new Error(`BENCH_RELP_RECEIVER: ${rcv} is not one of ${Object.keys(RECEIVERS).join(', ')}`);
// Every sender against every receiver, all taking turns round by round.
const relp = await measureSet(
  receivers.flatMap((rcv) => [
    {
      name: `sluice RELP destination (memory queue, as omrelp's) -> imrelp, ${rcv} receiver`,
      start: (k) => sluiceToImrelp(k, rcv, '{ mode: memory }'),
    },
    {
      name: `sluice RELP destination (reliable queue, fsync) -> imrelp, ${rcv} receiver`,
      start: (k) => sluiceToImrelp(k, rcv, '{ mode: reliable, max_size: 2GiB, sync_interval: 50ms }'),
    },
    { name: `rsyslog 8.2302 omrelp (memory queue) -> imrelp, ${rcv} receiver`, start: (k) => omrelpToImrelp(k, rcv) },
  ]),
);
table(only === 'relp' ? relp : [a, ...relp]);
if (only !== 'relp')
  console.log(`\nagent -> central: ${Math.round(a.median).toLocaleString('en')} msg/s (target >= 150,000)`);
receivers.forEach((rcv, i) => {
  const [s, sr, o] = relp.slice(3 * i, 3 * i + 3);
  // Also the median of the round-by-round ratios: each round's runs are minutes apart at most, so
  // this pairs them against the machine's drift.
  const paired = (x) => median(x.rates.map((rate, k) => rate / o.rates[k]));
  console.log(
    `RELP, ${rcv} receiver: sluice ${Math.round(s.median).toLocaleString('en')} msg/s = ` +
      `${(s.median / o.median).toFixed(2)}x rsyslog omrelp (round by round ${paired(s).toFixed(2)}x), both with ` +
      `memory queues (target >= 1x); ` +
      `with a reliable queue ${(sr.median / o.median).toFixed(2)}x (${paired(sr).toFixed(2)}x)`,
  );
});
