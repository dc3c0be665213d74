import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { portOf, readLines, scratchDir, testAgent, waitFor } from '../helpers/agent.js';
import { NatsCluster } from '../helpers/nats.js';
import { sendTcp } from '../helpers/net.js';

async function cluster(size = 1): Promise<NatsCluster> {
  const c = await NatsCluster.start(scratchDir('sluice-nats-'), size);
  onTestFinished(() => c.stop());
  return c;
}

const servers = (c: NatsCluster) => `[${c.urls.map((u) => `"${u}"`).join(', ')}]`;

function shipperYaml(dir: string, c: NatsCluster): string {
  return `state_dir: ${dir}/ship
admin: { enabled: false }
sources:
  in: { type: syslog_tcp, address: "127.0.0.1:0" }
destinations:
  js:
    type: nats
    servers: ${servers(c)}
    subject: "logs.\${PROGRAM}"
    create_stream: { name: LOGS }
    queue: { mode: reliable }
pipelines:
  p: { from: [in], to: [js] }
`;
}

function consumerYaml(dir: string, c: NatsCluster, name: string, extra = ''): string {
  return `state_dir: ${dir}/${name}
admin: { enabled: false }
sources:
  js:
    type: nats
    servers: ${servers(c)}
    stream: LOGS
    durable: writers
    ack_wait: 5s
    backoff: { initial: 50ms, max: 500ms }
${extra}
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
    const c = await cluster();
    const dir = scratchDir();
    const shipper = await testAgent(shipperYaml(dir, c));
    const writer = await testAgent(consumerYaml(dir, c, 'w1'));
    const lines = Array.from({ length: 5000 }, (_, i) => line(i));
    await sendTcp(portOf(shipper, 'in'), lines);
    await waitFor('all written', () => readLines(path.join(dir, 'w1.log')).length >= 5000, 30_000);
    await waitFor('all acknowledged', () => writer.destinations.get('out')!.queue.stats().records === 0, 10_000);
    expect(readLines(path.join(dir, 'w1.log'))).toEqual(lines);
    expect(writer.counters.of('js').received).toBe(5000);
  }, 60_000);
});
