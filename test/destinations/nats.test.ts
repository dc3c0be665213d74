import { describe, expect, it, onTestFinished } from 'vitest';
import { readDeadLetters, deadLetterFile } from '../../src/destinations/dead-letters.js';
import { memoryLogger, portOf, readLines, scratchDir, testAgent, waitFor } from '../helpers/agent.js';
import { NatsCluster } from '../helpers/nats.js';
import { sendTcp } from '../helpers/net.js';

/** Every message of `stream`, in stream order: subject, body and Nats-Msg-Id. */
async function readStream(urls: string[], stream: string) {
  const { connect } = await import('@nats-io/transport-node');
  const { jetstreamManager } = await import('@nats-io/jetstream');
  const nc = await connect({ servers: urls });
  try {
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(stream);
    const out: { subject: string; body: string; id: string | undefined; seq: number }[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const m = await jsm.streams.getMessage(stream, { seq });
      if (!m) continue;
      out.push({ subject: m.subject, body: m.string(), id: m.header?.get('Nats-Msg-Id'), seq });
    }
    return out;
  } finally {
    await nc.close();
  }
}

async function cluster(size = 1, conf = ''): Promise<NatsCluster> {
  const c = await NatsCluster.start(scratchDir('sluice-nats-'), size, conf);
  onTestFinished(() => c.stop());
  return c;
}

function agentYaml(o: { dir: string; urls: string[]; extra?: string; dest?: string; also?: string }): string {
  return `state_dir: ${o.dir}/state
admin: { enabled: false }
sources:
  in: { type: syslog_tcp, address: "127.0.0.1:0" }
destinations:
  js:
    type: nats
    servers: [${o.urls.map((u) => `"${u}"`).join(', ')}]
    subject: "logs.\${HOST}.\${PROGRAM}"
    backoff: { initial: 50ms, max: 500ms }
    queue: { mode: reliable }
${o.dest ?? '    create_stream: { name: LOGS }'}
${o.also ?? ''}
pipelines:
  p: { from: [in], to: [js${o.also ? ', copy' : ''}] }
`;
}

describe('nats destination', () => {
  it('publishes each record once, in order, with a Nats-Msg-Id and a subject of safe tokens', async () => {
    const c = await cluster();
    const dir = scratchDir();
    const agent = await testAgent(agentYaml({ dir, urls: c.urls }));
    const lines = Array.from(
      { length: 3000 },
      (_, i) => `<13>1 2026-11-30T00:00:00Z web.example.com app*x ${i} - - line ${i}`,
    );
    await sendTcp(portOf(agent, 'in'), lines);
    const d = agent.destinations.get('js')!;
    await waitFor('all delivered', () => d.stats.delivered === 3000, 20_000);
    const got = await readStream(c.urls, 'LOGS');
    expect(got.map((m) => m.body)).toEqual(lines);
    expect(new Set(got.map((m) => m.subject))).toEqual(new Set(['logs.web_example_com.app_x']));
    const ids = got.map((m) => m.id);
    expect(ids.every((id) => id !== undefined && /^[0-9a-f-]+:\d+$/.test(id))).toBe(true);
    expect(new Set(ids).size).toBe(3000);
  }, 60_000);
});
