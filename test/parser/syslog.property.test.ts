import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatRfc3164, formatRfc5424 } from '../../src/parser/format.js';
import { parseSyslog, SyslogParseError, type StructuredData, type SyslogMessage } from '../../src/parser/syslog.js';

const printUsAscii = (min: number, max: number) =>
  fc.string({
    unit: fc.integer({ min: 33, max: 126 }).map((c) => String.fromCharCode(c)),
    minLength: min,
    maxLength: max,
  });
const nilOr = (arb: fc.Arbitrary<string>) =>
  fc.option(
    arb.filter((s) => s !== '-'),
    { nil: null },
  );
const sdName = fc.string({
  unit: fc
    .integer({ min: 33, max: 126 })
    .filter((c) => c !== 0x3d && c !== 0x5d && c !== 0x22)
    .map((c) => String.fromCharCode(c)),
  minLength: 1,
  maxLength: 32,
});
const pad = (n: number, w = 2) => String(n).padStart(w, '0');

const timestamp5424 = fc
  .record({
    date: fc.date({
      min: new Date('1970-01-01T00:00:00Z'),
      max: new Date('2099-12-31T23:59:59Z'),
      noInvalidDate: true,
    }),
    frac: fc.option(fc.string({ unit: fc.constantFrom(...'0123456789'), minLength: 1, maxLength: 6 }), { nil: null }),
    offset: fc.option(
      fc.tuple(fc.constantFrom('+', '-'), fc.integer({ min: 0, max: 23 }), fc.integer({ min: 0, max: 59 })),
      { nil: null },
    ),
  })
  .map(({ date, frac, offset }) => {
    const d = date.toISOString().slice(0, 19);
    const off = offset === null ? 'Z' : `${offset[0]}${pad(offset[1])}:${pad(offset[2])}`;
    return `${d}${frac === null ? '' : `.${frac}`}${off}`;
  });

const structuredData: fc.Arbitrary<StructuredData | null> = fc.option(
  fc
    .uniqueArray(fc.tuple(sdName, fc.array(fc.tuple(sdName, fc.string({ maxLength: 20 })), { maxLength: 4 })), {
      minLength: 1,
      maxLength: 3,
      selector: ([id]) => id,
    })
    .map((elements) => {
      const sd: StructuredData = Object.create(null) as StructuredData;
      for (const [id, params] of elements) {
        const p: Record<string, string | string[]> = Object.create(null) as Record<string, string | string[]>;
        for (const [name, value] of params) {
          const prev = p[name];
          if (prev === undefined) p[name] = value;
          else if (typeof prev === 'string') p[name] = [prev, value];
          else prev.push(value);
        }
        sd[id] = p;
      }
      return sd;
    }),
  { nil: null },
);

// One trailing LF belongs to the transport, so a message cannot end in one and survive.
const message = fc
  .string({ unit: 'grapheme', maxLength: 80 })
  .filter((m) => !m.endsWith('\n') && !m.startsWith('\ufeff'));

const message5424: fc.Arbitrary<SyslogMessage> = fc.record({
  facility: fc.integer({ min: 0, max: 23 }),
  severity: fc.integer({ min: 0, max: 7 }),
  timestamp: fc.option(timestamp5424, { nil: null }),
  hostname: nilOr(printUsAscii(1, 255)),
  appName: nilOr(printUsAscii(1, 48)),
  procId: nilOr(printUsAscii(1, 128)),
  msgId: nilOr(printUsAscii(1, 32)),
  structuredData,
  message,
});

describe('parseSyslog properties', () => {
  it('parses back every valid RFC 5424 message it serialises', () => {
    fc.assert(
      fc.property(message5424, fc.boolean(), (m, lenient) => {
        const wire = formatRfc5424(m);
        expect(parseSyslog(wire, { lenient })).toEqual(m);
        expect(parseSyslog(Buffer.from(`${wire}\n`), { lenient })).toEqual(m);
      }),
      { numRuns: 2000 },
    );
  });

  it('parses back every valid RFC 3164 message it serialises', () => {
    const reference = new Date(2024, 5, 15, 12, 0, 0);
    const tag = fc.string({
      unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789-_./'),
      minLength: 1,
      maxLength: 32,
    });
    fc.assert(
      fc.property(
        fc.record({
          facility: fc.integer({ min: 0, max: 23 }),
          severity: fc.integer({ min: 0, max: 7 }),
          when: fc.date({ min: new Date(2024, 0, 1), max: new Date(2024, 6, 10), noInvalidDate: true }),
          hostname: printUsAscii(1, 60).filter((h) => !h.includes(':') && !h.includes('[')),
          appName: fc.option(tag, { nil: null }),
          procId: fc.option(fc.string({ unit: fc.constantFrom(...'0123456789'), minLength: 1, maxLength: 7 }), {
            nil: null,
          }),
          message: message.filter((s) => !s.startsWith(' ')),
        }),
        (g) => {
          const when = new Date(Math.floor(g.when.getTime() / 1000) * 1000);
          const m: SyslogMessage = {
            facility: g.facility,
            severity: g.severity,
            timestamp:
              `${when.getFullYear()}-${pad(when.getMonth() + 1)}-${pad(when.getDate())}` +
              `T${pad(when.getHours())}:${pad(when.getMinutes())}:${pad(when.getSeconds())}`,
            hostname: g.hostname,
            appName: g.appName,
            procId: g.appName === null ? null : g.procId,
            msgId: null,
            structuredData: null,
            message: g.message,
          };
          // Without a tag, a message's first word would read as one: only tagged messages round-trip.
          fc.pre(m.appName !== null);
          expect(parseSyslog(formatRfc3164(m, when, 'unused'), { referenceDate: reference })).toEqual(m);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('either parses or throws SyslogParseError for any input, never anything else', () => {
    const noisy = fc.oneof(
      fc.string({ maxLength: 120 }),
      fc.uint8Array({ maxLength: 120 }).map((b) => Buffer.from(b)),
      message5424.map((m) => formatRfc5424(m)).chain((s) => fc.nat(s.length).map((cut) => s.slice(0, cut))),
      fc
        .tuple(fc.constantFrom('<13>1 ', '<0>', '<191>', '<13>Oct 11 22:14:15 '), fc.string({ maxLength: 80 }))
        .map(([a, b]) => a + b),
    );
    fc.assert(
      fc.property(noisy, fc.boolean(), (input, lenient) => {
        try {
          const m = parseSyslog(input, { lenient });
          expect(m.facility).toBeGreaterThanOrEqual(0);
          expect(m.facility).toBeLessThanOrEqual(23);
          expect(typeof m.message).toBe('string');
        } catch (e) {
          expect(e).toBeInstanceOf(SyslogParseError);
        }
      }),
      { numRuns: 5000 },
    );
  });
});
