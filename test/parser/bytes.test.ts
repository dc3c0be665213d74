import net from 'node:net';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { renderRecord } from '../../src/destinations/format.js';
import { parseSyslog } from '../../src/parser/syslog.js';
import { LogRecord, type RecordOrigin } from '../../src/record.js';
import { agentPerTest, portOf, waitFor } from '../helpers/agent.js';
import { SourceCounters } from '../../src/stats.js';

const origin: RecordOrigin = {
  source: 't',
  from: '192.0.2.9',
  format: 'syslog',
  lenient: false,
  counters: new SourceCounters(),
};
const bytes = (...parts: (string | number[])[]) =>
  Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.from(p))));
const rfc5424 = (raw: Buffer) =>
  renderRecord(new LogRecord(raw, Date.parse('2026-11-29T10:00:00Z'), origin), 'rfc5424', 'here');
const rfc3164 = (raw: Buffer) =>
  renderRecord(new LogRecord(raw, Date.parse('2026-11-29T10:00:00Z'), origin), 'rfc3164', 'here');

// RFC 5424 6.4: MSG may be any octets when it has no BOM. Re-formatting must write the bytes that came.
describe('the parser keeps the bytes of a message that is not UTF-8', () => {
  const head = '<13>1 2026-11-29T10:00:00.123Z host app 42 ID7 -';
  const cases: [string, Buffer][] = [
    ['Latin-1 (fondü, 0xFC)', bytes(head, ' fond', [0xfc], ' au fromage')],
    ['a BOM followed by invalid UTF-8', bytes(head, ' ', [0xef, 0xbb, 0xbf], 'caf', [0xe9], ' cr', [0xe8, 0x6d, 0x65])],
    ['a BOM followed by valid UTF-8', bytes(head, ' ', [0xef, 0xbb, 0xbf], 'caf', [0xc3, 0xa9])],
    ['bytes that are never UTF-8 (0xFF 0xFE 0x80)', bytes(head, ' x', [0xff, 0xfe, 0x80], 'y')],
  ];
  for (const [name, raw] of cases) {
    it(`format rfc5424 writes ${name} byte for byte`, () => {
      expect(rfc5424(raw).equals(raw)).toBe(true);
    });
  }

  it('gives filters and templates one character per byte, never U+FFFD', () => {
    const m = parseSyslog(cases[0]![1]);
    expect(m.message).toBe('fondü au fromage');
    expect(m.message).not.toContain('\ufffd');
    expect(m.messageBytes?.equals(bytes('fond', [0xfc], ' au fromage'))).toBe(true);
    const bom = parseSyslog(cases[1]![1]);
    expect(bom.bom).toBe(true);
    expect(bom.message).toBe('café crème');
  });

  it('format rfc3164 writes the MSG bytes of a Latin-1 RFC 3164 message unchanged', () => {
    const raw = bytes('<13>Nov 29 10:00:00 host app[42]: Gr', [0xfc], [0xdf], 'e');
    const out = rfc3164(raw);
    expect(out.subarray(out.length - 7).equals(bytes(': Gr', [0xfc], [0xdf], 'e'))).toBe(true);
    expect(out.toString('latin1')).toMatch(/^<13>Nov 29 \d\d:00:00 host app\[42\]: Gr/);
  });

  it('takes an IPv6 host for the host, not for a tag, leniently as strictly', () => {
    const line = '<13>Jan 10 01:00:00 0000:BABA:0000:0000:0000:0000:0000:0001 prg0: hello';
    for (const lenient of [false, true]) {
      const m = parseSyslog(line, { lenient });
      expect(m.hostname).toBe('0000:BABA:0000:0000:0000:0000:0000:0001');
      expect(m.appName).toBe('prg0');
      expect(m.message).toBe('hello');
    }
  });
});

describe('through an agent: TCP in, a filter on MSG, format rfc5424 out', () => {
  const t = agentPerTest();

  it('a Latin-1 message matches /fondü/ and reaches the file byte for byte', async () => {
    const dir = t.fresh();
    const out = path.join(dir, 'out.log');
    const agent = await t.start(`
state_dir: ${dir}/state
sources:
  tcp: { type: syslog_tcp, address: "127.0.0.1:0" }
destinations:
  f: { type: file, path: ${out}, format: rfc5424 }
pipelines:
  p: { from: [tcp], where: { message: "fondü" }, to: [f] }
`);
    const latin1 = bytes('<13>1 2026-11-29T10:00:00.123Z host app 42 ID7 - fond', [0xfc], ' au fromage');
    const other = bytes('<13>1 2026-11-29T10:00:00.123Z host app 42 ID7 - raclette');
    const s = net.connect(portOf(agent, 'tcp'), '127.0.0.1');
    await new Promise<void>((r) => s.once('connect', r));
    s.end(Buffer.concat([latin1, Buffer.from('\n'), other, Buffer.from('\n')]));
    await waitFor('the line written', () => {
      try {
        return readFileSync(out).length > 0;
      } catch {
        return false;
      }
    });
    await waitFor('both read', () => agent.stats().sources.tcp!.received === 2);
    expect(readFileSync(out).equals(Buffer.concat([latin1, Buffer.from('\n')]))).toBe(true);
  });
});
