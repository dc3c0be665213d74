import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { Agent } from '../../src/agent.js';
import { portOf, readLines, removeDir, scratchDir, sleep, testAgent, waitFor } from '../helpers/agent.js';
import { makePki } from '../helpers/tls.js';
import { FaultyDisk } from '../helpers/simulated-disk.js';
import { parseConfigText } from '../../src/config/load.js';
import { silentLogger } from '../../src/log.js';
import { Router } from '../../src/pipeline/router.js';
import { ReliableQueue } from '../../src/queue/disk/reliable-queue.js';
import { SyslogTcpSource } from '../../src/sources/syslog-tcp/index.js';
import { SourceCounters } from '../../src/stats.js';
import { testQueueOptions } from '../helpers/records.js';

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

  async function start(extra = '', tlsBlock = ''): Promise<number> {
    dir = scratchDir();
    out = path.join(dir, 'out.log');
    agent = await testAgent(`
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
    dir = scratchDir();
    const pki = makePki(dir);
    const port = await start(
      '',
      `    tls:\n      cert: ${pki.serverCert}\n      key: ${pki.serverKey}\n      client_ca: ${pki.ca}`,
    );
    const withCert = tls.connect({
      host: '127.0.0.1',
      port,
      ca: readFileSync(pki.ca),
      cert: readFileSync(pki.clientCert),
      key: readFileSync(pki.clientKey),
    });
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
    const dir = scratchDir();
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
    const agent = await testAgent(`
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

describe('syslog_tcp source, batches that cannot be committed', () => {
  const yaml = (dir: string) => `
state_dir: ${dir}
sources:
  tcp: { type: syslog_tcp, address: "127.0.0.1:0" }
destinations:
  d: { type: file, path: ${dir}/unused.log }
pipelines:
  p: { from: [tcp], to: [d] }
`;

  /**
   * A TCP source on a real socket, routed into a reliable queue on a disk that fails on demand.
   * `throwing`: the queue's push throws instead of failing the commit (a queue bug): the source must
   * survive that too.
   */
  async function withSource(
    body: (t: {
      port: number;
      q: ReliableQueue;
      disk: FaultyDisk;
      source: SyslogTcpSource;
      failPush: { on: boolean };
    }) => Promise<void>,
  ): Promise<void> {
    const dir = scratchDir();
    const disk = new FaultyDisk();
    const q = await ReliableQueue.open('d', path.join(dir, 'q'), testQueueOptions({ openFile: disk.open }));
    const failPush = { on: false };
    const queue = new Proxy(q, {
      get(target, p) {
        if (p === 'push' && failPush.on)
          return () => {
            throw new Error('queue bug');
          };
        const v = Reflect.get(target, p) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const config = parseConfigText(yaml(dir), 'test.yaml').config;
    const counters = new SourceCounters();
    const router = new Router(config.pipelines, new Map([['d', queue]]), { counters });
    const source = new SyslogTcpSource(config.sources.tcp as never, {
      name: 'tcp',
      router,
      counters,
      logger: silentLogger(),
      stateDir: dir,
      hostname: 'h',
    });
    await source.start();
    try {
      await body({ port: source.port, q, disk, source, failPush });
    } finally {
      await source.stop();
      await q.dispose();
      removeDir(dir);
    }
  }

  /** The line numbers of everything the queue holds, in order. */
  async function taken(q: ReliableQueue): Promise<number[]> {
    const out: number[] = [];
    while (out.length < q.size) {
      const got = q.take(100_000);
      if (got.length === 0) await Promise.race([q.waitForRecords(), sleep(5)]);
      for (const r of got) out.push(Number(/m(\d+)$/.exec(r.raw.toString())![1]));
    }
    return out;
  }

  for (const how of ['its write fails', 'the queue throws'] as const) {
    it(`keeps reading a connection whose batches cannot be committed (${how}), and counts every line it ` +
      `lost`, async () => {
      await withSource(async ({ port, q, disk, source, failPush }) => {
        const s = await connect(port);
        if (how === 'its write fails') disk.failWrites = 'EIO';
        else failPush.on = true;
        // Enough to fill the socket buffers many times over: a paused connection would stall here.
        let sent = 0;
        const burst = (n: number) => {
          let text = '';
          for (let i = 0; i < n; i++) text += `<13>1 - - - - - - m${sent++}\n`;
          return new Promise<void>((r) => s.write(text, () => r()));
        };
        await burst(20_000);
        await waitFor('every line of the burst read', () => source.stats.received === sent);
        disk.failWrites = null;
        failPush.on = false;
        await waitFor('the failed commits counted', () => (source.stats.dropped.write_failed ?? 0) + q.size === sent);
        // The failed commits are refused before the file has recovered (it forgets the writes that
        // were not durable), and it refuses appends until then: wait for the sync under way, which
        // includes that recovery.
        await q.syncNow().catch(() => undefined);
        // The same connection is still read, and what it sends now is queued.
        await burst(100);
        await waitFor('the lines after the failure read', () => source.stats.received === sent);
        await q.syncNow();
        const inQueue = await taken(q);
        expect(inQueue.slice(-100)).toEqual(Array.from({ length: 100 }, (_, i) => sent - 100 + i));
        // Every line not in the queue was counted as lost, and none twice.
        expect(source.stats.dropped.write_failed).toBe(sent - inQueue.length);
        expect(q.stats().dropped.write_failed).toBe(sent - inQueue.length);
        s.destroy();
      });
    }, 60_000);
  }
});
