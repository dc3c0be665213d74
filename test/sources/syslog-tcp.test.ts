import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import type { Agent } from '../../src/agent.js';
import { portOf, readLines, removeDir, sleep, startAgent, tempDir, waitFor } from '../helpers/agent.js';
import { makePki } from '../helpers/tls.js';

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => resolve(s));
    s.once('error', reject);
  });
}

function closed(s: net.Socket): Promise<void> {
  return new Promise((resolve) => (s.destroyed ? resolve() : s.once('close', () => resolve())));
}

describe('syslog_tcp source', () => {
  let dir: string;
  let agent: Agent | undefined;
  let out: string;

  afterEach(async () => {
    await agent?.stop();
    agent = undefined;
    removeDir(dir);
  });

  async function start(extra = '', tlsBlock = ''): Promise<number> {
    dir = tempDir();
    out = path.join(dir, 'out.log');
    agent = await startAgent(`
state_dir: ${dir}/state
sources:
  tcp:
    type: syslog_tcp
    address: "127.0.0.1:0"
${extra}
${tlsBlock}
destinations:
  f: { type: file, path: ${out} }
pipelines:
  p: { from: [tcp], to: [f] }
`);
    return portOf(agent, 'tcp');
  }

  it('closes a connection that sends garbage, and only that one', async () => {
    const port = await start();
    const good = await connect(port);
    good.write('<13>1 - - - - - - before\n');
    const bad = await connect(port);
    bad.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]));
    await closed(bad);
    good.write('<13>1 - - - - - - after\n');
    await waitFor('both lines', () => readLines(out).length === 2);
    expect(good.destroyed).toBe(false);
    expect(readLines(out)).toEqual(['<13>1 - - - - - - before', '<13>1 - - - - - - after']);
    expect(agent!.stats().sources.tcp!.connectionErrors).toBeGreaterThanOrEqual(1);
    good.destroy();
  });

  it('closes a connection whose octet count breaks, keeping the frames before it', async () => {
    const port = await start();
    const s = await connect(port);
    s.write('8 <13>good12x <13>bad');
    await closed(s);
    await waitFor('the good frame', () => readLines(out).length === 1);
    expect(readLines(out)).toEqual(['<13>good']);
    expect(agent!.stats().sources.tcp!.connectionErrors).toBe(1);
  });

  it('truncates oversized messages and counts them', async () => {
    const port = await start('    max_message_size: 16\n    oversize: truncate');
    const s = await connect(port);
    s.write(`<13>${'x'.repeat(40)}\n<13>short\n`);
    await waitFor('two lines', () => readLines(out).length === 2);
    expect(readLines(out)).toEqual([`<13>${'x'.repeat(12)}`, '<13>short']);
    expect(agent!.stats().sources.tcp!.truncated).toBe(1);
    s.destroy();
  });

  it('drops oversized messages when told to, and counts them', async () => {
    const port = await start('    max_message_size: 16\n    oversize: drop');
    const s = await connect(port);
    s.write(`52 <13>${'x'.repeat(48)}9 <13>short`);
    await waitFor('one line', () => readLines(out).length === 1);
    expect(readLines(out)).toEqual(['<13>short']);
    expect(agent!.stats().sources.tcp!.dropped).toEqual({ oversize: 1 });
    s.destroy();
  });

  it('refuses connections past max_connections and counts them', async () => {
    const port = await start('    max_connections: 2');
    const a = await connect(port);
    const b = await connect(port);
    await waitFor('two accepted', () => agent!.stats().sources.tcp!.connectionsAccepted === 2);
    const c = await connect(port);
    await closed(c);
    expect(agent!.stats().sources.tcp!.connectionsRejected).toBe(1);
    a.write('<13>still works\n');
    await waitFor('a line from an accepted connection', () => readLines(out).length === 1);
    a.destroy();
    b.destroy();
  });

  it('closes idle connections after idle_timeout', async () => {
    const port = await start('    idle_timeout: 200ms');
    const s = await connect(port);
    s.write('<13>one\n');
    const t0 = Date.now();
    await closed(s);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(150);
    expect(readLines(out)).toEqual(['<13>one']);
  });

  it('takes the last LF frame without its newline when the peer closes', async () => {
    const port = await start();
    const s = await connect(port);
    s.end('<13>no newline at the end');
    await waitFor('the line', () => readLines(out).length === 1);
    expect(readLines(out)).toEqual(['<13>no newline at the end']);
  });

  it('speaks TLS with client certificates (mTLS) and refuses clients without one', async () => {
    dir = tempDir();
    const pki = makePki(dir);
    const port = await start('', `    tls:\n      cert: ${pki.serverCert}\n      key: ${pki.serverKey}\n      client_ca: ${pki.ca}`);
    const withCert = tls.connect({ host: '127.0.0.1', port, ca: readFileSync(pki.ca), cert: readFileSync(pki.clientCert), key: readFileSync(pki.clientKey) });
    await new Promise<void>((resolve, reject) => withCert.once('secureConnect', resolve).once('error', reject));
    withCert.write('<13>1 - - - - - - over mutual TLS\n');
    await waitFor('the TLS line', () => readLines(out).length === 1);
    expect(readLines(out)).toEqual(['<13>1 - - - - - - over mutual TLS']);
    withCert.destroy();

    const noCert = tls.connect({ host: '127.0.0.1', port, ca: readFileSync(pki.ca) });
    noCert.on('error', () => undefined);
    noCert.write('<13>must not arrive\n');
    await closed(noCert);
    await sleep(100);
    expect(readLines(out)).toHaveLength(1);
  });
});

describe('syslog_tcp flow control', () => {
  it('stops reading the socket while the queue is full and resumes after', async () => {
    const dir = tempDir();
    // A receiver that accepts but does not read, so the destination cannot drain.
    const held: net.Socket[] = [];
    let sinkBytes = 0;
    const sink = net.createServer((s) => {
      s.pause();
      s.on('data', (d: Buffer) => (sinkBytes += d.length));
      held.push(s);
    });
    await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
    const sinkPort = (sink.address() as net.AddressInfo).port;
    const agent = await startAgent(`
state_dir: ${dir}/state
shutdown_timeout: 200ms
sources:
  tcp: { type: syslog_tcp, address: "127.0.0.1:0" }
destinations:
  out:
    type: syslog
    address: 127.0.0.1:${sinkPort}
    batch_size: 10
    queue: { mem_buf_length: 100 }
pipelines:
  p: { from: [tcp], to: [out] }
`);
    try {
      const s = await connect(portOf(agent, 'tcp'));
      const line = `<13>${'z'.repeat(1000)}\n`;
      // Far more than the queue, the kernel buffers and the sink can hold.
      let written = 0;
      for (let i = 0; i < 20_000 && s.writableLength < 4 * 1024 * 1024; i++) {
        s.write(line);
        written++;
      }
      await waitFor('the queue to fill', () => agent.queues.get('out')!.isFull());
      await sleep(300);
      const q = agent.queues.get('out')!.stats();
      // Bounded: the limit plus at most one read's worth of frames.
      expect(q.records).toBeLessThan(100 + 300);
      expect(agent.stats().sources.tcp!.received).toBeLessThan(written);
      expect(agent.stats().sources.tcp!.dropped).toEqual({});
      // Let the sink read: everything written arrives, nothing was dropped.
      for (const h of held) h.resume();
      s.end();
      const frame = Buffer.byteLength(`1004 <13>${'z'.repeat(1000)}`);
      await waitFor('every message at the sink', () => sinkBytes === written * frame, 30_000);
      expect(agent.stats().destinations.out!.delivered).toBe(written);
    } finally {
      await agent.stop();
      for (const h of held) h.destroy();
      sink.close();
      removeDir(dir);
    }
  });
});
