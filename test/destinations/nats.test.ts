import { writeFileSync } from 'node:fs';
import { describe, expect, it, onTestFinished } from 'vitest';
import { defaultStreamSubjects, natsMsgId } from '../../src/destinations/nats/index.js';
import { subjectToken } from '../../src/net/nats.js';
import { LogRecord } from '../../src/record.js';
import { RecordTemplate } from '../../src/template/path-template.js';
import { testOrigin } from '../helpers/records.js';
import { makePki } from '../helpers/tls.js';
import { readDeadLetters, deadLetterFile } from '../../src/destinations/dead-letters.js';
import { memoryLogger, portOf, readLines, scratchDir, testAgent, waitFor } from '../helpers/agent.js';
import {
  jwtAccounts,
  type NatsCluster,
  NatsProxy,
  natsAgentYaml,
  testNatsCluster,
  withJetStream,
} from '../helpers/nats.js';
import { sendTcp } from '../helpers/net.js';

/** Every message of `stream`, in stream order: subject, body and Nats-Msg-Id. */
function readStream(urls: string[], stream: string) {
  return withJetStream(urls, async (jsm) => {
    const info = await jsm.streams.info(stream);
    const out: { subject: string; body: string; id: string | undefined; seq: number }[] = [];
    for (let seq = Math.max(1, info.state.first_seq); info.state.messages > 0 && seq <= info.state.last_seq; seq++) {
      const m = await jsm.streams.getMessage(stream, { seq });
      if (!m) continue;
      out.push({ subject: m.subject, body: m.string(), id: m.header?.get('Nats-Msg-Id') || undefined, seq });
    }
    return out;
  });
}

describe('nats destination', () => {
  it('publishes each record once, in order, with a Nats-Msg-Id and a subject of safe tokens', async () => {
    const c = await testNatsCluster();
    const dir = scratchDir();
    const agent = await testAgent(natsAgentYaml({ dir, urls: c.urls }));
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

  it('with msg_id: false, publishes without a Nats-Msg-Id', async () => {
    const c = await testNatsCluster();
    const dir = scratchDir();
    const agent = await testAgent(
      natsAgentYaml({ dir, urls: c.urls, dest: '    create_stream: { name: LOGS }\n    msg_id: false' }),
    );
    await sendTcp(portOf(agent, 'in'), ['<13>1 2026-11-30T00:00:00Z h app - - - one']);
    await waitFor('delivered', () => agent.destinations.get('js')!.stats.delivered === 1, 10_000);
    expect((await readStream(c.urls, 'LOGS')).map((m) => m.id)).toEqual([undefined]);
  }, 30_000);

  /** 50 numbered lines into the agent; the file destination beside the nats one must get every one. */
  async function sendAndCheckTheOtherDestination(agent: Awaited<ReturnType<typeof testAgent>>, dir: string) {
    const lines = Array.from({ length: 50 }, (_, i) => `<13>1 2026-11-30T00:00:00Z h app - - - n=${i}`);
    await sendTcp(portOf(agent, 'in'), lines);
    await waitFor('the file destination to get them', () => readLines(`${dir}/copy.log`).length === 50, 10_000);
    return lines;
  }

  const withCopy = (dir: string) => `  copy: { type: file, path: "${dir}/copy.log" }`;

  it('with a bad credential: retries, says why, keeps the records; the other destination goes on', async () => {
    const c = await testNatsCluster(1, 'authorization { token: "the-right-token-0123456789" }');
    const dir = scratchDir();
    const { logger, lines: log } = memoryLogger();
    const agent = await testAgent(
      natsAgentYaml({ dir, urls: c.urls, dest: '    token: "a-wrong-token-0123456789"', also: withCopy(dir) }),
      logger,
    );
    await sendAndCheckTheOtherDestination(agent, dir);
    const d = agent.destinations.get('js')!;
    await waitFor('three failed attempts', () => d.stats.failures >= 3, 10_000);
    expect(d.stats.connected).toBe(false);
    expect(d.stats.delivered).toBe(0);
    expect(d.queue.stats().records).toBe(50);
    expect(
      log.some(
        (l) =>
          l.msg === 'NATS delivery failed; records stay queued and will be published again' &&
          /authorization/i.test(String(l.reason)),
      ),
    ).toBe(true);
  }, 30_000);

  it('when no stream captures the subject: names it, retries, keeps the records; the other destination goes on', async () => {
    const c = await testNatsCluster();
    const dir = scratchDir();
    const { logger, lines: log } = memoryLogger();
    const agent = await testAgent(natsAgentYaml({ dir, urls: c.urls, dest: '', also: withCopy(dir) }), logger);
    await sendAndCheckTheOtherDestination(agent, dir);
    const d = agent.destinations.get('js')!;
    await waitFor('two failed attempts', () => d.stats.failures >= 2, 10_000);
    expect(d.queue.stats().records).toBe(50);
    expect(log.some((l) => String(l.reason).includes('no JetStream stream captures the subject logs.x.x'))).toBe(true);
  }, 30_000);

  it('sets aside a record larger than max_payload, in its turn, and publishes the others in order', async () => {
    const c = await testNatsCluster(1, 'max_payload: 2048');
    const dir = scratchDir();
    const agent = await testAgent(natsAgentYaml({ dir, urls: c.urls }));
    const small = (i: number) => `<13>1 2026-11-30T00:00:00Z h app - - - n=${i}`;
    const lines = [
      ...Array.from({ length: 10 }, (_, i) => small(i)),
      `<13>1 2026-11-30T00:00:00Z h app - - - big ${'x'.repeat(3000)}`,
      ...Array.from({ length: 10 }, (_, i) => small(10 + i)),
    ];
    await sendTcp(portOf(agent, 'in'), lines);
    const d = agent.destinations.get('js')!;
    await waitFor('all handled', () => d.stats.delivered + (d.stats.deadLettered.too_large ?? 0) === 21, 10_000);
    expect(d.queue.stats().records).toBe(0);
    expect(d.stats.deadLettered).toEqual({ too_large: 1 });
    expect(d.stats.delivered).toBe(20);
    expect((await readStream(c.urls, 'LOGS')).map((m) => m.body)).toEqual(lines.filter((l) => !l.includes('big')));
    const { letters } = await readDeadLetters(deadLetterFile(`${dir}/state`, 'js'));
    expect(letters.map((l) => l.reason)).toEqual(['too_large']);
    expect(letters[0]!.error).toMatch(/max_payload \(2048\)/);
  }, 30_000);

  it('while the cluster is unreachable: counts the attempts, keeps the records, delivers once it is back', async () => {
    const c = await testNatsCluster();
    await c.killNode(0);
    const dir = scratchDir();
    const agent = await testAgent(natsAgentYaml({ dir, urls: c.urls, also: withCopy(dir) }));
    const lines = await sendAndCheckTheOtherDestination(agent, dir);
    const d = agent.destinations.get('js')!;
    await waitFor('three failed attempts', () => d.stats.failures >= 3 && d.stats.reconnectAttempts >= 3, 10_000);
    expect(d.queue.stats().records).toBe(50);
    await c.startNode(0);
    await waitFor('all delivered', () => d.stats.delivered === 50, 15_000);
    expect((await readStream(c.urls, 'LOGS')).map((m) => m.body)).toEqual(lines);
  }, 40_000);

  it('sets aside a record whose own subject no stream captures; the others go on', async () => {
    const c = await testNatsCluster();
    await withJetStream(c.urls, (jsm) => jsm.streams.add({ name: 'LOGS', subjects: ['logs.x.>', 'logs.h.good'] }));
    const dir = scratchDir();
    const agent = await testAgent(natsAgentYaml({ dir, urls: c.urls, dest: '' }));
    const lines = ['good', 'bad', 'good'].map((app, i) => `<13>1 2026-11-30T00:00:00Z h ${app} - - - n=${i}`);
    await sendTcp(portOf(agent, 'in'), lines);
    const d = agent.destinations.get('js')!;
    await waitFor('all handled', () => d.stats.delivered + (d.stats.deadLettered.no_stream ?? 0) === 3, 10_000);
    expect(d.stats.deadLettered).toEqual({ no_stream: 1 });
    expect((await readStream(c.urls, 'LOGS')).map((m) => m.body)).toEqual([lines[0], lines[2]]);
    const { letters } = await readDeadLetters(deadLetterFile(`${dir}/state`, 'js'));
    expect(letters[0]!.error).toBe('no JetStream stream captures the subject logs.h.bad');
  }, 30_000);
});

describe('nats destination: publishes made again carry the same Nats-Msg-Id', () => {
  /**
   * The agent publishes 300 records through a proxy that loses the server's PubAcks: the stream
   * stores them, the agent does not know it.
   */
  async function storedButUnacknowledged(c: NatsCluster, dir: string, ackTimeout: string) {
    const proxy = await NatsProxy.start(c.nodes[0]!.port);
    onTestFinished(() => proxy.close());
    const agent = await testAgent(
      natsAgentYaml({
        dir,
        urls: [proxy.url],
        dest: `    create_stream: { name: LOGS }\n    ack_timeout: ${ackTimeout}`,
      }),
    );
    const d = agent.destinations.get('js')!;
    // One record first: the connection knows the stream captures the subject.
    const lines = Array.from({ length: 301 }, (_, i) => `<13>1 2026-11-30T00:00:00Z h app - - - n=${i}`);
    await sendTcp(portOf(agent, 'in'), lines.slice(0, 1));
    await waitFor('the first delivered', () => d.stats.delivered === 1, 10_000);
    proxy.cut('to-client');
    await sendTcp(portOf(agent, 'in'), lines.slice(1));
    await waitFor('the stream to store them', async () => (await readStream(c.urls, 'LOGS')).length === 301, 10_000);
    expect(d.stats.delivered).toBe(1);
    return { agent, d, lines };
  }

  it('after a lost PubAck (ack_timeout): the stream drops the publishes made again', async () => {
    const c = await testNatsCluster();
    const dir = scratchDir();
    const { d, lines } = await storedButUnacknowledged(c, dir, '1s');
    // The proxy still loses PubAcks on the old connection; the next one (through it) passes.
    await waitFor('all delivered', () => d.stats.delivered === 301, 15_000);
    expect(d.stats.replayed).toBe(300);
    expect((await readStream(c.urls, 'LOGS')).map((m) => m.body)).toEqual(lines);
  }, 30_000);

  it('after a restart of the agent (the reliable queue keeps its ids): the stream drops them too', async () => {
    const c = await testNatsCluster();
    const dir = scratchDir();
    const { agent, lines } = await storedButUnacknowledged(c, dir, '60s');
    await agent.stop(); // the 300 stay queued: no PubAck came
    const again = await testAgent(natsAgentYaml({ dir, urls: c.urls }));
    const d = again.destinations.get('js')!;
    await waitFor('all delivered', () => d.stats.delivered === 300, 15_000);
    expect(d.queue.stats().records).toBe(0);
    expect((await readStream(c.urls, 'LOGS')).map((m) => m.body)).toEqual(lines);
  }, 30_000);
});

describe('nats destination credentials', () => {
  it('authenticates with user and password, and with an NKey seed file', async () => {
    const { nkeys } = await import('@nats-io/transport-node');
    const user = nkeys.createUser();
    const seedDir = scratchDir();
    const seedFile = `${seedDir}/agent.nk`;
    writeFileSync(seedFile, `${new TextDecoder().decode(user.getSeed())}\n`);
    const c = await testNatsCluster(
      1,
      `authorization { users: [ { user: "ship", password: "pw-0123456789abcdef" }, { nkey: "${user.getPublicKey()}" } ] }`,
    );
    for (const auth of ['    user: ship\n    password: pw-0123456789abcdef', `    nkey_seed_file: ${seedFile}`]) {
      const dir = scratchDir();
      const agent = await testAgent(
        natsAgentYaml({ dir, urls: c.urls, dest: `    create_stream: { name: LOGS }\n${auth}` }),
      );
      await sendTcp(portOf(agent, 'in'), ['<13>1 2026-11-30T00:00:00Z h app - - - one']);
      await waitFor(
        `delivered with ${auth.trim().split(':')[0]}`,
        () => agent.destinations.get('js')!.stats.delivered === 1,
        10_000,
      );
      await agent.stop();
    }
  }, 30_000);
});

describe('nats credentials: a creds file (decentralised JWT authentication)', () => {
  it('publishes with the creds file, a writer reads with it, and without it the server refuses', async () => {
    const { conf, creds } = await jwtAccounts();
    const c = await testNatsCluster(1, conf);
    const dir = scratchDir();
    const credsFile = `${dir}/agent.creds`;
    writeFileSync(credsFile, creds, { mode: 0o600 });
    const agent = await testAgent(
      natsAgentYaml({
        dir: `${dir}/a`,
        urls: c.urls,
        dest: `    create_stream: { name: LOGS }\n    creds_file: ${credsFile}`,
      }),
    );
    const lines = Array.from({ length: 50 }, (_, i) => `<13>1 2026-11-30T00:00:00Z h app - - - n=${i}`);
    await sendTcp(portOf(agent, 'in'), lines);
    await waitFor('delivered with the creds file', () => agent.destinations.get('js')!.stats.delivered === 50, 15_000);
    const writer = await testAgent(`state_dir: ${dir}/w
admin: { enabled: false }
sources:
  js: { type: nats, servers: ["${c.urls[0]}"], stream: LOGS, durable: w, creds_file: ${credsFile} }
destinations:
  out: { type: file, path: ${dir}/out.log, format: raw }
pipelines:
  p: { from: [js], to: [out] }
`);
    await waitFor('read with the creds file', () => readLines(`${dir}/out.log`).length === 50, 15_000);
    expect(readLines(`${dir}/out.log`)).toEqual(lines);
    expect(writer.counters.of('js').connectionErrors).toBe(0);
    // Without credentials, the same server refuses: the failure is counted and names the reason.
    const { logger, lines: log } = memoryLogger();
    const refused = await testAgent(natsAgentYaml({ dir: `${dir}/b`, urls: c.urls }), logger);
    const d = refused.destinations.get('js')!;
    await waitFor('two failed attempts', () => d.stats.failures >= 2, 10_000);
    expect(d.stats.delivered).toBe(0);
    expect(log.some((l) => /authorization violation/i.test(String(l.reason)))).toBe(true);
  }, 60_000);
});

describe('nats destination over TLS', () => {
  it('publishes to a server that requires a client certificate, and is refused without one', async () => {
    const pkiDir = scratchDir();
    const pki = makePki(pkiDir);
    const c = await testNatsCluster(
      1,
      `tls { cert_file: "${pki.serverCert}", key_file: "${pki.serverKey}", ca_file: "${pki.ca}", verify: true }`,
    );
    const url = c.urls[0]!.replace('nats://', 'tls://');
    const dir = scratchDir();
    const agent = await testAgent(
      natsAgentYaml({
        dir,
        urls: [url],
        dest: `    create_stream: { name: LOGS }\n    tls: { ca: "${pki.ca}", cert: "${pki.clientCert}", key: "${pki.clientKey}" }`,
      }),
    );
    const lines = Array.from({ length: 100 }, (_, i) => `<13>1 2026-11-30T00:00:00Z h app - - - n=${i}`);
    await sendTcp(portOf(agent, 'in'), lines);
    await waitFor('all delivered', () => agent.destinations.get('js')!.stats.delivered === 100, 15_000);
    const dir2 = scratchDir();
    const { logger, lines: log } = memoryLogger();
    const refused = await testAgent(
      natsAgentYaml({ dir: dir2, urls: [url], dest: `    tls: { ca: "${pki.ca}" }` }),
      logger,
    );
    const d = refused.destinations.get('js')!;
    await waitFor('two failed attempts', () => d.stats.failures >= 2, 10_000);
    expect(d.stats.connected).toBe(false);
    expect(log.some((l) => l.msg === 'NATS delivery failed; records stay queued and will be published again')).toBe(
      true,
    );
  }, 60_000);
});

describe('nats destination parts', () => {
  it('makes every macro value one subject token', () => {
    expect(subjectToken('web.example.com')).toBe('web_example_com');
    expect(subjectToken('a*b>c d\te\u0001')).toBe('a_b_c_d_e_');
    expect(subjectToken('')).toBe('_');
  });

  it('publishes under the record stream position, else the reliable queue id and sequence, else none', () => {
    const r = new LogRecord(Buffer.from('x'), 0, testOrigin());
    expect(natsMsgId(r, undefined)).toBeUndefined();
    r.queueSeq = 7;
    expect(natsMsgId(r, 'ring-1')).toBe('ring-1:7');
    r.setStream('file:dev:ino', 1234);
    expect(natsMsgId(r, 'ring-1')).toBe('file:dev:ino:1234');
  });

  it('gives a stream made by create_stream the subject template head', () => {
    expect(defaultStreamSubjects(new RecordTemplate('logs.${HOST}.${PROGRAM}', subjectToken))).toEqual(['logs.>']);
    expect(defaultStreamSubjects(new RecordTemplate('a.b.c', subjectToken))).toEqual(['a.b.c']);
    expect(() => defaultStreamSubjects(new RecordTemplate('${HOST}.x', subjectToken))).toThrow(/starts with a macro/);
  });
});
