import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  RelpError,
  relpFrame,
  relpResponses,
  RelpParser,
  syslogFrames,
  type RelpFrame,
} from '../../src/protocol/relp.js';

/** Feeds `bytes` to a parser in pieces cut at `cuts`. */
function pieces(bytes: Buffer, cuts: number[]): Buffer[] {
  const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const c of at) {
    out.push(bytes.subarray(from, c));
    from = c;
  }
  out.push(bytes.subarray(from));
  return out;
}

const frameArb = fc.record({
  txnr: fc.integer({ min: 1, max: 999_999_999 }),
  command: fc.constantFrom('rsp', 'syslog', 'open', 'close', 'serverclose', 'custom'),
  data: fc.oneof(
    fc.constant(''),
    fc.constant('200 OK'),
    fc.constant('500 not now'),
    fc.constant('200 OK\nrelp_version=0\ncommands=syslog'),
    fc.string({ maxLength: 40 }),
  ),
});

/** What the answer reader reported, in order. */
type Seen = ['ok', number] | ['frame', number, string, string];

describe('RELP framing', () => {
  it("frames a window's answers in one buffer as it frames each", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 999_999_999 }), { maxLength: 200 }),
        fc.oneof(fc.constant('200 OK'), fc.constant(''), fc.string({ maxLength: 60, unit: 'grapheme' })),
        (txnrs, text) => {
          expect(relpResponses(txnrs, text)).toEqual(Buffer.concat(txnrs.map((t) => relpFrame(t, 'rsp', text))));
        },
      ),
    );
  });
});

describe('RELP parser', () => {
  it('gives the same frames however the stream is cut', () => {
    fc.assert(
      fc.property(fc.array(frameArb, { maxLength: 30 }), fc.array(fc.nat(), { maxLength: 20 }), (frames, cuts) => {
        const bytes = Buffer.concat(frames.map((f) => relpFrame(f.txnr, f.command, f.data)));
        const parser = new RelpParser(1 << 20);
        const out: RelpFrame[] = [];
        for (const p of pieces(bytes, cuts)) parser.push(p, out);
        expect(out.map((f) => [f.txnr, f.command, f.data.toString()])).toEqual(
          frames.map((f) => [f.txnr, f.command, Buffer.from(f.data).toString()]),
        );
        expect(parser.pending).toBe(0);
      }),
    );
  });

  it('reads `200 OK` answers in place and everything else as frames, in order, however the stream is cut', () => {
    fc.assert(
      fc.property(fc.array(frameArb, { maxLength: 30 }), fc.array(fc.nat(), { maxLength: 20 }), (frames, cuts) => {
        const bytes = Buffer.concat(frames.map((f) => relpFrame(f.txnr, f.command, f.data)));
        const parser = new RelpParser(1 << 20);
        const seen: Seen[] = [];
        for (const p of pieces(bytes, cuts)) {
          parser.pushAnswers(
            p,
            (txnr) => void seen.push(['ok', txnr]),
            (f) => void seen.push(['frame', f.txnr, f.command, f.data.toString()]),
          );
        }
        const expected: Seen[] = frames.map((f) =>
          f.command === 'rsp' && f.data === '200 OK'
            ? ['ok', f.txnr]
            : ['frame', f.txnr, f.command, Buffer.from(f.data).toString()],
        );
        expect(seen).toEqual(expected);
        expect(parser.pending).toBe(0);
      }),
    );
  });

  it('stops reading answers when a callback says so', () => {
    const parser = new RelpParser(1 << 20);
    const seen: number[] = [];
    const bytes = Buffer.concat([
      relpFrame(2, 'rsp', '200 OK'),
      relpFrame(3, 'rsp', '200 OK'),
      relpFrame(4, 'rsp', '200 OK'),
    ]);
    parser.pushAnswers(
      bytes,
      (txnr) => {
        seen.push(txnr);
        return txnr === 3;
      },
      () => false,
    );
    expect(seen).toEqual([2, 3]);
  });

  it.each([
    ['a transaction number of ten digits', '1234567890 rsp 6 200 OK\n'],
    ['no space after the transaction number', '12rsp 6 200 OK\n'],
    ['a command with a digit', '12 rs9 6 200 OK\n'],
    ['a data length over the limit', '12 rsp 99999 x\n'],
    ['a frame that does not end with LF', '12 rsp 6 200 OKX'],
    ['no transaction number at all', 'rsp 6 200 OK\n'],
  ])('rejects %s, in both readers', (_what, text) => {
    expect(() => new RelpParser(1024).push(Buffer.from(text), [])).toThrow(RelpError);
    expect(() =>
      new RelpParser(1024).pushAnswers(
        Buffer.from(text),
        () => false,
        () => false,
      ),
    ).toThrow(RelpError);
  });
});

describe('syslogFrames (the client encoder)', () => {
  it('writes the bytes relpFrame writes, frame after frame, for any numbering and bodies', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 999_999_000 }),
        fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 20 }),
        (first, bodies) => {
          const bufs = bodies.map((b) => Buffer.from(b));
          const want = Buffer.concat(bufs.map((b, i) => relpFrame(first + i, 'syslog', b)));
          expect(syslogFrames(first, bufs).equals(want)).toBe(true);
        },
      ),
    );
  });

  it('frames an empty body as DATALEN 0 with no space, and crosses a power of ten in the numbering', () => {
    expect(syslogFrames(9, [Buffer.from(''), Buffer.from('x')]).toString()).toBe('9 syslog 0\n10 syslog 1 x\n');
  });

  it('is read back by the parser as the same commands, however the stream is cut', () => {
    fc.assert(
      fc.property(
        fc.array(fc.string({ maxLength: 50 }), { minLength: 1, maxLength: 20 }),
        fc.array(fc.nat(), { maxLength: 10 }),
        (msgs, cuts) => {
          const bytes = syslogFrames(
            2,
            msgs.map((m) => Buffer.from(m)),
          );
          const parser = new RelpParser(1 << 20);
          const out: RelpFrame[] = [];
          for (const p of pieces(bytes, cuts)) parser.push(p, out);
          expect(out.map((f) => [f.txnr, f.command, f.data.toString()])).toEqual(
            msgs.map((m, i) => [2 + i, 'syslog', m]),
          );
        },
      ),
    );
  });
});
