import { existsSync, mkdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import WebSocket from 'ws';
import { describe, expect, it } from 'vitest';
import { encodeBatch, PATH, SUBPROTOCOL } from '../../src/protocol/sluice-wire.js';
import { encodeRecord } from '../../src/protocol/record-codec.js';
import { LogRecord } from '../../src/record.js';
import { portOf, readLines, scratchDir, sleep, stablePort, testAgent, waitFor } from '../helpers/agent.js';
import { makePki } from '../helpers/tls.js';
import { sendTcp } from '../helpers/net.js';
import { SourceCounters } from '../../src/stats.js';

const TOKEN = 'test-token-0123456789abcdef';
const OTHER = 'rotated-token-fedcba9876543210';

function central(dir: string, extra = '') {
  return `
state_dir: ${dir}/central
shutdown_timeout: 500ms
admin: { enabled: false }
sources:
  agents:
    type: sluice
    address: "127.0.0.1:0"
    tokens: ["${TOKEN}", "${OTHER}"]
    handshake_timeout: 500ms
    max_frame_size: 1MiB
${extra}
destinations:
  hosts: { type: file, path: "${dir}/out/\${HOST}.log", queue: { mode: reliable, max_size: 16MiB,
      sync_interval: 10ms } }
pipelines:
  p: { from: [agents], to: [hosts] }
`;
}

function agentConfig(dir: string, port: number, extra = '', token = TOKEN) {
  return `
state_dir: ${dir}/agent
shutdown_timeout: 2s
admin: { enabled: false }
sources:
  in: { type: syslog_tcp, address: "127.0.0.1:0" }
destinations:
  up:
    type: sluice
    urls: ["ws://127.0.0.1:${port}"]
    token: "${token}"
    window: 4
    batch_size: 100
    backoff: { initial: 20ms, max: 100ms }
    terminal_backoff: 500ms
    queue: { mode: reliable, max_size: 8MiB, sync_interval: 10ms }
${extra}
pipelines:
  p: { from: [in], to: [up] }
`;
}

const msg = (host: string, i: number) => `<13>1 2026-01-01T00:00:00Z ${host} app - - - message ${i}`;

describe('sluice protocol: agent to central', () => {
  let dir: string;

  it('delivers everything, in order, acknowledged, into per-host files on the central server', async () => {
    dir = scratchDir();
    const c = await testAgent(central(dir));
    const a = await testAgent(agentConfig(dir, portOf(c, 'agents')));
    const lines = [
      ...Array.from({ length: 1500 }, (_, i) => msg('web01', i)),
      ...Array.from({ length: 500 }, (_, i) => msg('db01', i)),
    ];
    await sendTcp(portOf(a, 'in'), lines);
    await waitFor(
      'all at the central',
      () => readLines(`${dir}/out/web01.log`).length === 1500 && readLines(`${dir}/out/db01.log`).length === 500,
      20_000,
    );
    expect(readLines(`${dir}/out/web01.log`)).toEqual(lines.slice(0, 1500));
    expect(readLines(`${dir}/out/db01.log`)).toEqual(lines.slice(1500));
    await waitFor('the agent queue to empty', () => a.stats().destinations.up!.queue.records === 0);
    const st = a.stats().destinations.up!;
    expect(st).toMatchObject({ sent: 2000, delivered: 2000, connected: true });
    expect(c.stats().sources.agents).toMatchObject({ received: 2000, connectionsAccepted: 1 });
  });

  it('refuses an unknown token before reading data, and the agent backs off instead of looping', async () => {
    dir = scratchDir();
    const c = await testAgent(central(dir));
    const a = await testAgent(agentConfig(dir, portOf(c, 'agents'), '', 'wrong-token-000000000000000'));
    await sendTcp(portOf(a, 'in'), [msg('h', 1)]);
    await waitFor('a refusal', () => c.stats().sources.agents!.connectionsRejected >= 1);
    await sleep(300);
    const st = a.stats().destinations.up!;
    expect(st.failures).toBe(1); // terminal_backoff (500ms) keeps it from retrying at once
    expect((st as unknown as { serverErrors: number }).serverErrors).toBe(1);
    expect(st.delivered).toBe(0);
    expect(c.stats().sources.agents!.connectionsAccepted).toBe(0);
    expect(a.stats().destinations.up!.queue.records).toBe(1);
  });

  it('a second token works (rotation), and a restart of the central server loses nothing', async () => {
    dir = scratchDir();
    const port = await stablePort(); // restarted on the same port below
    let c = await testAgent(central(dir).replace('address: "127.0.0.1:0"', `address: "127.0.0.1:${port}"`));
    const a = await testAgent(agentConfig(dir, port, '', OTHER));
    await sendTcp(
      portOf(a, 'in'),
      Array.from({ length: 300 }, (_, i) => msg('h', i)),
    );
    await waitFor('300 at the central', () => readLines(`${dir}/out/h.log`).length === 300);
    await c.stop();
    await sendTcp(
      portOf(a, 'in'),
      Array.from({ length: 300 }, (_, i) => msg('h', 300 + i)),
    );
    await sleep(200);
    c = await testAgent(central(dir).replace('address: "127.0.0.1:0"', `address: "127.0.0.1:${port}"`));
    await waitFor('600 at the central', () => readLines(`${dir}/out/h.log`).length >= 600, 20_000);
    await sleep(200);
    expect(readLines(`${dir}/out/h.log`)).toEqual(Array.from({ length: 600 }, (_, i) => msg('h', i)));
    expect(a.stats().destinations.up!.reconnects).toBeGreaterThanOrEqual(2);
  });

  it('recognises a batch sent again after a lost ack and does not queue it twice', async () => {
    dir = scratchDir();
    const c = await testAgent(central(dir));
    const url = `ws://127.0.0.1:${portOf(c, 'agents')}${PATH}`;
    const counters = new SourceCounters();
    const _stats = counters.of('in');
    const origin = { source: 'in', from: '10.0.0.1', format: 'syslog' as const, lenient: false, counters };
    const payloads = (from: number, n: number) =>
      Array.from({ length: n }, (_, i) => encodeRecord(new LogRecord(Buffer.from(msg('dup', from + i)), 0, origin)));
    const session = async (frames: Buffer[]) => {
      const ws = new WebSocket(url, [SUBPROTOCOL], { headers: { authorization: `Bearer ${TOKEN}` } });
      const got: unknown[] = [];
      ws.on('message', (d: Buffer) => got.push(JSON.parse(d.toString())));
      await new Promise((r) => ws.once('open', r));
      ws.send(JSON.stringify({ type: 'hello', versions: [1], sender: 'test-sender', compression: ['deflate'] }));
      await waitFor('welcome', () => got.length === 1);
      for (const f of frames) ws.send(f);
      await waitFor('acks', () => got.length === 1 + frames.length);
      ws.close();
      return got;
    };
    const first = await session([encodeBatch(0, payloads(0, 10), true), encodeBatch(10, payloads(10, 10), false)]);
    expect(first[0]).toMatchObject({ type: 'welcome', version: 1, resume: -1, compression: 'deflate' });
    expect(first.slice(1)).toEqual([
      { type: 'ack', seq: 9 },
      { type: 'ack', seq: 19 },
    ]);
    // Reconnect: the server says where it is, and a resent, overlapping batch is acked without queuing twice.
    const second = await session([encodeBatch(15, payloads(15, 10), false)]);
    expect(second[0]).toMatchObject({ resume: 19 });
    expect(second[1]).toEqual({ type: 'ack', seq: 24 });
    await waitFor('25 lines', () => readLines(`${dir}/out/dup.log`).length === 25);
    await sleep(100);
    expect(readLines(`${dir}/out/dup.log`)).toEqual(Array.from({ length: 25 }, (_, i) => msg('dup', i)));
    expect(c.stats().sources.agents!.dropped.duplicate).toBe(5);
  });

  it(
    'sets right a record whose receive time is not a time (NaN), counts it, and the records after it are ' + 'written',
    async () => {
      dir = scratchDir();
      const config = central(dir).replace('hosts: { type: file, path:', 'hosts: { type: file, format: rfc5424, path:');
      expect(config).toContain('format: rfc5424');
      const c = await testAgent(config);
      const url = `ws://127.0.0.1:${portOf(c, 'agents')}${PATH}`;
      const origin = {
        source: 'in',
        from: '10.0.0.1',
        format: 'syslog' as const,
        lenient: false,
        counters: new SourceCounters(),
      };
      const times = [1_767_225_600_000, Number.NaN, Number.POSITIVE_INFINITY, -5, 1e300, 1_767_225_600_000];
      // No timestamp of their own: the formatter writes the receive time.
      const payloads = times.map((t, i) =>
        encodeRecord(new LogRecord(Buffer.from(`<13>1 - bad app - - - message ${i}`), t, origin)),
      );
      const ws = new WebSocket(url, [SUBPROTOCOL], { headers: { authorization: `Bearer ${TOKEN}` } });
      const got: unknown[] = [];
      ws.on('message', (d: Buffer) => got.push(JSON.parse(d.toString())));
      await new Promise((r) => ws.once('open', r));
      ws.send(JSON.stringify({ type: 'hello', versions: [1], sender: 'nan-sender', compression: [] }));
      await waitFor('welcome', () => got.length === 1);
      ws.send(encodeBatch(0, payloads, false));
      await waitFor('the ack', () => got.length === 2);
      ws.close();
      expect(got[1]).toEqual({ type: 'ack', seq: 5 });
      await waitFor('6 lines', () => readLines(`${dir}/out/bad.log`).length === 6);
      const lines = readLines(`${dir}/out/bad.log`);
      expect(lines.map((l) => l.replace(/^.* - - - /, ''))).toEqual(times.map((_, i) => `message ${i}`));
      expect(c.stats().sources.agents!.repaired).toEqual({ invalid_time: 4 });
      expect(c.stats().destinations.hosts!.failures).toBe(0);
    },
  );

  it('closes misbehaving clients with a reason, and keeps serving good ones', async () => {
    dir = scratchDir();
    const c = await testAgent(central(dir));
    const port = portOf(c, 'agents');
    const url = `ws://127.0.0.1:${port}${PATH}`;
    const open = async (hello = true) => {
      const ws = new WebSocket(url, [SUBPROTOCOL], { headers: { authorization: `Bearer ${TOKEN}` } });
      const msgs: { type: string; code?: string }[] = [];
      let closeCode = 0;
      ws.on('message', (d: Buffer) => msgs.push(JSON.parse(d.toString()) as { type: string }));
      ws.on('close', (code) => (closeCode = code));
      ws.on('error', () => undefined);
      await new Promise((r) => ws.once('open', r));
      if (hello) {
        ws.send(JSON.stringify({ type: 'hello', versions: [1], sender: `s-${Math.random()}`, compression: [] }));
        await waitFor('welcome', () => msgs.length === 1);
      }
      return { ws, msgs, closed: () => closeCode };
    };
    // Garbage binary frame.
    let x = await open();
    x.ws.send(Buffer.from('this is not a batch at all, not even close'));
    await waitFor('closed 4000', () => x.closed() === 4000);
    expect(x.msgs.at(-1)).toMatchObject({ type: 'error', code: 'bad_frame', retryable: false });
    // An ack from a client.
    x = await open();
    x.ws.send(JSON.stringify({ type: 'ack', seq: 5 }));
    await waitFor('closed 4003', () => x.closed() === 4003);
    // A batch before hello.
    x = await open(false);
    x.ws.send(encodeBatch(0, [Buffer.from('x')], false));
    await waitFor('closed 4003', () => x.closed() === 4003);
    // No hello in time.
    x = await open(false);
    await waitFor('closed 4004', () => x.closed() === 4004, 5000);
    // An oversized frame (over max_frame_size).
    x = await open();
    x.ws.send(Buffer.alloc(2 << 20, 1));
    await waitFor('closed 1009 or 4002', () => x.closed() === 1009 || x.closed() === 4002, 5000);
    // A slowloris upgrade: headers trickle and never finish.
    const slow = net.connect(port, '127.0.0.1');
    let slowClosed = false;
    slow.on('close', () => (slowClosed = true));
    slow.on('error', () => undefined);
    slow.write(`GET ${PATH} HTTP/1.1\r\nHost: x\r\n`);
    const drip = setInterval(() => slow.write('X-Slow: 1\r\n'), 100);
    try {
      await waitFor('the slow upgrade to be cut off', () => slowClosed, 10_000);
    } finally {
      clearInterval(drip);
    }
    // A wrong path and a missing subprotocol are refused with HTTP errors.
    const refused = await new Promise<number>((resolve) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/elsewhere`, [SUBPROTOCOL], {
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      ws.on('unexpected-response', (_q, res) => resolve(res.statusCode ?? 0));
      ws.on('error', () => undefined);
    });
    expect(refused).toBe(404);
    // The server is still fine.
    const a = await testAgent(agentConfig(dir, port));
    await sendTcp(portOf(a, 'in'), [msg('ok', 1)]);
    await waitFor('a good agent still gets through', () => readLines(`${dir}/out/ok.log`).length === 1);
    expect(c.stats().sources.agents!.connectionErrors).toBeGreaterThanOrEqual(4);
  }, 30_000);

  it('works over TLS with a CA and a client certificate (wss), and refuses plain ws:// on that port', async () => {
    dir = scratchDir();
    mkdirSync(path.join(dir, 'pki'));
    const pki = makePki(path.join(dir, 'pki'));
    const c = await testAgent(
      central(dir).replace(
        '    handshake_timeout: 500ms',
        `    handshake_timeout: 2s\n    tls: { cert: ${pki.serverCert}, key: ${pki.serverKey}, client_ca: ${pki.ca} }`,
      ),
    );
    const a = await testAgent(
      agentConfig(dir, portOf(c, 'agents'))
        .replace(`urls: ["ws://`, `urls: ["wss://`)
        .replace(
          '    window: 4',
          `    window: 4\n    tls: { ca: ${pki.ca}, cert: ${pki.clientCert}, key: ${pki.clientKey}, server_name: ` +
            `localhost }`,
        ),
    );
    await sendTcp(
      portOf(a, 'in'),
      Array.from({ length: 50 }, (_, i) => msg('tls', i)),
    );
    await waitFor('50 over wss', () => readLines(`${dir}/out/tls.log`).length === 50, 20_000);
    // The same central refuses an agent that speaks plain ws:// to it: nothing arrives from it, and
    // its sender counts the failures (records stay queued there).
    const plain = await testAgent(agentConfig(dir, portOf(c, 'agents')).replace(`${dir}/agent`, `${dir}/plain`));
    await sendTcp(portOf(plain, 'in'), [msg('plain', 0)]);
    await waitFor('the plain agent to fail', () => (plain.stats().destinations.up?.failures ?? 0) >= 2, 20_000);
    expect(plain.stats().destinations.up?.delivered).toBe(0);
    expect(plain.stats().destinations.up?.queue.records).toBe(1);
    expect(existsSync(`${dir}/out/plain.log`)).toBe(false);
  });

  it('fails over to the next URL when the first is down', async () => {
    dir = scratchDir();
    const c = await testAgent(central(dir));
    const dead = await new Promise<number>((resolve) => {
      const srv = net.createServer();
      srv.listen(0, '127.0.0.1', () => {
        const p = (srv.address() as net.AddressInfo).port;
        srv.close(() => resolve(p));
      });
    });
    const a = await testAgent(
      agentConfig(dir, portOf(c, 'agents')).replace(
        /urls: \["ws:\/\/127\.0\.0\.1:(\d+)"\]/,
        `urls: ["ws://127.0.0.1:${dead}", "ws://127.0.0.1:$1"]`,
      ),
    );
    await sendTcp(
      portOf(a, 'in'),
      Array.from({ length: 100 }, (_, i) => msg('fo', i)),
    );
    await waitFor('100 through the second URL', () => readLines(`${dir}/out/fo.log`).length === 100, 20_000);
    const st = a.stats().destinations.up!;
    expect(st.failures).toBeGreaterThanOrEqual(1); // the dead one was tried
    expect(st.reconnects).toBeGreaterThanOrEqual(1);
  });
});
