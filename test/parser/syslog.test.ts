import { describe, expect, it } from 'vitest';
import { parseSyslog, SyslogParseError } from '../../src/parser/syslog.js';

function reason(input: string, lenient = false): string {
  try {
    parseSyslog(input, { lenient });
  } catch (e) {
    expect(e).toBeInstanceOf(SyslogParseError);
    return (e as SyslogParseError).reason;
  }
  throw new Error(`expected ${JSON.stringify(input)} to be rejected`);
}

describe('PRI', () => {
  it('accepts 0 through 191 and splits facility and severity', () => {
    expect(parseSyslog('<0>1 - - - - - -')).toMatchObject({ facility: 0, severity: 0 });
    expect(parseSyslog('<191>1 - - - - - -')).toMatchObject({ facility: 23, severity: 7 });
    expect(parseSyslog('<165>1 - - - - - -')).toMatchObject({ facility: 20, severity: 5 });
  });
  it('rejects values above 191, leading zeros, empty and unterminated PRI', () => {
    expect(reason('<192>1 - - - - - -')).toMatch(/above 191/);
    expect(reason('<013>1 - - - - - -')).toMatch(/leading zero/);
    expect(reason('<00>hello')).toMatch(/leading zero/);
    expect(reason('<>1 - - - - - -')).toMatch(/not a number/);
    expect(reason('<1a>x')).toMatch(/not a number/);
    expect(reason('<1234>x')).toMatch(/not closed/);
    expect(reason('<13')).toMatch(/not closed/);
    expect(reason('no pri here')).toMatch(/does not start with a PRI/);
    expect(reason('')).toMatch(/empty/);
  });
  it('leniently takes a missing PRI as user.notice', () => {
    const m = parseSyslog('Oct 11 22:14:15 host app: hi', { lenient: true, referenceDate: new Date(2024, 9, 12) });
    expect(m).toMatchObject({ facility: 1, severity: 5, hostname: 'host', appName: 'app', message: 'hi' });
  });
});

describe('RFC 5424', () => {
  it('parses the RFC examples', () => {
    expect(
      parseSyslog(
        "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \ufeff'su root' failed for lonvick on " +
          '/dev/pts/8',
      ),
    ).toEqual({
      facility: 4,
      severity: 2,
      timestamp: '2003-10-11T22:14:15.003Z',
      hostname: 'mymachine.example.com',
      appName: 'su',
      procId: null,
      msgId: 'ID47',
      structuredData: null,
      message: "'su root' failed for lonvick on /dev/pts/8",
      bom: true, // not part of the text; written again when the message is re-formatted
    });
    const m = parseSyslog(
      "<165>1 2003-10-11T22:14:15.003000-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.",
    );
    expect(m.timestamp).toBe('2003-10-11T22:14:15.003000-07:00');
    expect(m.procId).toBe('8710');
    expect(m.message).toBe("%% It's time to make the do-nuts.");
  });

  it('keeps microseconds and the offset as sent', () => {
    expect(parseSyslog('<13>1 2024-02-29T23:59:59.123456+05:30 h a p m -').timestamp).toBe(
      '2024-02-29T23:59:59.123456+05:30',
    );
  });

  it('turns NILVALUE into null everywhere', () => {
    expect(parseSyslog('<13>1 - - - - - -')).toEqual({
      facility: 1,
      severity: 5,
      timestamp: null,
      hostname: null,
      appName: null,
      procId: null,
      msgId: null,
      structuredData: null,
      message: '',
    });
  });

  it('accepts only real calendar dates and times', () => {
    expect(reason('<13>1 2023-02-29T00:00:00Z h a p m -')).toMatch(/not a real date/);
    expect(reason('<13>1 2024-04-31T00:00:00Z h a p m -')).toMatch(/not a real date/);
    expect(reason('<13>1 2024-13-01T00:00:00Z h a p m -')).toMatch(/not a real date/);
    expect(reason('<13>1 2024-01-01T24:00:00Z h a p m -')).toMatch(/not a real date/);
    expect(reason('<13>1 2024-01-01T23:60:00Z h a p m -')).toMatch(/not a real date/);
    expect(reason('<13>1 2024-01-01T23:59:60Z h a p m -')).toMatch(/not a real date/);
    expect(reason('<13>1 2024-01-01T23:59:59+24:00 h a p m -')).toMatch(/impossible offset/);
    expect(reason('<13>1 2024-01-01T23:59:59 h a p m -')).toMatch(/not an RFC 5424 timestamp/);
    expect(reason('<13>1 2024-01-01t23:59:59z h a p m -')).toMatch(/not an RFC 5424 timestamp/);
    expect(reason('<13>1 2024-01-01T23:59:59.1234567Z h a p m -')).toMatch(/more than 6 fraction/);
    expect(parseSyslog('<13>1 2000-02-29T00:00:00Z h a p m -').timestamp).toBe('2000-02-29T00:00:00Z');
    expect(reason('<13>1 1900-02-29T00:00:00Z h a p m -')).toMatch(/not a real date/);
  });

  it('leniently truncates nanoseconds to microseconds and upper-cases T and Z', () => {
    expect(parseSyslog('<13>1 2024-01-01t23:59:59.123456789z h a p m -', { lenient: true }).timestamp).toBe(
      '2024-01-01T23:59:59.123456Z',
    );
  });

  it('decodes structured data, escapes, repeated params and several elements', () => {
    const m = parseSyslog(
      '<165>1 2003-10-11T22:14:15.003Z host evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" ' +
        'eventID="1011"][examplePriority@32473 class="high"] body',
    );
    expect(m.structuredData).toEqual({
      'exampleSDID@32473': { iut: '3', eventSource: 'Application', eventID: '1011' },
      'examplePriority@32473': { class: 'high' },
    });
    expect(m.message).toBe('body');
    const esc = parseSyslog(String.raw`<13>1 - - - - - [x a="q\"b\\c\]d" b="keep\n" a="2" a="3"]`);
    expect(esc.structuredData).toEqual({ x: { a: ['q"b\\c]d', '2', '3'], b: 'keep\\n' } });
    expect(esc.message).toBe('');
    expect(parseSyslog('<13>1 - - - - - [x@1]').structuredData).toEqual({ 'x@1': {} });
    expect(parseSyslog('<13>1 - - - - - [x v=""]').structuredData).toEqual({ x: { v: '' } });
  });

  it('rejects malformed structured data', () => {
    expect(reason('<13>1 - - - - - [a][a]')).toMatch(/appears twice/);
    expect(reason('<13>1 - - - - - [a x="1"')).toMatch(/expected " " or "\]"|not closed/);
    expect(reason('<13>1 - - - - - [a x="1]')).toMatch(/must be escaped|not closed/);
    expect(reason('<13>1 - - - - - [a x=1]')).toMatch(/must start with a quote/);
    expect(reason('<13>1 - - - - - [a x]')).toMatch(/no "="/);
    expect(reason('<13>1 - - - - - []')).toMatch(/empty/);
    expect(reason('<13>1 - - - - - [a b"c="1"]')).toMatch(/forbidden character/);
    expect(reason('<13>1 - - - - - [a x="a]b"]')).toMatch(/must be escaped/);
    expect(reason('<13>1 - - - - - [a]x')).toMatch(/space after STRUCTURED-DATA/);
    expect(reason('<13>1 - - - - - x')).toMatch(/must be "-" or start with "\["/);
    expect(reason('<13>1 - - - - - -x')).toMatch(/space after STRUCTURED-DATA/);
    expect(reason('<13>1 - - - - -x')).toMatch(/ends inside the header/);
    expect(parseSyslog('<13>1 - - - - - [a x="a]b"]', { lenient: true }).structuredData).toEqual({ a: { x: 'a]b' } });
  });

  it('keeps an SD-ID named __proto__ as data, not as a prototype', () => {
    const m = parseSyslog('<13>1 - - - - - [__proto__ polluted="yes"]');
    expect(Object.keys(m.structuredData!)).toEqual(['__proto__']);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('enforces header field rules', () => {
    expect(reason('<13>1 -  - - - -')).toMatch(/empty/);
    expect(reason('<13>1 - - - -')).toMatch(/ends inside the header/);
    expect(reason(`<13>1 - ${'h'.repeat(256)} - - - -`)).toMatch(/HOSTNAME is 256/);
    expect(reason(`<13>1 - - ${'a'.repeat(49)} - - -`)).toMatch(/APP-NAME is 49/);
    expect(reason(`<13>1 - - - ${'p'.repeat(129)} - -`)).toMatch(/PROCID is 129/);
    expect(reason(`<13>1 - - - - ${'m'.repeat(33)} -`)).toMatch(/MSGID is 33/);
    expect(reason('<13>1 - hé - - - -')).toMatch(/printable US-ASCII/);
    expect(parseSyslog(`<13>1 - - ${'a'.repeat(49)} - - -`, { lenient: true }).appName).toBe('a'.repeat(49));
  });

  it('never reparses a broken RFC 5424 message as RFC 3164', () => {
    expect(() => parseSyslog('<13>1 Oct 11 22:14:15 host app: msg')).toThrow(SyslogParseError);
    expect(() => parseSyslog('<13>1 Oct 11 22:14:15 host app: msg', { lenient: true })).toThrow(SyslogParseError);
  });

  it('strips one BOM and one trailing LF or CRLF, no more', () => {
    expect(parseSyslog('<13>1 - - - - - - \ufeff\ufeffhi\n\n').message).toBe('\ufeffhi\n');
    expect(parseSyslog('<13>1 - - - - - - hi\r\n').message).toBe('hi');
    expect(parseSyslog('<13>1 - - - - - -\n').message).toBe('');
    expect(parseSyslog(Buffer.from('<13>1 - - - - - - h\u00e9llo\n')).message).toBe('h\u00e9llo');
  });

  it('keeps spaces and brackets in MSG untouched', () => {
    expect(parseSyslog('<13>1 - - - - - -   [not sd] ').message).toBe('  [not sd] ');
  });
});

describe('RFC 3164', () => {
  const ref = new Date(2024, 9, 12, 12, 0, 0); // 12 Oct 2024, local time

  it('parses the RFC example with hostname and tag', () => {
    expect(
      parseSyslog("<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8", {
        referenceDate: ref,
      }),
    ).toEqual({
      facility: 4,
      severity: 2,
      timestamp: '2024-10-11T22:14:15',
      hostname: 'mymachine',
      appName: 'su',
      procId: null,
      msgId: null,
      structuredData: null,
      message: "'su root' failed for lonvick on /dev/pts/8",
    });
  });

  it('reads tag[pid] and a space-padded single-digit day', () => {
    const m = parseSyslog('<13>Feb  5 17:32:18 10.0.0.99 sshd[1234]: Accepted publickey', { referenceDate: ref });
    expect(m).toMatchObject({
      timestamp: '2024-02-05T17:32:18',
      hostname: '10.0.0.99',
      appName: 'sshd',
      procId: '1234',
      message: 'Accepted publickey',
    });
  });

  it('takes no hostname longer than 255 characters: the whole text after the priority is the message', () => {
    const text = `Oct 11 22:14:15 ${'h'.repeat(256)} app: x`;
    for (const lenient of [false, true]) {
      expect(parseSyslog(`<13>${text}`, { referenceDate: ref, lenient })).toMatchObject({
        hostname: null,
        appName: null,
        message: text,
      });
    }
    expect(parseSyslog(`<13>Oct 11 22:14:15 ${'h'.repeat(255)} app: x`, { referenceDate: ref }).hostname).toHaveLength(
      255,
    );
  });

  it('takes a tag right after the timestamp as having no hostname', () => {
    const m = parseSyslog('<13>Oct 11 22:14:15 cron[99]: job done', { referenceDate: ref });
    expect(m).toMatchObject({ hostname: null, appName: 'cron', procId: '99', message: 'job done' });
  });

  it('keeps content without a tag as the message', () => {
    const m = parseSyslog('<13>Oct 11 22:14:15 host just some words', { referenceDate: ref });
    expect(m).toMatchObject({ hostname: 'host', appName: null, message: 'just some words' });
  });

  it('treats everything after the PRI as the message when the header does not parse (RFC 3164 4.3.2)', () => {
    for (const body of [
      'hello world',
      'Oct 01 22:14:15 host app: x',
      'Foo 11 22:14:15 host app: x',
      'Oct 11 25:14:15 host app: x',
      'Feb 30 01:02:03 h a: x',
    ]) {
      expect(parseSyslog(`<13>${body}`, { referenceDate: ref })).toEqual({
        facility: 1,
        severity: 5,
        timestamp: null,
        hostname: null,
        appName: null,
        procId: null,
        msgId: null,
        structuredData: null,
        message: body,
      });
    }
  });

  it('infers the year closest to the reference, so December read in January is last year', () => {
    const jan = new Date(2025, 0, 1, 0, 5, 0);
    expect(parseSyslog('<13>Dec 31 23:59:59 h a: x', { referenceDate: jan }).timestamp).toBe('2024-12-31T23:59:59');
    expect(parseSyslog('<13>Jan  1 00:00:01 h a: x', { referenceDate: new Date(2024, 11, 31, 23, 59) }).timestamp).toBe(
      '2025-01-01T00:00:01',
    );
    // the 29th to 31st keep their month whatever today is
    expect(parseSyslog('<13>Jan 31 10:00:00 h a: x', { referenceDate: new Date(2024, 1, 29) }).timestamp).toBe(
      '2024-01-31T10:00:00',
    );
    expect(parseSyslog('<13>Feb 29 10:00:00 h a: x', { referenceDate: new Date(2024, 2, 1) }).timestamp).toBe(
      '2024-02-29T10:00:00',
    );
  });

  it('leniently accepts RFC 3339 timestamps, zero-padded days and lower-case months', () => {
    const lenient = { lenient: true, referenceDate: ref };
    expect(parseSyslog('<38>2026-11-22T15:10:17 localhost prg00000[1234]: seq: 1', lenient)).toMatchObject({
      timestamp: '2026-11-22T15:10:17',
      hostname: 'localhost',
      appName: 'prg00000',
      procId: '1234',
      message: 'seq: 1',
    });
    expect(parseSyslog('<13>2024-01-02T03:04:05.123+01:00 h app: m', lenient).timestamp).toBe(
      '2024-01-02T03:04:05.123+01:00',
    );
    expect(parseSyslog('<13>Oct 01 22:14:15 h app: m', lenient).timestamp).toBe('2024-10-01T22:14:15');
    expect(parseSyslog('<13>Oct 1 22:14:15 h app: m', lenient).timestamp).toBe('2024-10-01T22:14:15');
    expect(parseSyslog('<13>oct 11 22:14:15 h app:m', lenient)).toMatchObject({ appName: 'app', message: 'm' });
    // strictly, the same RFC 3339 header is not a BSD header: all of it is the message
    expect(parseSyslog('<38>2026-11-22T15:10:17 localhost prg[1]: seq', { referenceDate: ref }).message).toBe(
      '2026-11-22T15:10:17 localhost prg[1]: seq',
    );
  });

  it('strips one trailing newline', () => {
    expect(parseSyslog('<13>Oct 11 22:14:15 h a: x\r\n', { referenceDate: ref }).message).toBe('x');
  });
});
