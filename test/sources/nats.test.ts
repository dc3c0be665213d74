import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { portOf, readLines, scratchDir, sleep, testAgent, waitFor } from '../helpers/agent.js';
import { type NatsCluster, NatsProxy, natsAgentYaml, testNatsCluster, withJetStream } from '../helpers/nats.js';
import { sendTcp } from '../helpers/net.js';

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

/** Publishes `n` numbered syslog lines to the LOGS stream (made here, R1) and waits for their PubAcks. */
async function publish(url: string, n: number): Promise<string[]> {
  const { jetstream } = await import('@nats-io/jetstream');
  return withJetStream([url], async (jsm, nc) => {
    await jsm.streams.add({ name: 'LOGS', subjects: ['logs.>'] }).catch(() => undefined);
    const js = jetstream(nc);
    const lines = Array.from({ length: n }, (_, i) => line(i));
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

/** Messages delivered to the `writers` consumer and not acknowledged; null when it does not exist. */
async function consumerPending(url: string): Promise<number | null> {
  try {
    return await withJetStream([url], async (jsm) => (await jsm.consumers.info('LOGS', 'writers')).num_ack_pending);
  } catch {
    return null;
  }
}
