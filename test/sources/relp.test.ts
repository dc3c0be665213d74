import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log.js';
import { relpFrame, RelpParser, type RelpFrame } from '../../src/protocol/relp.js';
import type { LogRecord } from '../../src/record.js';
import type { Router } from '../../src/pipeline/router.js';
import { relpSourceSchema } from '../../src/sources/relp/config.js';
import { RelpSource } from '../../src/sources/relp/index.js';
import { refuseOpen } from '../../src/sources/relp/session.js';
import { SourceCounters } from '../../src/stats.js';
import { waitFor } from '../helpers/agent.js';

interface Deferred {
  records: LogRecord[];
  commit: () => void;
  fail: (err: Error) => void;
}

/** A RELP source whose router hands each batch's commit to the test to settle. */
async function source() {
  const batches: Deferred[] = [];
  const router = {
    dispatch(_source: string, records: LogRecord[]) {
      let commit!: () => void;
      let fail!: (err: Error) => void;
      const committed = new Promise<void>((resolve, reject) => {
        commit = resolve;
        fail = reject;
      });
      committed.catch(() => undefined);
      batches.push({ records, commit, fail });
      return { accepted: undefined, committed };
    },
  } as unknown as Router;
  const src = new RelpSource(
    relpSourceSchema.parse({ type: 'relp', address: '127.0.0.1:0', max_message_size: '1KiB' }),
    {
      name: 'relp',
      router,
      logger: silentLogger(),
      stateDir: '/nonexistent',
      hostname: 'test',
      counters: new SourceCounters(),
    },
  );
  await src.start();
  return { src, batches };
}

/** A raw RELP client: what it sends, every frame it gets back, and whether the server closed. */
async function client(port: number) {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise<void>((r) => socket.once('connect', r));
  const frames: RelpFrame[] = [];
  const parser = new RelpParser(1 << 20);
  let bytes = Buffer.alloc(0);
  let ended = false;
  socket.on('data', (d: Buffer) => {
    bytes = Buffer.concat([bytes, d]);
    parser.push(d, frames);
  });
  socket.on('error', () => undefined);
  socket.on('close', () => (ended = true));
  return {
    socket,
    frames,
    bytes: () => bytes,
    ended: () => ended,
    send: (b: Buffer | string) => socket.write(b),
    answers: () => frames.filter((f) => f.command === 'rsp').map((f) => `${f.txnr} ${f.data.toString()}`),
  };
}

const OPEN = relpFrame(1, 'open', 'relp_version=0\nrelp_software=test\ncommands=syslog');

describe('RELP source', () => {
  let stop: (() => Promise<void>) | null = null;
  afterEach(async () => {
    await stop?.();
    stop = null;
  });

  it('lets the commits of one connection overlap, and answers in order once each is durable', async () => {
    const { src, batches } = await source();
    stop = () => src.stop();
    const c = await client(src.port);
    c.send(OPEN);
    await waitFor('open answered', () => c.answers().length === 1);
    // Three writes: three batches, none committed yet.
    for (let b = 0; b < 3; b++) {
      c.send(Buffer.concat([0, 1].map((i) => relpFrame(2 + b * 2 + i, 'syslog', `<13>batch ${b} msg ${i}`))));
      await waitFor(`batch ${b} dispatched`, () => batches.length === b + 1);
    }
    // Every batch reached the queues while the first still waits for its fsync: group commit can group.
    expect(batches.map((b) => b.records.length)).toEqual([2, 2, 2]);
    expect(c.answers()).toHaveLength(1);
    // A later commit first: its answers wait for the earlier ones (answers stay in order).
    batches[2]!.commit();
    batches[1]!.fail(new Error('disk full'));
    await new Promise((r) => setTimeout(r, 50));
    expect(c.answers()).toHaveLength(1);
    batches[0]!.commit();
    await waitFor('all answered', () => c.answers().length === 7);
    expect(c.answers().slice(1)).toEqual([
      '2 200 OK',
      '3 200 OK',
      '4 500 not committed, send again: disk full',
      '5 500 not committed, send again: disk full',
      '6 200 OK',
      '7 200 OK',
    ]);
  });

  it('answers the frames before a malformed one, then sends serverclose and closes', async () => {
    const { src, batches } = await source();
    stop = () => src.stop();
    const c = await client(src.port);
    c.send(Buffer.concat([OPEN, relpFrame(2, 'syslog', '<13>fine'), Buffer.from('3 syslog notanumber x\n')]));
    await waitFor('dispatched', () => batches.length === 1);
    batches[0]!.commit();
    await waitFor('closed', () => c.ended(), 5000);
    expect(c.frames.map((f) => `${f.txnr} ${f.command}`)).toEqual(['1 rsp', '2 rsp', '0 serverclose']);
    expect(c.answers()[1]).toBe('2 200 OK');
    expect(src.stats.connectionErrors).toBe(1);
  });

  it('sends serverclose before closing on a frame larger than max_message_size', async () => {
    const { src } = await source();
    stop = () => src.stop();
    const c = await client(src.port);
    c.send(Buffer.concat([OPEN, relpFrame(2, 'syslog', 'x'.repeat(2000))]));
    await waitFor('closed', () => c.ended(), 5000);
    expect(c.bytes().toString()).toMatch(/\n0 serverclose 0\n$/);
  });

  for (const [offers, answer] of [
    ['relp_version=0\nrelp_software=x\ncommands=other', '500 required command not supported by client'],
    ['relp_version=0\nrelp_software=x', '500 required command not supported by client'],
    ['relp_version=zero\ncommands=syslog', '500 error: relp_version is not a number'],
  ] as const) {
    it(`refuses an open offering ${JSON.stringify(offers)} with an error rsp, then serverclose`, async () => {
      const { src, batches } = await source();
      stop = () => src.stop();
      const c = await client(src.port);
      c.send(Buffer.concat([relpFrame(1, 'open', offers), relpFrame(2, 'syslog', '<13>after a refused open')]));
      await waitFor('closed', () => c.ended(), 5000);
      expect(c.frames.map((f) => `${f.txnr} ${f.command} ${f.data.toString()}`)).toEqual([
        `1 rsp ${answer}`,
        '0 serverclose ',
      ]);
      expect(batches).toHaveLength(0);
    });
  }

  it('answers a higher relp_version and many offers with 200 and its own version, as librelp does', async () => {
    const { src } = await source();
    stop = () => src.stop();
    const c = await client(src.port);
    const many = Array.from({ length: 65 }, (_, i) => `x${i}=${i}`).join('\n');
    c.send(relpFrame(1, 'open', `relp_version=99\nrelp_software=x\ncommands=syslog\n${many}`));
    await waitFor('answered', () => c.answers().length === 1);
    expect(c.answers()[0]).toMatch(/^1 200 OK\nrelp_version=0\n/);
    expect(c.ended()).toBe(false);
  });

  it('refuseOpen reads offers as librelp does', () => {
    expect(refuseOpen(Buffer.from('relp_version=0\nrelp_software=librelp,1.11.0\ncommands=syslog'))).toBeNull();
    expect(refuseOpen(Buffer.from('commands=foo,syslog'))).toBeNull();
    expect(refuseOpen(Buffer.from('relp_version=\ncommands=syslog'))).toMatch(/^500 /);
    expect(refuseOpen(Buffer.from(''))).toMatch(/^500 required command/);
  });
});
