// npm run bench:nats: NATS JetStream, on loopback, with nats-server 2.9.10 (Debian's package).
// For an R1 stream (one server) and an R3 stream (three clustered servers on this machine):
// - ceiling: a bare @nats-io/jetstream publisher, window 512 (sluice's max_inflight default), each
//   publish with a Nats-Msg-Id as sluice sends them, 200-byte bodies;
// - agent: sluice (syslog_tcp fed by loggen → queue → nats destination), memory and reliable queue,
//   msg/s from loggen's start until the stream holds every message;
// - the writer's ceiling: a bare @nats-io/jetstream consumer (pull, batch 1000) acknowledging each
//   message as it arrives, reading the stream the agent filled;
// - writer: sluice (nats source → reliable queue → file, exactly_once), reading the same, msg/s from
//   its first line written until the file holds every line.
// Ratios: agent ÷ its ceiling (target ≥ 0.8), writer ÷ its ceiling (target: the writer ≥ 100k msg/s on R1). BENCH_MESSAGES (default 200k), BENCH_ROUNDS (default 3),
// BENCH_REPLICAS (default 1,3), BENCH_BATCH (the writer's batch), BENCH_PROFILE_DIR (CPU profiles of the sluice processes).
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  freePort,
  median,
  peers,
  requirePeers,
  root,
  startLoggen,
  startSluice,
  stop,
  tmp,
  waitPort,
} from './harness.mjs';

const N = Number(process.env.BENCH_MESSAGES ?? 200_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const WINDOW = 512;
const NATS = path.join(peers, 'nats/usr/sbin/nats-server');

const { connect } = await import('@nats-io/transport-node');
const { jetstream, jetstreamManager } = await import('@nats-io/jetstream');

/** One server, or three clustered, with JetStream under `dir`; returns their URLs and a stop. */
async function startServers(dir, size) {
  const ports = [];
  const cports = [];
  for (let i = 0; i < size; i++) {
    ports.push(await freePort());
    cports.push(await freePort());
  }
  const children = [];
  for (let i = 0; i < size; i++) {
    const conf = path.join(dir, `n${i}.conf`);
    const routes = cports.filter((_, k) => k !== i).map((p) => `"nats://127.0.0.1:${p}"`);
    writeFileSync(
      conf,
      `server_name: n${i}\nhost: 127.0.0.1\nport: ${ports[i]}\n` +
        `jetstream { store_dir: "${path.join(dir, `n${i}`)}", max_file_store: 4GB }\n` +
        (size > 1 ? `cluster { name: bench, listen: "127.0.0.1:${cports[i]}", routes: [${routes.join(', ')}] }\n` : ''),
    );
    children.push(spawn(NATS, ['-c', conf], { stdio: 'ignore' }));
  }
  for (const p of ports) await waitPort(p);
  const urls = ports.map((p) => `nats://127.0.0.1:${p}`);
  // A cluster answers JetStream requests once it has a leader.
  for (let t = 0; t < 100; t++) {
    try {
      await withJsm(urls, (jsm) => jsm.getAccountInfo(), 2000);
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  return {
    urls,
    stop: () => Promise.all(children.map(stop)),
  };
}

/** Runs `f` with a JetStream manager on a connection of its own, closed afterwards. */
async function withJsm(urls, f, timeout = 5000) {
  const nc = await connect({ servers: urls });
  try {
    return await f(await jetstreamManager(nc, { timeout }), nc);
  } finally {
    await nc.close();
  }
}

async function freshStream(urls, replicas) {
  await withJsm(urls, async (jsm) => {
    await jsm.streams.delete('BENCH').catch(() => undefined);
    await jsm.streams.add({ name: 'BENCH', subjects: ['bench.>'], num_replicas: replicas });
  });
}

const streamCount = (urls) => withJsm(urls, async (jsm) => (await jsm.streams.info('BENCH')).state.messages);

/** The ceiling: a bare publisher keeping WINDOW publishes in flight, each with a Nats-Msg-Id. */
async function bare(urls) {
  const nc = await connect({ servers: urls });
  const js = jetstream(nc, { timeout: 30_000 });
  const body = Buffer.alloc(200, 'x');
  const start = performance.now();
  let next = 0;
  let done = 0;
  await new Promise((resolve, reject) => {
    const more = () => {
      while (next < N && next - done < WINDOW) {
        const id = `bare:${next++}`;
        js.publish('bench.bare', body, { msgID: id }).then(() => {
          done++;
          if (done === N) resolve();
          else more();
        }, reject);
      }
    };
    more();
  });
  const secs = (performance.now() - start) / 1000;
  await nc.close();
  return N / secs;
}

/**
 * The writer's ceiling: a bare @nats-io/jetstream consumer (durable, pull, batch 1000 as sluice's
 * default) reading what the agent stored, acknowledging each message as it arrives.
 */
async function bareConsumer(urls, round) {
  const nc = await connect({ servers: urls });
  try {
    const jsm = await jetstreamManager(nc);
    const durable = `bare${round}`;
    await jsm.consumers.add('BENCH', { durable_name: durable, ack_policy: 'explicit', filter_subject: 'bench.agent' });
    const consumer = await jetstream(nc).consumers.get('BENCH', durable);
    let got = 0;
    let start = 0;
    await new Promise((resolve) => {
      consumer.consume({
        max_messages: 1000,
        callback: (m) => {
          if (got++ === 0) start = performance.now();
          m.ack();
          if (got === N) resolve();
        },
      });
    });
    return (N - 1) / ((performance.now() - start) / 1000);
  } finally {
    await nc.close();
  }
}

async function agent(urls, mode) {
  const dir = tmp();
  const port = await freePort();
  const child = startSluice(
    dir,
    'agent',
    `state_dir: ${dir}/state
log: { level: warn }
admin: { enabled: false }
sources:
  in: { type: syslog_tcp, address: "127.0.0.1:${port}" }
destinations:
  js: { type: nats, servers: [${urls.map((u) => `"${u}"`).join(', ')}], subject: "bench.agent",
    queue: { mode: ${mode}, max_size: 1GiB } }
pipelines:
  p: { from: [in], to: [js] }
`,
  );
  try {
    await waitPort(port, 15_000, child);
    const base = await streamCount(urls);
    const start = performance.now();
    const lg = startLoggen(port, N);
    const { last, lastMove } = await follow(() => streamCount(urls), base + N, 100, 15_000);
    lg.kill();
    if (last - base < N) console.error(`agent (${mode}): ${last - base} of ${N} stored`);
    return (last - base) / ((lastMove - start) / 1000);
  } finally {
    await stop(child);
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Polls the count `read` every `everyMs` until it reaches `want`, or stops moving for 15 s
 * (`firstMs` before it first moves). Returns its last value and when it came, and when it first
 * moved and to what.
 */
async function follow(read, want, everyMs, firstMs) {
  let last = await read();
  let lastMove = performance.now();
  let first = null;
  while (last < want && performance.now() - lastMove <= (first ? 15_000 : firstMs)) {
    await new Promise((r) => setTimeout(r, everyMs));
    const n = await read();
    if (n === last) continue;
    last = n;
    lastMove = performance.now();
    first ??= { at: lastMove, count: n };
  }
  return { last, lastMove, first };
}

/** Lines in `file` (read as it grows). */
function lineCounter(file) {
  let offset = 0;
  let lines = 0;
  const buf = Buffer.alloc(1 << 20);
  return () => {
    if (!existsSync(file)) return 0;
    const size = statSync(file).size;
    const fd = openSync(file, 'r');
    try {
      while (offset < size) {
        const n = readSync(fd, buf, 0, Math.min(buf.length, size - offset), offset);
        for (let i = 0; i < n; i++) if (buf[i] === 10) lines++;
        offset += n;
      }
    } finally {
      closeSync(fd);
    }
    return lines;
  };
}

/** A writer reading the whole stream (N messages of the agent) into a file. */
async function writer(urls, round) {
  const dir = tmp();
  const out = path.join(dir, 'out.log');
  const child = startSluice(
    dir,
    'writer',
    `state_dir: ${dir}/state
log: { level: warn }
admin: { enabled: false }
sources:
  js: { type: nats, servers: [${urls.map((u) => `"${u}"`).join(', ')}], stream: BENCH, durable: w${round},
    filter_subject: bench.agent, max_ack_pending: ${process.env.BENCH_MAX_ACK_PENDING ?? 10000}${process.env.BENCH_BATCH ? `, batch: ${process.env.BENCH_BATCH}` : ''} }
destinations:
  out: { type: file, path: ${out}, format: raw, exactly_once: ${process.env.BENCH_WRITER_EXACTLY ?? 'true'},
    queue: { mode: ${process.env.BENCH_WRITER_QUEUE ?? 'reliable'}, max_size: 1GiB } }
pipelines:
  p: { from: [js], to: [out] }
`,
  );
  try {
    // From the first line written: the process start and the consumer's creation are not the path.
    const { last, lastMove, first } = await follow(lineCounter(out), N, 20, 30_000);
    if (last < N) console.error(`writer: ${last} of ${N} written`);
    return first ? (last - first.count) / ((lastMove - first.at) / 1000) : 0;
  } finally {
    await stop(child);
    rmSync(dir, { recursive: true, force: true });
  }
}

requirePeers();
if (!existsSync(NATS)) throw new Error('nats-server is missing: run "bash scripts/install-peers.sh" first');
if (!existsSync(path.join(root, 'dist/cli.js'))) throw new Error('build first (npm run build)');
const rows = [];
for (const replicas of (process.env.BENCH_REPLICAS ?? '1,3').split(',').map(Number)) {
  const dir = tmp();
  mkdirSync(dir, { recursive: true });
  const servers = await startServers(dir, replicas);
  const r = { bare: [], memory: [], reliable: [], bareConsumer: [], writer: [] };
  try {
    for (let round = 0; round < ROUNDS; round++) {
      await freshStream(servers.urls, replicas);
      r.bare.push(await bare(servers.urls));
      await freshStream(servers.urls, replicas);
      r.memory.push(await agent(servers.urls, 'memory'));
      await freshStream(servers.urls, replicas);
      r.reliable.push(await agent(servers.urls, 'reliable'));
      r.bareConsumer.push(await bareConsumer(servers.urls, round));
      r.writer.push(await writer(servers.urls, round));
    }
  } finally {
    await servers.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  rows.push({ replicas, ...Object.fromEntries(Object.entries(r).map(([k, v]) => [k, median(v)])) });
}
const k = (x) => `${Math.round(x).toLocaleString('en')}`;
console.log(`\nNATS JetStream, ${N.toLocaleString('en')} messages of 200 bytes, ${ROUNDS} rounds (medians), msg/s`);
console.log(
  '| stream | bare publisher (ceiling) | agent, memory queue | ÷ ceiling | agent, reliable queue | ÷ ceiling | bare consumer (ceiling) | writer (nats → reliable → file) | ÷ ceiling |',
);
console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const r of rows)
  console.log(
    `| R${r.replicas} | ${k(r.bare)} | ${k(r.memory)} | ${(r.memory / r.bare).toFixed(2)} | ${k(r.reliable)} | ${(r.reliable / r.bare).toFixed(2)} | ${k(r.bareConsumer)} | ${k(r.writer)} | ${(r.writer / r.bareConsumer).toFixed(2)} |`,
  );
