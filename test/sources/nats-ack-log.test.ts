import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AckLog, type Committed } from '../../src/sources/nats/ack-log.js';
import { scratchDir } from '../helpers/agent.js';

const entry = (seq: number, at = Date.now()): Committed => ({ at, seq, reply: `$JS.ACK.LOGS.w.1.${seq}.${seq}.0.0` });

describe('the nats source ack log', () => {
  it('is read back for its own stream only', () => {
    const file = path.join(scratchDir(), 'nats/js.acks');
    const log = new AckLog(file, 60_000);
    log.open('2026-11-30T00:00:00Z', [entry(1)]);
    log.append([entry(2), entry(3)], () => []);
    log.close();
    expect(new AckLog(file, 60_000).load('2026-11-30T00:00:00Z').map((c) => c.seq)).toEqual([1, 2, 3]);
    // A stream made anew numbers from 1 again: the old log says nothing about it.
    expect(new AckLog(file, 60_000).load('2026-12-01T00:00:00Z')).toEqual([]);
  });

  it('keeps the entries just appended when that append rewrites it, and drops what is older than keepMs', () => {
    const file = path.join(scratchDir(), 'nats/js.acks');
    const created = '2026-11-30T00:00:00Z';
    const log = new AckLog(file, 60_000, 4);
    log.open(created, []);
    const old = entry(1, Date.now() - 120_000);
    const kept = entry(2);
    log.append([old, kept], () => []);
    // The caller remembers entries after appending them: recent() does not have 3 and 4 yet.
    log.append([entry(3), entry(4)], () => [old, kept]);
    log.close();
    expect(new AckLog(file, 60_000).load(created).map((c) => c.seq)).toEqual([2, 3, 4]);
  });
});
