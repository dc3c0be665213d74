import { appendFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AckLog, type Committed } from '../../src/sources/nats/ack-log.js';
import { streamSequence } from '../../src/sources/nats/index.js';
import { scratchDir } from '../helpers/agent.js';

const reply = (seq: number) => `$JS.ACK.LOGS.w.1.${seq}.${seq}.0.0`;
const entry = (seq: number, at = Date.now()): Committed => ({ at, seq, reply: reply(seq) });
const none = () => ({ committed: [], intents: [] });

describe('the nats source ack log', () => {
  it('is read back for its own stream only', () => {
    const file = path.join(scratchDir(), 'nats/js.acks');
    const log = new AckLog(file, 60_000);
    log.open('2026-11-30T00:00:00Z', [entry(1)], []);
    log.append([entry(2), entry(3)], none);
    log.close();
    expect(new AckLog(file, 60_000).load('2026-11-30T00:00:00Z').committed.map((c) => c.seq)).toEqual([1, 2, 3]);
    // A stream made anew numbers from 1 again: the old log says nothing about it.
    expect(new AckLog(file, 60_000).load('2026-12-01T00:00:00Z')).toEqual({ committed: [], intents: [] });
  });

  it('keeps the entries just appended when that append rewrites it, and drops what is older than keepMs', () => {
    const file = path.join(scratchDir(), 'nats/js.acks');
    const created = '2026-11-30T00:00:00Z';
    const log = new AckLog(file, 60_000, 4);
    log.open(created, [], []);
    const old = entry(1, Date.now() - 120_000);
    const kept = entry(2);
    log.append([old, kept], none);
    // The caller remembers entries after appending them: recent() does not have 3 and 4 yet.
    log.append([entry(3), entry(4)], () => ({ committed: [old, kept], intents: [] }));
    log.close();
    expect(new AckLog(file, 60_000).load(created).committed.map((c) => c.seq)).toEqual([2, 3, 4]);
  });

  it(
    'gives back, for each message handed on and not committed, every position it had and its latest reply ' +
      'subject, through rewrites and a line cut short',
    () => {
      const file = path.join(scratchDir(), 'nats/js.acks');
      const created = '2026-11-30T00:00:00Z';
      const now = Date.now();
      const log = new AckLog(file, 60_000, 6);
      log.open(created, [], []);
      const msgs = (seqs: number[]) => seqs.map((seq) => ({ seq, reply: reply(seq) }));
      log.intend(now, 'nats:LOGS/w/a', 0, msgs([10, 11, 12]));
      log.append([entry(10)], none);
      // A second process hands 11 and 12 on again, and 13 for the first time; 12 with a newer delivery.
      log.intend(now + 1, 'nats:LOGS/w/b', 0, [
        { seq: 11, reply: reply(11) },
        { seq: 12, reply: `${reply(12)}.again` },
        { seq: 13, reply: reply(13) },
      ]);
      const state = () => {
        const l = new AckLog(file, 60_000).load(created);
        return {
          committed: l.committed.map((c) => c.seq),
          intents: Object.fromEntries(l.intents.map((i) => [i.seq, [i.reply, i.positions]])),
        };
      };
      const expected = {
        committed: [10],
        intents: {
          11: [
            reply(11),
            [
              ['nats:LOGS/w/a', 1],
              ['nats:LOGS/w/b', 0],
            ],
          ],
          12: [
            `${reply(12)}.again`,
            [
              ['nats:LOGS/w/a', 2],
              ['nats:LOGS/w/b', 1],
            ],
          ],
          13: [reply(13), [['nats:LOGS/w/b', 2]]],
        },
      };
      expect(state()).toEqual(expected);
      // The next append rewrites the log from what the caller remembers.
      const l = new AckLog(file, 60_000).load(created);
      log.append([entry(13)], () => l);
      delete (expected.intents as Record<number, unknown>)[13];
      expected.committed.push(13);
      expect(state()).toEqual(expected);
      // A crash mid-write leaves a line cut short: what it names is not taken.
      log.intend(now + 2, 'nats:LOGS/w/c', 7, msgs([20, 21]));
      log.close();
      appendFileSync(file, 'p 1 nats:LOGS/w/c 9 22');
      expect(Object.keys(state().intents)).toEqual(['11', '12', '20', '21']);
    },
  );
});

describe('the in-progress times in the ack log', () => {
  it("move a handed-on message's time forward only, only for messages handed on, through a rewrite", () => {
    const file = path.join(scratchDir(), 'nats/js.acks');
    const created = '2026-11-30T00:00:00Z';
    const now = Date.now();
    const log = new AckLog(file, 60_000, 4);
    log.open(created, [], []);
    log.working(now + 500, [7]); // not handed on: no intent made of it
    log.intend(
      now,
      'nats:LOGS/w/a',
      0,
      [10, 11, 12].map((seq) => ({ seq, reply: reply(seq) })),
    );
    log.working(now + 1000, [10, 11]);
    log.working(now + 400, [11]); // an older report confirmed late changes nothing
    const at = () => Object.fromEntries(new AckLog(file, 60_000).load(created).intents.map((i) => [i.seq, i.at - now]));
    expect(at()).toEqual({ 10: 1000, 11: 1000, 12: 0 });
    // A rewrite keeps them, as the caller remembers them.
    const l = new AckLog(file, 60_000).load(created);
    log.append([entry(12)], () => l);
    log.working(now + 2000, [10]);
    log.close();
    expect(at()).toEqual({ 10: 2000, 11: 1000 });
  });
});

describe('the stream sequence of an acknowledgement subject', () => {
  it('is read from both forms of the subject, and not from anything else', () => {
    expect(streamSequence('$JS.ACK.LOGS.writers.1.4521.4519.1764460800000000000.12')).toBe(4521);
    expect(streamSequence('$JS.ACK.hub.ACCHASH.LOGS.writers.3.77.70.1764460800000000000.0.tok')).toBe(77);
    expect(streamSequence('$JS.ACK.hub.ACCHASH.LOGS.writers.3.78.70.1764460800000000000.0')).toBe(78);
    for (const s of ['_INBOX.abc.1', '$JS.ACK.LOGS.writers.1.x.1.1.1', '$JS.ACK.LOGS.w.1.0.1.1.1', 'a.b.c.d.e.f.g.h.i'])
      expect(streamSequence(s)).toBeUndefined();
  });
});
