import net from 'node:net';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import type { Agent } from '../../src/agent.js';
import { RELP_OFFERS, relpFrame, RelpParser, type RelpFrame } from '../../src/protocol/relp.js';
import { deadLetterFile, readDeadLetters } from '../../src/destinations/dead-letters.js';
import { relpDestinationSchema } from '../../src/destinations/relp/config.js';
import { RelpDestination } from '../../src/destinations/relp/index.js';
import { silentLogger } from '../../src/log.js';
import { MemoryQueue } from '../../src/queue/memory-queue.js';
import { LogRecord } from '../../src/record.js';
import { testOrigin } from '../helpers/records.js';
import { portOf, scratchDir, testAgent, waitFor } from '../helpers/agent.js';

/** One connection of a scripted RELP server, as its script sees it. */
interface RelpTestConnection {
  /** A `syslog` command arrived. */
  syslog(txnr: number, data: string): void;
  /** Called on every read, before its frames are handled. */
  read?(): void;
  /** How the server's answers leave (default: written at once). */
  send?(answer: Buffer): void;
  /** Answers still held back, sent before the answer to `close`. */
  held?(): Buffer[];
}

/**
 * A RELP server for these tests: it answers `open` and `close` itself and leaves the `syslog`
 * commands to a per-connection script.
 */
async function relpTestServer(script: (socket: net.Socket, send: (answer: Buffer) => void) => RelpTestConnection) {
  const server = net.createServer((s) => {
    const parser = new RelpParser(1 << 20);
    const send = (answer: Buffer) => (conn.send ? conn.send(answer) : s.write(answer));
    const conn = script(s, send);
    s.on('error', () => undefined);
    s.on('data', (chunk: Buffer) => {
      conn.read?.();
      const frames: RelpFrame[] = [];
      parser.push(chunk, frames);
      for (const f of frames) {
        if (f.command === 'open') send(relpFrame(f.txnr, 'rsp', `200 OK\n${RELP_OFFERS}`));
        else if (f.command === 'syslog') conn.syslog(f.txnr, f.data.toString());
        else if (f.command === 'close') s.end(Buffer.concat([...(conn.held?.() ?? []), relpFrame(f.txnr, 'rsp')]));
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as net.AddressInfo).port, close: () => server.close() };
}

/** A RELP server that answers `500` to the first `failFirst` messages, then `200`. */
async function picky(failFirst: number) {
  const got: string[] = [];
  let refused = 0;
  const server = await relpTestServer((socket) => ({
    syslog(txnr, data) {
      if (refused < failFirst) {
        refused++;
        socket.write(relpFrame(txnr, 'rsp', '500 try again later'));
      } else {
        got.push(data);
        socket.write(relpFrame(txnr, 'rsp', '200 OK'));
      }
    },
  }));
  return { ...server, got, refused: () => refused };
}

/**
 * Answers the messages received so far one per event-loop turn, as a busy receiver does; `send`
 * is how each answer leaves.
 */
function answerOnePerTurn(socket: net.Socket, got: string[], send: (answer: Buffer) => void) {
  const pending: number[] = [];
  let answering = false;
  const answerNext = () => {
    const txnr = pending.shift();
    if (txnr === undefined || socket.destroyed) {
      answering = false;
      return;
    }
    send(relpFrame(txnr, 'rsp', '200 OK'));
    setImmediate(answerNext);
  };
  return (txnr: number, data: string) => {
    got.push(data);
    pending.push(txnr);
    if (!answering) {
      answering = true;
      setImmediate(answerNext);
    }
  };
}

/**
 * A RELP server that answers one message per event-loop turn, as a busy receiver does, and counts
 * the reads that carried messages.
 */
async function oneAnswerAtATime() {
  const got: string[] = [];
  let reads = 0;
  const server = await relpTestServer((socket, send) => {
    const answer = answerOnePerTurn(socket, got, send);
    let counted = false;
    return {
      read: () => (counted = false),
      syslog(txnr, data) {
        if (!counted) reads++;
        counted = true;
        answer(txnr, data);
      },
    };
  });
  return { ...server, got, reads: () => reads };
}

/**
 * A RELP server whose answers go out as librelp's do on a socket without TCP_NODELAY, facing a
 * client kernel that delays its ACKs: answers are made one per event-loop turn; the first goes out
 * at once, and later ones are held until the client sends more data (which carries the ACK) or,
 * failing that, until a delayed-ACK timer fires. Counts how often that timer had to release them.
 */
async function nagleAnswers(delayedAckMs: number) {
  const got: string[] = [];
  let timerReleases = 0;
  const server = await relpTestServer((socket, send) => {
    let held: Buffer[] = [];
    let inFlight = false;
    let timer: NodeJS.Timeout | undefined;
    socket.on('close', () => clearTimeout(timer));
    const flush = () => {
      if (held.length === 0 || socket.destroyed) return;
      socket.write(Buffer.concat(held));
      held = [];
      inFlight = true;
      timer = setTimeout(() => {
        timer = undefined;
        inFlight = false;
        if (held.length > 0) timerReleases++;
        flush();
      }, delayedAckMs);
    };
    return {
      syslog: answerOnePerTurn(socket, got, send),
      // Data from the client acknowledges what was sent: held answers go out now.
      read() {
        clearTimeout(timer);
        inFlight = false;
        flush();
      },
      send(answer) {
        held.push(answer);
        if (!inFlight) flush();
      },
      held() {
        const out = held;
        held = [];
        return out;
      },
    };
  });
  return { ...server, got, timerReleases: () => timerReleases };
}

/** An agent that takes syslog over TCP and sends it to a RELP destination at `port` with `options`. */
function startRelpAgent(dir: string, port: number, options: string): Promise<Agent> {
  return testAgent(`
state_dir: ${dir}/state
shutdown_timeout: 200ms
admin: { enabled: false }
sources:
  in: { type: syslog_tcp, address: "127.0.0.1:0" }
destinations:
  r: { type: relp, address: "127.0.0.1:${port}", ${options} }
pipelines:
  p: { from: [in], to: [r] }
`);
}

describe('RELP destination', () => {
  let dir: string;
  let agent: Agent | undefined;

  it('treats any answer but 200 as "send again": nothing is dropped, and the refusals are counted', async () => {
    dir = scratchDir();
    const srv = await picky(3);
    try {
      agent = await startRelpAgent(dir, srv.port, 'window: 4, backoff: { initial: 10ms, max: 50ms }');
      const s = net.connect(portOf(agent, 'in'), '127.0.0.1');
      s.end(Array.from({ length: 20 }, (_, i) => `<13>1 - h app - - - picky ${i}\n`).join(''));
      await waitFor(
        'every message accepted',
        () => new Set(srv.got).size === 20 && agent!.stats().destinations.r!.queue.records === 0,
        10_000,
      );
      expect([...new Set(srv.got)].sort()).toEqual(
        Array.from({ length: 20 }, (_, i) => `<13>1 - h app - - - picky ${i}`).sort(),
      );
      const st = agent.stats().destinations.r!;
      expect(srv.refused()).toBe(3);
      expect(st.serverErrors).toBeGreaterThanOrEqual(1);
      expect(st.failures).toBeGreaterThanOrEqual(1);
      expect(st.delivered).toBe(20);
    } finally {
      srv.close();
    }
  });

  it(
    'sets aside a message the receiver ends the session on each time (as librelp receive -o abort does), and ' +
      'delivers all the others',
    async () => {
      dir = scratchDir();
      const got: string[] = [];
      let sessions = 0;
      // Answers each message at once, but closes the connection, without a word, on the poisoned one.
      const srv = await relpTestServer((socket) => {
        sessions++;
        return {
          syslog(txnr, data) {
            if (data.includes('POISON')) return void socket.destroy();
            got.push(data);
            socket.write(relpFrame(txnr, 'rsp', '200 OK'));
          },
        };
      });
      try {
        agent = await startRelpAgent(
          dir,
          srv.port,
          'window: 128, backoff: { initial: 10ms, max: 50ms }, queue: { mode: reliable, max_size: 4MiB, ' +
            'sync_interval: ' +
            '5ms, max_record_attempts: 3 }',
        );
        const msgs = [
          'first',
          ...Array.from({ length: 30 }, (_, i) => `before ${i}`),
          'POISON',
          ...Array.from({ length: 50 }, (_, i) => `after ${i}`),
        ];
        const s = net.connect(portOf(agent, 'in'), '127.0.0.1');
        s.end(msgs.map((m) => `<13>1 - h app - - - ${m}\n`).join(''));
        await new Promise<void>((r) => s.once('close', () => r()));
        await waitFor(
          'the others delivered and the poisoned one set aside',
          () => {
            const st = agent!.stats().destinations.r!;
            return st.delivered === msgs.length - 1 && st.deadLettered.receiver_closed_session === 1;
          },
          15_000,
        );
        const texts = got.map((g) => g.replace('<13>1 - h app - - - ', ''));
        expect(new Set(texts)).toEqual(new Set(msgs.filter((m) => m !== 'POISON')));
        // Sent again only while the one to blame was looked for: not again and again.
        expect(texts.filter((t) => t === 'first').length).toBeLessThanOrEqual(2);
        expect(texts.indexOf('after 0')).toBeGreaterThan(texts.lastIndexOf('before 29'));
        const st = agent.stats().destinations.r!;
        expect(st.deadLettered).toEqual({ receiver_closed_session: 1 });
        const { letters } = await readDeadLetters(deadLetterFile(`${dir}/state`, 'r'));
        expect(letters.map((l) => [l.reason, l.message, l.attempts])).toEqual([
          ['receiver_closed_session', '<13>1 - h app - - - POISON', 3],
        ]);
        expect(sessions).toBeLessThanOrEqual(6);
      } finally {
        srv.close();
      }
    },
  );

  it(
    'max_age: while the receiver is down, records that waited longer are set aside as expired (frozen ' + 'clock)',
    async () => {
      dir = scratchDir();
      const t0 = new Date('2026-03-01T00:00:00Z').getTime();
      vi.useFakeTimers({ toFake: ['Date'], now: t0 });
      try {
        // Port 9 (discard) is closed on a test machine: every connect is refused.
        agent = await startRelpAgent(
          dir,
          9,
          'backoff: { initial: 10ms, max: 20ms }, queue: { mode: reliable, max_size: 4MiB, sync_interval: 5ms, ' +
            'max_age: 1h }',
        );
        const s = net.connect(portOf(agent, 'in'), '127.0.0.1');
        s.end(Array.from({ length: 5 }, (_, i) => `<13>1 - h app - - - old ${i}\n`).join(''));
        await waitFor('5 queued', () => agent!.stats().destinations.r!.queue.records === 5);
        vi.setSystemTime(t0 + 3_600_001);
        await waitFor('5 expired', () => agent!.stats().destinations.r!.deadLettered.expired === 5);
        expect(agent.stats().destinations.r!.queue.records).toBe(0);
        const { letters } = await readDeadLetters(deadLetterFile(`${dir}/state`, 'r'));
        expect(letters.map((l) => l.message)).toEqual([0, 1, 2, 3, 4].map((i) => `<13>1 - h app - - - old ${i}`));
      } finally {
        vi.useRealTimers();
      }
    },
  );

  it('counts as replayed every record sent again, also when a reconnect in between fails before sending', async () => {
    dir = scratchDir();
    const got: string[] = [];
    let connections = 0;
    // First session: no answers at all (response_timeout ends it with every message in flight).
    // Second: the connection is cut before the open is answered. Third: everything answered.
    const srv = await relpTestServer((socket) => {
      const n = ++connections;
      if (n === 2) socket.destroy();
      return {
        syslog(txnr, data) {
          if (n >= 3) {
            got.push(data);
            socket.write(relpFrame(txnr, 'rsp', '200 OK'));
          }
        },
      };
    });
    try {
      agent = await startRelpAgent(
        dir,
        srv.port,
        'window: 64, response_timeout: 300ms, backoff: { initial: 10ms, max: 20ms }',
      );
      const s = net.connect(portOf(agent, 'in'), '127.0.0.1');
      s.end(Array.from({ length: 20 }, (_, i) => `<13>1 - h app - - - again ${i}\n`).join(''));
      await waitFor(
        'every message answered',
        () => got.length === 20 && agent!.stats().destinations.r!.queue.records === 0,
        10_000,
      );
      const st = agent.stats().destinations.r!;
      expect(connections).toBeGreaterThanOrEqual(3);
      expect(st.delivered).toBe(20);
      expect(st.sent).toBe(40);
      expect(st.replayed).toBe(20);
    } finally {
      srv.close();
    }
  });

  it('refills a full window in worthwhile writes, not one message per answer', async () => {
    dir = scratchDir();
    const srv = await oneAnswerAtATime();
    const N = 3000;
    try {
      agent = await startRelpAgent(dir, srv.port, 'window: 128');
      const s = net.connect(portOf(agent, 'in'), '127.0.0.1');
      s.end(Array.from({ length: N }, (_, i) => `<13>1 - h app - - - refill ${i}\n`).join(''));
      await waitFor('every message answered', () => agent!.stats().destinations.r!.delivered === N, 20_000);
      expect(srv.got).toEqual(Array.from({ length: N }, (_, i) => `<13>1 - h app - - - refill ${i}`));
      // The window is refilled once a quarter of it (32) is answered: about N / 32 = 94 writes.
      // Refilling after every answer would be one write per message, about 2900.
      expect(srv.reads()).toBeLessThanOrEqual(150);
      expect(srv.reads()).toBeGreaterThanOrEqual(N / 128);
    } finally {
      srv.close();
    }
  });

  it('does not wait for answers a Nagle-delayed server holds back: it sends what room there is', async () => {
    dir = scratchDir();
    const srv = await nagleAnswers(500);
    const N = 6000;
    try {
      agent = await startRelpAgent(dir, srv.port, 'window: 1024, response_timeout: 60s');
      const s = net.connect(portOf(agent, 'in'), '127.0.0.1');
      s.end(Array.from({ length: N }, (_, i) => `<13>1 - h app - - - held ${i}\n`).join(''));
      await waitFor('every message answered', () => agent!.stats().destinations.r!.delivered === N, 20_000);
      expect(srv.got).toEqual(Array.from({ length: N }, (_, i) => `<13>1 - h app - - - held ${i}`));
      expect(agent.stats().destinations.r!.reconnects).toBe(1);
      // The client's next write releases held answers. Only at the very end, with nothing left to
      // send, may the server's timer have to. A client that waited for a quarter of its window to be
      // answered before writing again would need the timer for about every window: N / 1024 ≈ 6 times.
      expect(srv.timerReleases()).toBeLessThanOrEqual(1);
    } finally {
      srv.close();
    }
  });
});

describe('RelpDestination alone (no agent around it)', () => {
  /** A destination sending from a memory queue of `n` records to the RELP server at `port`. */
  function direct(port: number, n: number, options: Record<string, unknown> = {}) {
    const queue = new MemoryQueue('d', { maxRecords: 100_000, maxBytes: 1 << 30, full: 'block' });
    queue.push(Array.from({ length: n }, (_, i) => new LogRecord(Buffer.from(`<13>m ${i}`), 0, testOrigin())));
    const config = relpDestinationSchema.parse({
      type: 'relp',
      address: `127.0.0.1:${port}`,
      format: 'raw',
      backoff: { initial: '10ms', max: '20ms' },
      ...options,
    });
    const d = new RelpDestination(config, { name: 'd', queue, logger: silentLogger(), hostname: 'h' });
    onTestFinished(async () => {
      await d.stop(100);
    });
    return { d, queue };
  }

  it('frees records only as a prefix answered 200, however the answers are ordered, and stops with close', async () => {
    const got: string[] = [];
    // Answers each window of 8 in reverse order, once all 8 (or the last few) have arrived.
    const srv = await relpTestServer((socket) => {
      let held: number[] = [];
      return {
        syslog(txnr, data) {
          got.push(data);
          held.push(txnr);
          if (held.length === 8 || got.length === 100) {
            for (const t of held.reverse()) socket.write(relpFrame(t, 'rsp', '200 OK'));
            held = [];
          }
        },
      };
    });
    onTestFinished(() => void srv.close());
    const { d, queue } = direct(srv.port, 100, { window: 8 });
    d.start();
    await waitFor('100 delivered', () => d.stats.delivered === 100);
    expect(got).toEqual(Array.from({ length: 100 }, (_, i) => `<13>m ${i}`));
    expect(queue.stats().records).toBe(0);
    expect(d.stats).toMatchObject({ sent: 100, failures: 0, replayed: 0, serverErrors: 0 });
    expect(await d.stop(1000)).toBe(0);
  });

  it('a refusal frees what was answered before it; the rest is sent again in a new session, counted', async () => {
    const got: string[] = [];
    let sessions = 0;
    const srv = await relpTestServer((socket) => {
      const session = ++sessions;
      return {
        syslog(txnr, data) {
          got.push(`${session}:${data}`);
          // The first session refuses message 5.
          socket.write(relpFrame(txnr, 'rsp', session === 1 && data.endsWith(' 5') ? '500 not now' : '200 OK'));
        },
      };
    });
    onTestFinished(() => void srv.close());
    const { d } = direct(srv.port, 10, { window: 4 });
    d.start();
    await waitFor('10 delivered', () => d.stats.delivered === 10);
    const second = got.filter((g) => g.startsWith('2:')).map((g) => g.slice(2));
    expect(got.filter((g) => g.startsWith('1:')).slice(0, 6)).toEqual(
      Array.from({ length: 6 }, (_, i) => `1:<13>m ${i}`),
    );
    expect(second).toEqual(Array.from({ length: 5 }, (_, i) => `<13>m ${5 + i}`));
    expect(d.stats.serverErrors).toBe(1);
    expect(d.stats.failures).toBe(1);
    expect(d.stats.replayed).toBe(d.stats.sent - 10);
  });
});
