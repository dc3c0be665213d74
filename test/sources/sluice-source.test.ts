import { WebSocket } from 'ws';
import { describe, expect, it, onTestFinished } from 'vitest';
import { encodeRecord } from '../../src/protocol/record-codec.js';
import { encodeBatch, PATH, SUBPROTOCOL } from '../../src/protocol/sluice-wire.js';
import { LogRecord } from '../../src/record.js';
import { SluiceSource } from '../../src/sources/sluice/index.js';
import { sourceIntoQueue } from '../helpers/pipeline.js';
import { scratchDir, waitFor } from '../helpers/agent.js';
import { testOrigin } from '../helpers/records.js';

const TOKEN = 'component-test-token-0123456789';

/** A sluice source feeding one reliable queue (sync: always) on a disk whose fsyncs can be made to fail. */
async function setup() {
  const dir = scratchDir();
  const { config, queue, disk, ctx, stats } = await sourceIntoQueue(
    dir,
    'agents',
    `{ type: sluice, address: "127.0.0.1:0", tokens: ["${TOKEN}"] }`,
  );
  const source = new SluiceSource(config as never, ctx);
  await source.start();
  onTestFinished(() => source.stop());
  return { source, queue, disk, stats };
}

/** A raw agent: its frames from the server, as they come, and a way to wait for the n-th. */
async function agentSession(port: number) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}${PATH}`, [SUBPROTOCOL], {
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  const got: Record<string, unknown>[] = [];
  let closed: number | null = null;
  ws.on('message', (d: Buffer) => got.push(JSON.parse(d.toString())));
  ws.on('close', (code) => (closed = code));
  await new Promise((r) => ws.once('open', r));
  onTestFinished(() => ws.terminate());
  return {
    ws,
    got,
    closed: () => closed,
    hello: () => ws.send(JSON.stringify({ type: 'hello', versions: [1], sender: 'h/a/ring', compression: [] })),
    frame: (n: number) => waitFor(`frame ${n}`, () => got.length >= n).then(() => got[n - 1]!),
  };
}

const payloads = (from: number, n: number) =>
  Array.from({ length: n }, (_, i) => encodeRecord(new LogRecord(Buffer.from(`<13>rec ${from + i}`), 0, testOrigin())));

describe('SluiceSource', () => {
  it('acknowledges a batch once committed; a batch whose commit fails is refused (retry_later) and taken when resent', async () => {
    const { source, queue, disk, stats } = await setup();
    const a = await agentSession(source.port);
    a.hello();
    expect(await a.frame(1)).toMatchObject({ type: 'welcome', resume: -1, window: 32 });
    a.ws.send(encodeBatch(0, payloads(0, 10), false));
    expect(await a.frame(2)).toEqual({ type: 'ack', seq: 9 });
    disk.failSyncs = 'EIO';
    a.ws.send(encodeBatch(10, payloads(10, 10), false));
    expect(await a.frame(3)).toMatchObject({ type: 'error', code: 'retry_later', retryable: true });
    await waitFor('the close', () => a.closed() !== null);
    disk.failSyncs = null;
    // The agent comes back: the server's mark says 9, so it sends 10.. again, and they are taken.
    const b = await agentSession(source.port);
    b.hello();
    expect(await b.frame(1)).toMatchObject({ type: 'welcome', resume: 9 });
    b.ws.send(encodeBatch(10, payloads(10, 10), false));
    expect(await b.frame(2)).toEqual({ type: 'ack', seq: 19 });
    await waitFor('20 queued', () => queue.stats().records === 20);
    const raws = queue.take(100).map((r) => r.raw.toString());
    expect(raws).toEqual(Array.from({ length: 20 }, (_, i) => `<13>rec ${i}`));
    expect(stats.received).toBe(30); // the refused batch was received, then received again
    expect(stats.dropped).toEqual({});
  });

  it('closes a connection that breaks the protocol with an error frame saying why, and keeps serving others', async () => {
    const { source, stats } = await setup();
    const good = await agentSession(source.port);
    good.hello();
    await good.frame(1);
    const cases: [(s: Awaited<ReturnType<typeof agentSession>>) => void, RegExp][] = [
      [(s) => s.ws.send(encodeBatch(0, payloads(0, 1), false)), /a batch before hello/],
      [
        (s) => {
          s.hello();
          s.hello();
        },
        /a second hello/,
      ],
      [(s) => s.ws.send(JSON.stringify({ type: 'ack', seq: 1 })), /does not send ack frames/],
      [(s) => s.ws.send(Buffer.from('not a batch at all, not even its header')), /./],
    ];
    for (const [act, reason] of cases) {
      const bad = await agentSession(source.port);
      act(bad);
      const err =
        bad.got.find((f) => f.type === 'error') ??
        (await waitFor('an error frame', () => bad.got.some((f) => f.type === 'error')).then(() =>
          bad.got.find((f) => f.type === 'error'),
        ));
      expect(err).toMatchObject({ type: 'error', retryable: false });
      expect(String(err!.message)).toMatch(reason);
      await waitFor('the close', () => bad.closed() !== null);
    }
    expect(stats.connectionErrors).toBe(cases.length);
    good.ws.send(encodeBatch(0, payloads(0, 3), false));
    expect(await good.frame(2)).toEqual({ type: 'ack', seq: 2 });
  });
});
