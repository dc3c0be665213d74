import { describe, expect, it } from 'vitest';
import { encodeRecord, MAX_TIME, RecordDecoder } from '../../src/protocol/record-codec.js';
import { LogRecord, type RecordOrigin } from '../../src/record.js';
import { SourceCounters } from '../../src/stats.js';

describe('RecordDecoder', () => {
  const counters = new SourceCounters();
  const stats = counters.of('in');
  const decoder = new RecordDecoder(counters);
  const origin: RecordOrigin = {
    source: 'in',
    from: '/var/log/app.log',
    format: 'text',
    lenient: false,
    counters: new SourceCounters(),
    facility: 3,
    severity: 6,
  };

  it(
    'keeps a sound record byte for byte, and sets right every receive time and stream position that is not one, ' +
      'counting each',
    () => {
      const good = new LogRecord(Buffer.from('ok'), 1_767_225_600_000, origin);
      good.setStream('file|h|1:2|0|abc', 4096);
      const back = decoder.decode(encodeRecord(good));
      expect(back.encoded).toEqual(encodeRecord(good));
      expect([back.receivedAt, back.stream, back.streamPos]).toEqual([1_767_225_600_000, 'file|h|1:2|0|abc', 4096]);
      expect(stats.repaired).toEqual({});

      const before = Date.now();
      for (const t of [Number.NaN, Number.NEGATIVE_INFINITY, -1, MAX_TIME + 1]) {
        const r = decoder.decode(encodeRecord(new LogRecord(Buffer.from('t'), t, origin)));
        expect(r.receivedAt).toBeGreaterThanOrEqual(before);
        expect(new Date(r.receivedAt).toISOString()).toMatch(/^20/);
        expect(r.encoded).toBeUndefined(); // written anew, as repaired
      }
      for (const pos of [Number.NaN, -1, 1.5, 2 ** 60]) {
        const bad = new LogRecord(Buffer.from('s'), 1_767_225_600_000, origin);
        bad.setStream('file|h|1:2|0|abc', pos);
        const r = decoder.decode(encodeRecord(bad));
        expect(r.stream).toBeUndefined();
        expect(r.raw.toString()).toBe('s');
      }
      expect(stats.repaired).toEqual({ invalid_time: 4, invalid_stream_position: 4 });
    },
  );

  it('carries the positions a record had with earlier readers, and drops an unsound one, counted', () => {
    const r = new LogRecord(Buffer.from('again'), 1_767_225_600_000, origin);
    r.setStream('nats:LOGS/w/c', 7);
    r.setEarlier([
      ['nats:LOGS/w/a', 3],
      ['nats:LOGS/w/b', 0],
    ]);
    const back = decoder.decode(encodeRecord(r));
    expect([back.stream, back.streamPos, back.earlier, back.raw.toString()]).toEqual([
      'nats:LOGS/w/c',
      7,
      [
        ['nats:LOGS/w/a', 3],
        ['nats:LOGS/w/b', 0],
      ],
      'again',
    ]);
    expect(back.encoded).toBeDefined();
    const bad = new LogRecord(Buffer.from('x'), 1_767_225_600_000, origin);
    bad.setStream('s', 1);
    bad.setEarlier([
      ['a', -1],
      ['b', 2],
    ]);
    const fixed = decoder.decode(encodeRecord(bad));
    expect([fixed.streamPos, fixed.earlier, fixed.raw.toString()]).toEqual([1, [['b', 2]], 'x']);
    expect(stats.repaired.invalid_stream_position).toBe(5);
    // Cut short inside the earlier positions: refused, not read as message bytes.
    const payload = encodeRecord(r);
    expect(() => decoder.decode(payload.subarray(0, payload.length - 'again'.length - 3))).toThrow(/cut short/);
  });

  it("brings a text line's facility and severity back into syslog's ranges", () => {
    const payload = encodeRecord(new LogRecord(Buffer.from('x'), 1, { ...origin, facility: 3, severity: 6 }));
    const originAt = 2 + 1; // u16 origin length, then the flags byte
    payload[originAt] = 200;
    payload[originAt + 1] = 99;
    const r = decoder.decode(payload);
    expect([r.message.facility, r.message.severity]).toEqual([23, 7]);
    expect(stats.repaired.invalid_priority).toBe(1);
  });
});
