import type { AddressInfo } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { type WebSocket, WebSocketServer } from 'ws';
import { sluiceDestinationSchema } from '../../src/destinations/sluice/config.js';
import { SluiceDestination } from '../../src/destinations/sluice/index.js';
import { silentLogger } from '../../src/log.js';
import { decodeBatch, PROTOCOL_VERSION } from '../../src/protocol/sluice-wire.js';
import { RecordDecoder } from '../../src/protocol/record-codec.js';
import { ReliableQueue } from '../../src/queue/disk/reliable-queue.js';
import { MemoryQueue } from '../../src/queue/memory-queue.js';
import type { DestinationQueue } from '../../src/queue/types.js';
import { LogRecord } from '../../src/record.js';
import { SourceCounters } from '../../src/stats.js';
import { scratchDir, waitFor } from '../helpers/agent.js';
import { testOrigin, testQueueOptions } from '../helpers/records.js';

/**
 * A scripted central server: it welcomes with `window` and `resume`, records every batch (first
 * sequence and records), and acknowledges as `ackFor` says (a sequence to ack, or null for none).
 */
async function server(options: {
  window: number;
  resume?: () => number;
  ackFor?: (firstSeq: number, lastSeq: number, nth: number) => number | null;
}) {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise((r) => wss.once('listening', r));
  const batches: { session: number; firstSeq: number; raws: string[] }[] = [];
  let sessions = 0;
  const decoder = new RecordDecoder(new SourceCounters());
  wss.on('connection', (ws: WebSocket) => {
    const session = ++sessions;
    let nth = 0;
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary) {
        ws.send(
          JSON.stringify({
            type: 'welcome',
            version: PROTOCOL_VERSION,
            resume: options.resume?.() ?? -1,
            compression: 'none',
            window: options.window,
            maxFrameBytes: 1 << 20,
          }),
        );
        return;
      }
      const b = decodeBatch(data, 1 << 20);
      const raws = b.payloads.map((p) => decoder.decode(p).raw.toString());
      batches.push({ session, firstSeq: b.firstSeq, raws });
      const last = b.firstSeq + raws.length - 1;
      const ack = options.ackFor ? options.ackFor(b.firstSeq, last, ++nth) : last;
      if (ack !== null) ws.send(JSON.stringify({ type: 'ack', seq: ack }));
    });
  });
  onTestFinished(() => new Promise<void>((r) => wss.close(() => r())));
  return { port: (wss.address() as AddressInfo).port, batches, sessions: () => sessions, wss };
}

function destination(
  port: number,
  extra: Record<string, unknown> = {},
  queue: DestinationQueue = new MemoryQueue('d', { maxRecords: 10_000, maxBytes: 1 << 30, full: 'block' }),
) {
  const config = sluiceDestinationSchema.parse({
    type: 'sluice',
    urls: [`ws://127.0.0.1:${port}`],
    token: 'component-test-token-0123456789',
    batch_size: 10,
    backoff: { initial: '10ms', max: '20ms' },
    ...extra,
  });
  const d = new SluiceDestination(config, { name: 'd', queue, logger: silentLogger(), hostname: 'agent' });
  onTestFinished(async () => {
    await d.stop(100);
  });
  return { d, queue };
}

const push = (q: DestinationQueue, from: number, n: number) =>
  q.push(Array.from({ length: n }, (_, i) => new LogRecord(Buffer.from(`<13>r ${from + i}`), 0, testOrigin())));

describe('SluiceDestination', () => {
  it('keeps at most the welcome window of batches in flight, and frees records as cumulative acks arrive', async () => {
    // The server acknowledges nothing by itself: the test sends the acks.
    const srv = await server({ window: 3, ackFor: () => null });
    const { d, queue } = destination(srv.port);
    push(queue, 0, 100);
    d.start();
    await waitFor('three batches sent', () => srv.batches.length === 3);
    await new Promise((r) => setTimeout(r, 50));
    expect(srv.batches.length).toBe(3); // the window is full: nothing more until an ack
    expect(d.stats.delivered).toBe(0);
    // One cumulative ack for the first two batches frees 20 records and room for two more.
    const ws = [...srv.wss.clients][0]!;
    ws.send(JSON.stringify({ type: 'ack', seq: 19 }));
    await waitFor('two more batches', () => srv.batches.length === 5);
    expect(d.stats.delivered).toBe(20);
    expect(queue.stats().records).toBe(80);
    expect(srv.batches.map((b) => b.firstSeq)).toEqual([0, 10, 20, 30, 40]);
  });

  it('an ack that matches no batch in flight ends the session; everything unacknowledged is sent again, counted', async () => {
    let broken: 'not yet' | 'now' | 'done' = 'not yet';
    const srv = await server({
      window: 4,
      ackFor: (_f, last) => {
        if (broken === 'not yet' && last === 29) {
          broken = 'now';
          return 25; // inside a batch: a broken server, which then acknowledges nothing more
        }
        if (broken === 'now') return null;
        return last;
      },
    });
    srv.wss.on('connection', () => {
      if (broken === 'now') broken = 'done';
    });
    const { d, queue } = destination(srv.port);
    push(queue, 0, 50);
    d.start();
    await waitFor('all delivered', () => d.stats.delivered === 50);
    expect(srv.sessions()).toBe(2);
    const of = (session: number) => srv.batches.filter((b) => b.session === session).flatMap((b) => b.raws);
    const rec = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => `<13>r ${from + i}`);
    // The first session had 0..19 acknowledged; everything after, sent or not, comes in the second, in order.
    expect(of(1).slice(0, 20)).toEqual(rec(0, 20));
    expect(of(2)).toEqual(rec(20, 50));
    // Those the first session had sent unacknowledged are counted as replayed.
    expect(of(1).length).toBeGreaterThan(20);
    expect(d.stats.replayed).toBe(of(1).length - 20);
    expect(d.stats.failures).toBe(1);
  });

  it("from a durable queue, frees records at or below the server's resume mark without sending them", async () => {
    const srv = await server({ window: 4, resume: () => 14 });
    const queue = await ReliableQueue.open('d', scratchDir(), testQueueOptions());
    onTestFinished(() => queue.dispose());
    const { d } = destination(srv.port, {}, queue);
    await push(queue, 0, 30);
    d.start();
    await waitFor('all freed', () => queue.stats().records === 0);
    // The queue's sequence numbers start at 0: 0..14 are freed unsent.
    expect(srv.batches.flatMap((b) => b.raws)).toEqual(Array.from({ length: 15 }, (_, i) => `<13>r ${15 + i}`));
    expect(d.stats.delivered).toBe(30);
    expect(d.stats.sent).toBe(15);
  });
});
