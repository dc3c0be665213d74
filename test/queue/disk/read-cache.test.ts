import { describe, expect, it } from 'vitest';
import { encodeRecord, RecordDecoder } from '../../../src/protocol/record-codec.js';
import { ReadCache } from '../../../src/queue/disk/read-cache.js';
import { type QueueCorruptError, RECORD_HEADER, RingFile } from '../../../src/queue/disk/ring-file.js';
import { LogRecord } from '../../../src/record.js';
import { SourceCounters } from '../../../src/stats.js';
import { waitFor } from '../../helpers/agent.js';
import { testOrigin } from '../../helpers/records.js';
import { SimulatedDisk } from '../../helpers/simulated-disk.js';

/** A read cache over a ring on a simulated disk holding `n` synced records `r0`..; `readAhead` bytes at most. */
async function setup(n: number, readAhead = 1 << 20) {
  const disk = new SimulatedDisk();
  const ring = await RingFile.create(disk.file(), { capacity: 1 << 16 });
  const encode = (i: number) => encodeRecord(new LogRecord(Buffer.from(`r${i}`), i, testOrigin()));
  for (let i = 0; i < n; i++) ring.append([encode(i)]);
  await ring.sync();
  const decoder = new RecordDecoder(new SourceCounters());
  const corrupt: QueueCorruptError[] = [];
  const cache = new ReadCache({
    ring: () => ring,
    decode: (p) => decoder.decode(p),
    readAhead,
    corrupt: async (err) => void corrupt.push(err),
    readFailed: (err) => {
      throw err;
    },
  });
  cache.reset();
  const raws = (rs: LogRecord[]) => rs.map((r) => r.raw.toString());
  /** Takes up to `max`, waiting (bounded) for loads. */
  const take = async (max: number) => {
    const out: LogRecord[] = [];
    for (let i = 0; i < 100 && out.length < max; i++) {
      out.push(...cache.take(max - out.length));
      if (out.length < max) await Promise.race([cache.waitForRecords(), new Promise((r) => setTimeout(r, 5))]);
    }
    return out;
  };
  return { disk, ring, cache, corrupt, raws, take, encode };
}

describe('ReadCache', () => {
  it('hands records out in order with their sequence numbers, and ack gives the end of the last one for the head', async () => {
    const { ring, cache, raws, take } = await setup(10);
    const first = await take(4);
    expect(raws(first)).toEqual(['r0', 'r1', 'r2', 'r3']);
    expect(first.map((r) => r.queueSeq)).toEqual([0, 1, 2, 3]);
    expect(cache.inFlight).toBe(4);
    const acked = cache.ack(3)!;
    expect(acked.n).toBe(3);
    // The end of r2: what the ring's head moves to.
    const all = await ring.read(ring.head, ring.headSeq, 1 << 20);
    expect(acked.end).toBe(all[2]!.end);
    expect(cache.inFlight).toBe(1);
    expect(cache.ack(10)).toEqual({ n: 1, end: all[3]!.end }); // no more than was handed out
    expect(cache.ack(1)).toBeNull();
    expect(raws(await take(10))).toEqual(['r4', 'r5', 'r6', 'r7', 'r8', 'r9']);
  });

  it('after rewind hands out again from the ring head: every record not acknowledged, none acknowledged', async () => {
    const { ring, cache, raws, take } = await setup(6);
    await take(4);
    const { end } = cache.ack(2)!;
    ring.setHead(end, 2);
    cache.rewind();
    expect(cache.inFlight).toBe(0);
    expect(raws(await take(10))).toEqual(['r2', 'r3', 'r4', 'r5']);
  });

  it('reads ahead no more than readAhead bytes, and loads more as records are taken', async () => {
    const readAhead = 10 * (RECORD_HEADER + 40);
    const { cache, take, encode } = await setup(200, readAhead);
    cache.startLoading();
    await waitFor('a load', () => cache.bytes > 0);
    await new Promise((r) => setTimeout(r, 20));
    // The last read may pass the line by one read (readAhead bytes of frames), never by the backlog.
    expect(cache.bytes).toBeLessThanOrEqual(2 * readAhead);
    expect(cache.bytes).toBeLessThan((200 * (RECORD_HEADER + encode(199).length)) / 4);
    expect((await take(200)).length).toBe(200);
  });

  it('reports a record that fails its checks to the queue (which rotates and resends from the fresh file), handing out nothing of that read', async () => {
    const { disk, corrupt, take } = await setup(5);
    // Flip a byte of the third record's payload, behind the cache's back.
    const bytes = Buffer.from(disk.bytes());
    const at = bytes.indexOf(Buffer.from('r2'));
    bytes[at]! ^= 0x40;
    disk.setBytes(bytes);
    await waitFor('the corruption reported', async () => (await take(1)).length === 0 && corrupt.length > 0);
    expect(corrupt[0]!.reason).toMatch(/sequence 2/);
  });
});
