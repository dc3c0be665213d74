import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, onTestFinished } from 'vitest';
import { portOf, readLines, scratchDir, sleep, testAgent, waitFor } from '../helpers/agent.js';
import { type NatsCluster, NatsProxy, natsAgentYaml, testNatsCluster, withJetStream } from '../helpers/nats.js';
import { sendTcp } from '../helpers/net.js';
import { Proc } from '../helpers/proc.js';
import { seeded } from '../torture/harness.js';

const servers = (c: Pick<NatsCluster, 'urls'>) => `[${c.urls.map((u) => `"${u}"`).join(', ')}]`;

function consumerYaml(dir: string, c: Pick<NatsCluster, 'urls'>, name: string, extra = ''): string {
  return `state_dir: ${dir}/${name}
admin: { enabled: false }
sources:
  js:
    type: nats
    servers: ${servers(c)}
    stream: LOGS
    durable: writers
    backoff: { initial: 50ms, max: 500ms }
${extra || '    ack_wait: 5s'}
destinations:
  out:
    type: file
    path: ${dir}/${name}.log
    exactly_once: true
    queue: { mode: reliable }
pipelines:
  p: { from: [js], to: [out] }
`;
}

const line = (i: number) => `<13>1 2026-11-30T00:00:00Z h app - - - n=${i}`;

/** Loaded into a writer run as a process of its own: it SIGKILLs it at a chosen point (see the file). */
const failpoint = fileURLToPath(new URL('../helpers/nats-failpoint.mjs', import.meta.url));

/** The config of a writer run as a process of its own (logging at info level, as JSON), written to `<dir>/<name>.yaml`. */
function writerConfig(dir: string, c: Pick<NatsCluster, 'urls'>, name: string, extra: string): string {
  const cfg = path.join(dir, `${name}.yaml`);
  writeFileSync(cfg, `log: { level: info, format: json }\n${consumerYaml(dir, c, name, extra)}`);
  return cfg;
}

/** How many times each line is in these files. */
function counted(files: string[]): Map<string, number> {
  const n = new Map<string, number>();
  for (const l of files.flatMap((f) => readLines(f))) n.set(l, (n.get(l) ?? 0) + 1);
  return n;
}

describe('nats source', () => {
  it('reads what the nats destination published, into a file, each record once and in order', async () => {
    const c = await testNatsCluster();
    const dir = scratchDir();
    const shipper = await testAgent(natsAgentYaml({ dir: `${dir}/ship`, urls: c.urls }));
    const writer = await testAgent(consumerYaml(dir, c, 'w1'));
    const lines = Array.from({ length: 5000 }, (_, i) => line(i));
    await sendTcp(portOf(shipper, 'in'), lines);
    await waitFor('all written', () => readLines(path.join(dir, 'w1.log')).length >= 5000, 30_000);
    await waitFor('all acknowledged', () => writer.destinations.get('out')!.queue.stats().records === 0, 10_000);
    expect(readLines(path.join(dir, 'w1.log'))).toEqual(lines);
    expect(writer.counters.of('js').received).toBe(5000);
  }, 60_000);
});

/**
 * Publishes `n` numbered syslog lines (from `from`) to the LOGS stream (made here, R1, unless it
 * exists) and waits for their PubAcks, `timeout` ms each at most.
 */
async function publish(url: string, n: number, from = 0, timeout?: number): Promise<string[]> {
  const { jetstream } = await import('@nats-io/jetstream');
  return withJetStream([url], async (jsm, nc) => {
    await jsm.streams.add({ name: 'LOGS', subjects: ['logs.>'] }).catch(() => undefined);
    const js = jetstream(nc, timeout ? { timeout } : {});
    const lines = Array.from({ length: n }, (_, i) => line(from + i));
    await Promise.all(lines.map((l) => js.publish('logs.app', l)));
    return lines;
  });
}

describe('nats source: a writer killed between its commit and JetStream hearing the ack', () => {
  /**
   * Writer 1 reads through a proxy; once it is reading, the proxy drops everything it sends: it
   * commits 200 messages and its acks never arrive. It stops (the acks are lost with it).
   */
  async function commitWithLostAcks(c: NatsCluster, dir: string): Promise<string[]> {
    const proxy = await NatsProxy.start(c.nodes[0]!.port);
    onTestFinished(() => proxy.close());
    await publish(c.urls[0]!, 0);
    const w1 = await testAgent(consumerYaml(dir, { urls: [proxy.url] }, 'w1', '    ack_wait: 6s'));
    await waitFor('writer 1 to have a consumer', async () => (await consumerPending(c.urls[0]!)) !== null, 10_000);
    await sleep(300); // its pull request is at the server
    proxy.cut('to-server');
    const lines = await publish(c.urls[0]!, 200);
    await waitFor('writer 1 to write them', () => readLines(path.join(dir, 'w1.log')).length === 200, 10_000);
    await w1.stop();
    // JetStream still waits for the acks of all 200.
    expect(await consumerPending(c.urls[0]!)).toBe(200);
    return lines;
  }

  it('acknowledges them again when it restarts within ack_wait: no other writer gets them', async () => {
    const c = await testNatsCluster();
    const dir = scratchDir();
    const lines = await commitWithLostAcks(c, dir);
    const w2 = await testAgent(consumerYaml(dir, c, 'w2', '    ack_wait: 6s'));
    await testAgent(consumerYaml(dir, c, 'w1', '    ack_wait: 6s'));
    await waitFor('the acks to arrive', async () => (await consumerPending(c.urls[0]!)) === 0, 5000);
    await sleep(7000); // past ack_wait: nothing is delivered again
    expect(readLines(path.join(dir, 'w2.log'))).toEqual([]);
    expect(w2.counters.of('js').received).toBe(0);
    expect(readLines(path.join(dir, 'w1.log'))).toEqual(lines);
  }, 60_000);

  it('takes them as duplicates when they come again after ack_wait: written once', async () => {
    const c = await testNatsCluster();
    const dir = scratchDir();
    const lines = await commitWithLostAcks(c, dir);
    await sleep(5000); // too late to acknowledge again (ack_wait 6 s, less the margin)
    const w1 = await testAgent(consumerYaml(dir, c, 'w1', '    ack_wait: 6s'));
    await waitFor('the redelivery', () => (w1.counters.of('js').dropped.duplicate ?? 0) === 200, 15_000);
    await waitFor('the acks to arrive', async () => (await consumerPending(c.urls[0]!)) === 0, 5000);
    expect(readLines(path.join(dir, 'w1.log'))).toEqual(lines);
    expect(w1.counters.of('js').received).toBe(0);
  }, 60_000);
});

describe('nats source: a writer killed between handing a batch to its queue and hearing of the commit', () => {
  const SEED = Number(process.env.SEED ?? 20261201);

  // The adversary: writer 1 is SIGKILLed, round after round, at seeded points of its nats source:
  // right after a batch's intents reach the ack log (nothing queued yet), or when a batch's commit
  // is heard of (the queue has fsynced it, and the file may have written it, but the ack log does not
  // say so and JetStream has no ack). Writer 2 reads the same durable all along. Every message must
  // be in the two files exactly once: none lost, none written twice, by either writer.
  it(`writes every message once across both writers, through seeded kills (SEED=${SEED})`, async () => {
    const rnd = seeded(SEED);
    const c = await testNatsCluster();
    const dir = scratchDir();
    const extra = '    ack_wait: 10s\n    batch: 50';
    const cfg = writerConfig(dir, c, 'w1', extra);
    await publish(c.urls[0]!, 0); // the stream
    let kill = '';
    const w1 = new Proc(cfg, { args: ['--import', failpoint], env: () => ({ SLUICE_TEST_KILL: kill }) });
    onTestFinished(() => w1.stop());
    const w2 = await testAgent(
      consumerYaml(dir, c, process.env.NO_W2 ? 'w3' : 'w2', process.env.NO_W2 ? extra.replace('writers', 'x') : extra),
    );
    const sent: string[] = [];
    const events: string[] = [];
    let recovered = 0;
    /** Restarts in writer 1's log that read batches of unknown commit again. */
    const recoveries = () => [...w1.log.matchAll(/"handed_on_again":([1-9]\d*)/g)].length;
    const ROUNDS = 8;
    for (let round = 0; round < ROUNDS; round++) {
      kill = `${rnd.pick(['intend', 'settle'])}:${rnd.int(1, 3)}`;
      w1.start();
      // Once it reads (its recovery is done by then), and the pull requests of both are at the server.
      // (A kill point reached while it recovers ends it before.)
      const ended = w1.exited();
      await Promise.race([ended, waitFor('writer 1 to read', () => w1.log.includes('NATS consumer reading'), 15_000)]);
      await sleep(rnd.int(0, 300));
      sent.push(...(await publish(c.urls[0]!, 600, sent.length)));
      const how = await Promise.race([ended, sleep(6000).then(() => 'alive')]);
      if (how === 'alive') await w1.kill(); // the point was not reached: killed where it stands
      events.push(`${kill}→${how ?? 'exit'}`);
      if (process.env.DEBUG_W1)
        console.log(
          round,
          readLines(path.join(dir, 'w1.log')).length,
          readLines(path.join(dir, 'w2.log')).length,
          sent.length,
        );
      recovered += recoveries();
      w1.log = '';
    }
    kill = '';
    w1.start();
    const out = [path.join(dir, 'w1.log'), path.join(dir, 'w2.log')];
    const detail = () => `seed ${SEED}, events ${events.join(' ')}`;
    await waitFor('every message written', () => counted(out).size >= sent.length, 30_000).catch((e: Error) => {
      throw new Error(`${e.message}: ${detail()}`);
    });
    await waitFor('every message acknowledged', async () => (await consumerPending(c.urls[0]!)) === 0, 20_000);
    recovered += recoveries();
    const count = counted(out);
    const twice = [...count].filter(([, n]) => n > 1).map(([l]) => l);
    const missing = sent.filter((l) => !count.has(l));
    expect({ missing: missing.length, twice: twice.length, first: twice[0] ?? missing[0] }, detail()).toEqual({
      missing: 0,
      twice: 0,
      first: undefined,
    });
    // The rounds did aim where they should: restarts found batches of unknown commit and read them again.
    expect(recovered, detail()).toBeGreaterThanOrEqual(3);
    expect(w2.counters.of('js').received).toBeGreaterThan(0);
  }, 180_000);
});

describe('nats source: a writer back after the ack_wait of what it had handed on', () => {
  const extra = '    ack_wait: 6s\n    batch: 50';

  /**
   * Writer 1 as a process killed at `kill` once it took some of 400 messages (`whenKilled` is called
   * then); back 8 s later, past its ack_wait (`whenBack` is called as soon as it has decided what
   * to read again).
   */
  async function killedAndBackLate(
    dir: string,
    c: NatsCluster,
    kill: string,
    whenKilled = async () => {},
    whenBack = async () => {},
  ) {
    const cfg = writerConfig(dir, c, 'w1', extra);
    await publish(c.urls[0]!, 0); // the stream
    let env = kill;
    const w1 = new Proc(cfg, { args: ['--import', failpoint], env: () => ({ SLUICE_TEST_KILL: env }) });
    onTestFinished(() => w1.stop());
    w1.start();
    const ended = w1.exited();
    await waitFor('writer 1 to read', () => w1.log.includes('NATS consumer reading'), 15_000);
    const sent = await publish(c.urls[0]!, 400);
    expect(await Promise.race([ended, sleep(10_000).then(() => 'alive')])).toBe('SIGKILL');
    await whenKilled();
    await sleep(8000);
    env = '';
    w1.log = '';
    w1.start();
    await waitFor(
      'writer 1 to recover',
      () => w1.log.includes('past their ack_wait') || w1.log.includes('NATS consumer reading'),
      15_000,
    );
    await whenBack();
    await waitFor('writer 1 to read again', () => w1.log.includes('NATS consumer reading'), 15_000);
    const left = Number(/"left_to_redelivery":(\d+)/.exec(w1.log)?.[1] ?? 0);
    return { sent, w1, left };
  }

  // What was handed on but not queued (killed right after its intents) went to the other writer when
  // its ack_wait ran out; that writer is stopped (SIGSTOP) holding it, so it is not acknowledged yet
  // when writer 1 is back. Reading it again as well would write it twice. Writer 2 goes on as soon
  // as writer 1 has decided: stopped past its own ack_wait of what it holds, JetStream would give
  // that to writer 1 once more, and both would write it (at-least-once, not this case).
  it('leaves them to JetStream when the other writer may have them', async () => {
    const c = await testNatsCluster();
    const dir = scratchDir();
    await publish(c.urls[0]!, 0); // the stream
    const w2 = new Proc(writerConfig(dir, c, 'w2', extra));
    const signal = (s: NodeJS.Signals) => w2.child?.kill(s);
    onTestFinished(async () => {
      signal('SIGCONT');
      await w2.stop();
    });
    w2.start();
    await waitFor('writer 2 to read', () => w2.log.includes('NATS consumer reading'), 15_000);
    // Stopped once it holds nothing unacknowledged: all it has left to do is what writer 1 had.
    const settled = async () => {
      const info = await withJetStream([c.urls[0]!], (jsm) => jsm.consumers.info('LOGS', 'writers'));
      return info.num_pending === 0 && info.num_ack_pending + readLines(path.join(dir, 'w2.log')).length === 400;
    };
    const { sent, w1, left } = await killedAndBackLate(
      dir,
      c,
      'intend:1',
      async () => {
        await waitFor('writer 2 to hold nothing', settled, 10_000);
        signal('SIGSTOP');
      },
      async () => {
        signal('SIGCONT');
      },
    );
    expect(left, w1.log).toBeGreaterThan(0);
    expect(w1.log).toContain('past their ack_wait');
    const out = [path.join(dir, 'w1.log'), path.join(dir, 'w2.log')];
    await waitFor('every message written', () => counted(out).size >= sent.length, 20_000);
    await waitFor('every message acknowledged', async () => (await consumerPending(c.urls[0]!)) === 0, 15_000);
    const n = counted(out);
    expect(sent.filter((l) => n.get(l) !== 1)).toEqual([]);
    expect(readLines(out[1]!).length).toBeGreaterThan(0);
  }, 60_000);

  // Committed (the file may have written them) but not acknowledged: JetStream delivers them again,
  // here (the only writer), and they carry the positions they had, so the file drops them.
  it('writes once what comes back to it, with the positions it had', async () => {
    const c = await testNatsCluster();
    const dir = scratchDir();
    const { sent, w1, left } = await killedAndBackLate(dir, c, 'settle:1');
    expect(left, w1.log).toBeGreaterThan(0);
    await waitFor('every message written', () => counted([path.join(dir, 'w1.log')]).size >= sent.length, 20_000);
    await waitFor('every message acknowledged', async () => (await consumerPending(c.urls[0]!)) === 0, 15_000);
    expect(readLines(path.join(dir, 'w1.log')).sort()).toEqual([...sent].sort());
  }, 60_000);
});

/** Messages delivered to the `writers` consumer and not acknowledged; null when it does not exist. */
async function consumerPending(url: string): Promise<number | null> {
  try {
    return await withJetStream([url], async (jsm) => (await jsm.consumers.info('LOGS', 'writers')).num_ack_pending);
  } catch {
    return null;
  }
}

describe('nats source: the consumer leader killed while the writer is connected to another server', () => {
  // A pull request lives only on the consumer's leader: when that server dies, the writer's
  // connection (to a server that lives) sees nothing. The client notices from the missing idle
  // heartbeats and pulls again; the source asks for heartbeats often enough that the writer is
  // idle for seconds, not the client's default of 30 s (a test under load once saw one writer of
  // two take 75 of 200,000 lines).
  it('goes on reading within seconds, with nothing lost or repeated', async () => {
    const c = await testNatsCluster(3);
    const dir = scratchDir();
    await withJetStream(c.urls, async (jsm) => {
      await jsm.streams.add({ name: 'LOGS', subjects: ['logs.>'], num_replicas: 3 });
      await jsm.consumers.add('LOGS', { durable_name: 'writers', ack_policy: 'explicit' as never });
    });
    const leaderOf = () =>
      withJetStream(c.urls, async (jsm) => (await jsm.consumers.info('LOGS', 'writers')).cluster?.leader, 2000);
    const leader = await leaderOf();
    const li = c.nodes.findIndex((n) => n.name === leader);
    expect(li, `the consumer's leader: ${leader}`).toBeGreaterThanOrEqual(0);
    const other = c.nodes.find((_, i) => i !== li)!;
    const w1 = await testAgent(consumerYaml(dir, { urls: [other.url] }, 'w1'));
    const first = await publish(other.url, 100, 0);
    await waitFor('the first 100 written', () => readLines(path.join(dir, 'w1.log')).length === 100, 15_000);
    await sleep(300); // the writer's next pull request is at the leader
    await c.killNode(li);
    const alive = c.nodes.filter((_, i) => i !== li).map((n) => n.name);
    const streamLeader = () =>
      withJetStream(c.urls, async (jsm) => (await jsm.streams.info('LOGS')).cluster?.leader, 2000);
    await waitFor(
      'new leaders of the consumer and the stream',
      async () =>
        alive.includes((await leaderOf().catch(() => undefined)) ?? '') &&
        alive.includes((await streamLeader().catch(() => undefined)) ?? ''),
      15_000,
    );
    const second = await publish(other.url, 100, 100, 10_000);
    // Well under the client's default: two missed heartbeats of 15 s.
    await waitFor('the next 100 written', () => readLines(path.join(dir, 'w1.log')).length >= 200, 12_000);
    expect(readLines(path.join(dir, 'w1.log'))).toEqual([...first, ...second]);
    expect(w1.counters.of('js').received).toBe(200);
  }, 90_000);
});
