import dgram from 'node:dgram';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { Agent } from '../../src/agent.js';
import { encodeBatch } from '../../src/destinations/syslog/index.js';
import { SyslogFrameDecoder } from '../../src/framing/syslog-frame-decoder.js';
import { parseSyslog } from '../../src/parser/syslog.js';
import { portOf, removeDir, sleep, startAgent, tempDir, waitFor } from '../helpers/agent.js';

/** A TCP receiver that decodes what it gets with our own (separately tested) frame decoder. */
class Receiver {
  frames: string[] = [];
  connections = 0;
  private server: net.Server;
  private sockets = new Set<net.Socket>();
  constructor() {
    this.server = net.createServer((s) => {
      this.connections++;
      this.sockets.add(s);
      const d = new SyslogFrameDecoder({ maxMessageSize: 1 << 20, oversize: 'truncate' });
      s.on('data', (c: Buffer) => {
        const out: Buffer[] = [];
        d.push(c, out);
        for (const f of out) this.frames.push(f.toString());
      });
      s.on('close', () => this.sockets.delete(s));
      s.on('error', () => undefined);
    });
  }
  listen(port = 0): Promise<number> {
    return new Promise((r) =>
      this.server.listen(port, '127.0.0.1', () => r((this.server.address() as net.AddressInfo).port)),
    );
  }
  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((r) => this.server.close(() => r()));
  }
}

describe('encodeBatch', () => {
  it('frames with octet counts (bytes, not characters) or LF', () => {
    const msgs = [Buffer.from('<13>héllo'), Buffer.from('<14>x')];
    expect(encodeBatch(msgs, 'octet_counting').toString()).toBe('10 <13>héllo5 <14>x');
    expect(encodeBatch(msgs, 'lf').toString()).toBe('<13>héllo\n<14>x\n');
  });
});

describe('syslog destination', () => {
  let dir: string;
  let agent: Agent | undefined;
  let receiver: Receiver | undefined;

  afterEach(async () => {
    await agent?.stop();
    await receiver?.close();
    agent = undefined;
    receiver = undefined;
    removeDir(dir);
  });

  async function pipeline(destExtra: string, port: number): Promise<net.Socket> {
    dir = tempDir();
    agent = await startAgent(`
state_dir: ${dir}/state
shutdown_timeout: 2s
sources:
  in: { type: syslog_tcp, address: "127.0.0.1:0" }
destinations:
  out:
    type: syslog
    address: 127.0.0.1:${port}
    backoff: { initial: 20ms, max: 100ms }
${destExtra}
pipelines:
  p: { from: [in], to: [out] }
`);
    return new Promise((resolve) => {
      const s = net.connect(portOf(agent!, 'in'), '127.0.0.1', () => resolve(s));
    });
  }

  it('forwards raw messages octet-counted, byte for byte', async () => {
    receiver = new Receiver();
    const port = await receiver.listen();
    const s = await pipeline('', port);
    const msgs = [
      '<13>1 2024-01-01T00:00:00Z h app - - - one',
      '<34>Oct 11 22:14:15 mymachine su: two',
      '<13>no header at all',
    ];
    s.write(msgs.map((m) => `${m}\n`).join(''));
    await waitFor('three frames', () => receiver!.frames.length === 3);
    expect(receiver.frames).toEqual(msgs);
    s.destroy();
  });

  it('rewrites to RFC 5424 or RFC 3164 when asked', async () => {
    receiver = new Receiver();
    const port = await receiver.listen();
    const s = await pipeline('    format: rfc5424\n    framing: lf', port);
    s.write('<34>Oct 11 22:14:15 mymachine su[42]: converted\n');
    await waitFor('one frame', () => receiver!.frames.length === 1);
    const m = parseSyslog(receiver.frames[0]!);
    expect(m).toMatchObject({
      facility: 4,
      severity: 2,
      hostname: 'mymachine',
      appName: 'su',
      procId: '42',
      message: 'converted',
    });
    expect(m.timestamp).toMatch(/^\d{4}-10-11T\d{2}:14:15/);
    s.destroy();
  });

  it('writes RFC 3164 with the sender address when the message names no host', async () => {
    receiver = new Receiver();
    const port = await receiver.listen();
    const s = await pipeline('    format: rfc3164', port);
    s.write('<13>1 2024-03-05T10:00:00Z - app 7 - - hi\n');
    await waitFor('one frame', () => receiver!.frames.length === 1);
    expect(receiver.frames[0]).toMatch(/^<13>Mar {2}5 \d\d:00:00 127\.0\.0\.1 app\[7\]: hi$/);
    s.destroy();
  });

  it('keeps records queued while the receiver is down and delivers them after it returns', async () => {
    receiver = new Receiver();
    const port = await receiver.listen();
    await receiver.close();
    const s = await pipeline('', port);
    for (let i = 0; i < 50; i++) s.write(`<13>msg ${i}\n`);
    await waitFor('failed attempts', () => agent!.stats().destinations.out!.failures >= 2);
    expect(agent!.stats().destinations.out!.queue.records).toBe(50);
    receiver = new Receiver();
    await receiver.listen(port);
    await waitFor('all 50 after reconnect', () => receiver!.frames.length === 50);
    expect(receiver.frames).toEqual(Array.from({ length: 50 }, (_, i) => `<13>msg ${i}`));
    const st = agent!.stats().destinations.out!;
    expect(st.reconnects).toBe(1);
    expect(st.reconnectAttempts).toBeGreaterThan(1);
    expect(st.queue.records).toBe(0);
    s.destroy();
  });

  it('reconnects after the receiver drops the connection, losing nothing that was queued', async () => {
    receiver = new Receiver();
    const port = await receiver.listen();
    const s = await pipeline('', port);
    s.write('<13>before\n');
    await waitFor('first', () => receiver!.frames.length === 1);
    await receiver.close();
    receiver = new Receiver();
    await receiver.listen(port);
    await sleep(50);
    for (let i = 0; i < 5; i++) s.write(`<13>after ${i}\n`);
    // The first write after a silent close can vanish into the dead socket; it is sent again (at least once).
    await waitFor('the later messages', () => new Set(receiver!.frames).size >= 5, 10_000);
    expect(new Set(receiver.frames)).toEqual(new Set(Array.from({ length: 5 }, (_, i) => `<13>after ${i}`)));
    s.destroy();
  });

  it('sends over UDP, one datagram per message', async () => {
    const udp = dgram.createSocket('udp4');
    const got: string[] = [];
    udp.on('message', (m) => got.push(m.toString()));
    await new Promise<void>((r) => udp.bind(0, '127.0.0.1', () => r()));
    try {
      const s = await pipeline('    transport: udp', udp.address().port);
      s.write('<13>u1\n<13>u2\n');
      await waitFor('two datagrams', () => got.length === 2);
      expect(got).toEqual(['<13>u1', '<13>u2']);
      s.destroy();
    } finally {
      udp.close();
    }
  });
});

describe('syslog destination over TLS', () => {
  it('verifies the server against its CA, presents a client certificate, and refuses an unknown CA', async () => {
    const { makePki } = await import('../helpers/tls.js');
    const dir = tempDir();
    const pki = makePki(dir);
    const otherDir = tempDir();
    const other = makePki(otherDir);
    const receiver = await startAgent(`
state_dir: ${dir}/recv-state
sources:
  tls_in:
    type: syslog_tcp
    address: "127.0.0.1:0"
    tls: { cert: ${pki.serverCert}, key: ${pki.serverKey}, client_ca: ${pki.ca} }
destinations:
  f: { type: file, path: ${dir}/received.log }
pipelines:
  p: { from: [tls_in], to: [f] }
`);
    const port = portOf(receiver, 'tls_in');
    const sender = await startAgent(`
state_dir: ${dir}/send-state
shutdown_timeout: 300ms
sources:
  in: { type: syslog_tcp, address: "127.0.0.1:0" }
destinations:
  good:
    type: syslog
    address: 127.0.0.1:${port}
    tls: { ca: ${pki.ca}, cert: ${pki.clientCert}, key: ${pki.clientKey} }
  wrong_ca:
    type: syslog
    address: 127.0.0.1:${port}
    backoff: { initial: 20ms, max: 50ms }
    tls: { ca: ${other.ca}, cert: ${pki.clientCert}, key: ${pki.clientKey} }
pipelines:
  p: { from: [in], to: [good, wrong_ca] }
`);
    try {
      const s = net.connect(portOf(sender, 'in'), '127.0.0.1');
      s.write('<13>1 - - - - - - sent over TLS\n');
      const { readLines } = await import('../helpers/agent.js');
      await waitFor('the TLS delivery', () => readLines(`${dir}/received.log`).length === 1);
      expect(readLines(`${dir}/received.log`)).toEqual(['<13>1 - - - - - - sent over TLS']);
      await waitFor('the wrong CA to fail', () => sender.stats().destinations.wrong_ca!.failures >= 2);
      expect(sender.stats().destinations.wrong_ca!.queue.records).toBe(1);
      expect(sender.stats().destinations.wrong_ca!.reconnects).toBe(0);
      await sleep(100);
      expect(readLines(`${dir}/received.log`)).toHaveLength(1);
      s.destroy();
    } finally {
      await sender.stop();
      await receiver.stop();
      removeDir(dir);
      removeDir(otherDir);
    }
  });
});
