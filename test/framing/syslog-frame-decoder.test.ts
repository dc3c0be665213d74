import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FramingError, SyslogFrameDecoder, type OversizePolicy } from '../../src/framing/syslog-frame-decoder.js';

function decodeAll(chunks: (string | Buffer)[], max = 1024, oversize: OversizePolicy = 'truncate') {
  const d = new SyslogFrameDecoder({ maxMessageSize: max, oversize });
  const out: Buffer[] = [];
  for (const c of chunks) d.push(typeof c === 'string' ? Buffer.from(c) : c, out);
  d.end(out);
  return { frames: out.map((b) => b.toString()), decoder: d };
}

describe('SyslogFrameDecoder', () => {
  it('detects LF framing from a "<" and strips CR before LF', () => {
    const { frames, decoder } = decodeAll(['<13>one\n<13>two\r\n\n<13>thr', 'ee\n<13>last']);
    expect(decoder.framing).toBe('lf');
    expect(frames).toEqual(['<13>one', '<13>two', '<13>three', '<13>last']);
  });

  it('detects octet counting from a digit and keeps LF inside frames', () => {
    const { frames, decoder } = decodeAll([
      '9 <13>a\nb\nc',
      '5 <13>x',
      '1',
      '0 <13>12345',
      '6',
      '8 <13>end\n',
      '\n5 <13>y',
    ]);
    expect(decoder.framing).toBe('octet-counting');
    expect(frames).toEqual(['<13>a\nb\nc', '<13>x', '<13>123456', '<13>end', '<13>y']);
  });

  it('splits identically whatever the chunk boundaries', () => {
    const msgs = ['<13>1 - - - - - - a', '<14>b c d', `<15>${'x'.repeat(300)}`];
    const lf = Buffer.from(msgs.map((m) => `${m}\n`).join(''));
    const oc = Buffer.from(msgs.map((m) => `${Buffer.byteLength(m)} ${m}`).join(''));
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 12 }), fc.boolean(), (cuts, octet) => {
        const wire = octet ? oc : lf;
        const points = [...new Set(cuts.map((c) => c % wire.length))].sort((a, b) => a - b);
        const chunks: Buffer[] = [];
        let prev = 0;
        for (const p of points) {
          chunks.push(wire.subarray(prev, p));
          prev = p;
        }
        chunks.push(wire.subarray(prev));
        expect(decodeAll(chunks).frames).toEqual(msgs);
      }),
      { numRuns: 500 },
    );
  });

  it('truncates or drops oversized frames and counts them, in both framings', () => {
    const big = 'y'.repeat(50);
    let r = decodeAll([`<13>${big}\n<13>ok\n`], 20, 'truncate');
    expect(r.frames).toEqual([`<13>${big}`.slice(0, 20), '<13>ok']);
    expect(r.decoder.truncated).toBe(1);
    r = decodeAll([`<13>${big.slice(0, 10)}`, `${big.slice(10)}\n<13>ok\n`], 20, 'drop');
    expect(r.frames).toEqual(['<13>ok']);
    expect(r.decoder.dropped).toBe(1);
    r = decodeAll([`<13>${big.slice(0, 30)}`, `${big.slice(30)}\n<13>ok\n`], 20, 'truncate');
    expect(r.frames).toEqual([`<13>${big}`.slice(0, 20), '<13>ok']);
    const m = `<13>${big}`;
    r = decodeAll([`${m.length} ${m.slice(0, 7)}`, `${m.slice(7)}5 <13>k`], 20, 'truncate');
    expect(r.frames).toEqual([m.slice(0, 20), '<13>k']);
    expect(r.decoder.truncated).toBe(1);
    r = decodeAll([`${m.length} ${m}5 <13>k`], 20, 'drop');
    expect(r.frames).toEqual(['<13>k']);
    expect(r.decoder.dropped).toBe(1);
  });

  it('rejects a broken octet count with a reason', () => {
    const bad = (s: string) => () => decodeAll([s]);
    expect(bad('12x <13>')).toThrow(/expected an octet count but found byte 0x78 after "12"/);
    expect(bad('5 <13>a<13>b')).toThrow(FramingError);
    expect(bad('05 <13>a')).toThrow(/leading zero/);
    expect(bad('12345678901 x')).toThrow(/more than 10 digits/);
    expect(bad('10 <13>')).toThrow(/closed in the middle/);
  });

  it('rejects binary garbage such as a TLS handshake on a plain port', () => {
    expect(() => decodeAll([Buffer.from([0x16, 0x03, 0x01, 0x00])])).toThrow(/TLS handshake/);
    expect(() => decodeAll([Buffer.from([0x00, 0x01])])).toThrow(/neither an octet count nor text/);
  });
});

describe('SyslogFrameDecoder on a local socket (framing: unix)', () => {
  const unix = (chunks: Buffer[]) => {
    const d = new SyslogFrameDecoder({ maxMessageSize: 4096, oversize: 'truncate', framing: 'unix' });
    const out: Buffer[] = [];
    for (const c of chunks) d.push(c, out);
    d.end(out);
    return { frames: out.map((b) => b.toString('latin1')), decoder: d };
  };
  const cut = (wire: Buffer, cuts: number[], firstAtLeast: number) => {
    const at = [...new Set(cuts.map((c) => c % (wire.length + 1)).filter((c) => c >= firstAtLeast))].sort(
      (a, b) => a - b,
    );
    const chunks: Buffer[] = [];
    let from = 0;
    for (const c of at) {
      chunks.push(wire.subarray(from, c));
      from = c;
    }
    chunks.push(wire.subarray(from));
    return chunks.filter((c) => c.length > 0);
  };
  // Message text: any bytes but NUL, LF among them (glibc keeps a multi-line message whole).
  const text = fc
    .uint8Array({ minLength: 1, maxLength: 60 })
    .map((a) => Buffer.concat([Buffer.from('<13>'), Buffer.from(a.map((b) => (b === 0 ? 0x20 : b)))]));

  it('glibc syslog(3): NUL-terminated, LF kept inside a message, however the stream is cut after its first message', () => {
    fc.assert(
      fc.property(
        fc.array(text, { minLength: 1, maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 10 }),
        (msgs, cuts) => {
          const wire = Buffer.concat(msgs.flatMap((m) => [m, Buffer.from([0])]));
          const { frames, decoder } = unix(cut(wire, cuts, msgs[0]!.length + 1));
          expect(decoder.framing).toBe('nul');
          // One trailing LF, then one CR, of a message are transport, as in LF framing.
          expect(frames).toEqual(
            msgs.map((m) => m.toString('latin1').replace(/\n$/, '').replace(/\r$/, '')).filter((m) => m.length > 0),
          );
        },
      ),
      { seed: 5, numRuns: 300 },
    );
  });

  it('util-linux logger: LF-terminated; a NUL later still ends a message, and from then on only NUL does', () => {
    const { frames, decoder } = unix([Buffer.from('<13>one\n<13>two\n'), Buffer.from('<13>three\0<13>fo\nur\0')]);
    expect(frames).toEqual(['<13>one', '<13>two', '<13>three', '<13>fo\nur']);
    expect(decoder.framing).toBe('nul');
  });

  it('octet counting still detected from a digit', () => {
    const { frames, decoder } = unix([Buffer.from('8 <13>a\0bc5 <13>x')]);
    expect(decoder.framing).toBe('octet-counting');
    expect(frames).toEqual(['<13>a\0bc', '<13>x']);
  });
});
