/**
 * Strict RFC 5424 / RFC 3164 parser, with opt-in leniency for real-world BSD deviations.
 * No dependencies; framing (octet counting, LF) is done by the transport decoders.
 */
import { isIPv6 } from 'node:net';

/** Year, month, day, hour, minute and second: groups 1 to 6 of a date-time match, as numbers. */
function dateTimeParts(m: RegExpExecArray): [number, number, number, number, number, number] {
  return [Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])];
}

export type SdParams = Record<string, string | string[]>;
export type StructuredData = Record<string, SdParams>;

export interface SyslogMessage {
  facility: number;
  severity: number;
  /**
   * RFC 5424: the timestamp as sent (microseconds and offset kept). RFC 3164: local time without offset, year inferred.
   */
  timestamp: string | null;
  hostname: string | null;
  appName: string | null;
  procId: string | null;
  msgId: string | null;
  structuredData: StructuredData | null;
  /**
   * MSG as text. Bytes that are not valid UTF-8 (Latin-1 from an old device, or anything after a
   * BOM that lied) are kept one character per byte (U+0000 to U+00FF), never replaced by U+FFFD:
   * filters see `ü` for Latin-1's 0xFC, and `messageBytes` holds the bytes themselves.
   */
  message: string;
  /** Set when MSG is not valid UTF-8: its bytes, as received, which re-formatting writes unchanged. */
  messageBytes?: Buffer;
  /** RFC 5424: MSG began with a UTF-8 BOM (not part of `message`); re-formatting writes it again. */
  bom?: boolean;
}

export interface ParseOptions {
  /**
   * Accept common deviations: a missing PRI (taken as user.notice), RFC 3339 timestamps and
   * zero-padded or unpadded days in BSD headers, lower-case month names, an unescaped `]`
   * inside SD values, over-long RFC 5424 header fields and more than six fraction digits.
   */
  lenient?: boolean;
  /** The moment used to infer the missing year of an RFC 3164 timestamp (default: now). */
  referenceDate?: Date;
}

export class SyslogParseError extends Error {
  override readonly name = 'SyslogParseError';
  constructor(
    readonly reason: string,
    readonly offset: number,
  ) {
    super(`invalid syslog message at offset ${offset}: ${reason}`);
  }
}

const decoder = new TextDecoder('utf-8', { fatal: true });
const BOM_LATIN1 = '\u00ef\u00bb\u00bf';

/** A message with no header fields: only priority and text. */
export function headerlessMessage(facility: number, severity: number, message: string): SyslogMessage {
  return {
    facility,
    severity,
    timestamp: null,
    hostname: null,
    appName: null,
    procId: null,
    msgId: null,
    structuredData: null,
    message,
  };
}
const NIL = '-';
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const MONTHS_LOWER = MONTHS.map((m) => m.toLowerCase());

// RFC 5424 section 6: maximum field lengths.
const MAX_HOSTNAME = 255;
const MAX_APPNAME = 48;
const MAX_PROCID = 128;
const MAX_MSGID = 32;
const MAX_SDNAME = 32;
// RFC 3164 section 4.1.3: the TAG is at most 32 characters.
const MAX_TAG = 32;

const RFC5424_TIMESTAMP = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-](\d{2}):(\d{2}))$/;
const RFC3339_LOOSE = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-](\d{2}):(\d{2}))?$/;
const BSD_TAG = /^([^\s[\]:]+)(?:\[([^\]\s]*)\])?:(?: |$)/;
const BSD_TAG_LENIENT = /^([^\s[\]:]+)(?:\[([^\]\s]*)\])?:/;

export function parseSyslog(input: string | Buffer | Uint8Array, options: ParseOptions = {}): SyslogMessage {
  if (typeof input === 'string') return parseText(input, options);
  let text: string;
  try {
    text = decoder.decode(input);
  } catch {
    // Not UTF-8: one character per byte, so that nothing is replaced and the bytes can be written back.
    const m = parseText(Buffer.from(input.buffer, input.byteOffset, input.byteLength).toString('latin1'), options);
    if (isRfc5424(input) && m.message.startsWith(BOM_LATIN1)) {
      m.message = m.message.slice(BOM_LATIN1.length);
      m.bom = true;
    }
    m.messageBytes = Buffer.from(m.message, 'latin1');
    return m;
  }
  return parseText(text, options);
}

/** `<PRI>1 `: the RFC 5424 version field after the PRI. */
function isRfc5424(b: Uint8Array): boolean {
  const close = b.indexOf(0x3e /* > */);
  return close > 0 && close <= 4 && b[close + 1] === 0x31 && b[close + 2] === 0x20;
}

function parseText(input: string, options: ParseOptions): SyslogMessage {
  let text = input;
  // One trailing LF or CRLF belongs to the transport, not the message.
  if (text.endsWith('\r\n')) text = text.slice(0, -2);
  else if (text.endsWith('\n')) text = text.slice(0, -1);
  if (text.length === 0) throw new SyslogParseError('empty message', 0);
  const lenient = options.lenient === true;

  let pri: number;
  let pos: number;
  if (text.charCodeAt(0) === 0x3c /* < */) {
    const end = text.indexOf('>', 1);
    if (end < 0 || end > 4) throw new SyslogParseError('PRI is not closed by ">" within 3 digits', 0);
    const digits = text.slice(1, end);
    if (!/^\d{1,3}$/.test(digits)) throw new SyslogParseError(`PRI "${digits}" is not a number`, 1);
    if (digits.length > 1 && digits.charCodeAt(0) === 0x30) {
      throw new SyslogParseError(`PRI "${digits}" has a leading zero`, 1);
    }
    pri = Number(digits);
    if (pri > 191) throw new SyslogParseError(`PRI ${pri} is above 191`, 1);
    pos = end + 1;
  } else if (lenient) {
    pri = 13; // RFC 3164 section 4.3.3: a relay assumes user.notice
    pos = 0;
  } else {
    throw new SyslogParseError('message does not start with a PRI ("<")', 0);
  }

  const facility = pri >> 3;
  const severity = pri & 7;
  if (text.startsWith('1 ', pos) && pos > 0) {
    return parse5424(text, pos + 2, facility, severity, lenient);
  }
  return parse3164(text, pos, facility, severity, lenient, options.referenceDate ?? new Date());
}

function isPrintUsAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 33 || c > 126) return false;
  }
  return true;
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
}

function validDateTime(y: number, mo: number, d: number, h: number, mi: number, s: number): boolean {
  return mo >= 1 && mo <= 12 && d >= 1 && d <= daysInMonth(y, mo) && h <= 23 && mi <= 59 && s <= 59;
}

function parse5424(text: string, start: number, facility: number, severity: number, lenient: boolean): SyslogMessage {
  let pos = start;
  const field = (name: string, max: number): string | null => {
    const end = text.indexOf(' ', pos);
    if (end < 0) throw new SyslogParseError(`message ends inside the header, before ${name}'s end`, pos);
    const value = text.slice(pos, end);
    if (value.length === 0) throw new SyslogParseError(`${name} is empty (two spaces in a row)`, pos);
    if (!isPrintUsAscii(value)) throw new SyslogParseError(`${name} has a character outside printable US-ASCII`, pos);
    if (value.length > max && !lenient) {
      throw new SyslogParseError(`${name} is ${value.length} characters, more than ${max}`, pos);
    }
    pos = end + 1;
    return value === NIL ? null : value;
  };

  const tsAt = pos;
  const rawTs = field('TIMESTAMP', Infinity);
  const timestamp = rawTs === null ? null : check5424Timestamp(rawTs, tsAt, lenient);
  const hostname = field('HOSTNAME', MAX_HOSTNAME);
  const appName = field('APP-NAME', MAX_APPNAME);
  const procId = field('PROCID', MAX_PROCID);
  const msgId = field('MSGID', MAX_MSGID);

  let structuredData: StructuredData | null = null;
  if (pos >= text.length) throw new SyslogParseError('STRUCTURED-DATA is missing', pos);
  if (text.charCodeAt(pos) === 0x2d /* - */) {
    pos++;
  } else if (text.charCodeAt(pos) === 0x5b /* [ */) {
    const sd = parseStructuredData(text, pos, lenient);
    structuredData = sd.data;
    pos = sd.end;
  } else {
    throw new SyslogParseError('STRUCTURED-DATA must be "-" or start with "["', pos);
  }

  let message = '';
  if (pos < text.length) {
    if (text.charCodeAt(pos) !== 0x20) throw new SyslogParseError('expected a space after STRUCTURED-DATA', pos);
    message = text.slice(pos + 1);
  }
  const m: SyslogMessage = { facility, severity, timestamp, hostname, appName, procId, msgId, structuredData, message };
  if (message.charCodeAt(0) === 0xfeff) {
    m.message = message.slice(1);
    m.bom = true;
  }
  return m;
}

function check5424Timestamp(ts: string, at: number, lenient: boolean): string {
  const m = (lenient ? RFC3339_LOOSE : RFC5424_TIMESTAMP).exec(ts);
  if (!m || (m[8] === undefined && lenient)) {
    // A lenient parse still needs an offset in RFC 5424: without it the instant is unknown.
    throw new SyslogParseError(`TIMESTAMP "${ts}" is not an RFC 5424 timestamp`, at);
  }
  const [y, mo, d, h, mi, s] = dateTimeParts(m);
  if (!validDateTime(y, mo, d, h, mi, s))
    throw new SyslogParseError(`TIMESTAMP "${ts}" is not a real date and time`, at);
  if (m[9] !== undefined && (Number(m[9]) > 23 || Number(m[10]) > 59)) {
    throw new SyslogParseError(`TIMESTAMP "${ts}" has an impossible offset`, at);
  }
  const frac = m[7];
  if (frac !== undefined && frac.length > 6) {
    if (!lenient) throw new SyslogParseError(`TIMESTAMP "${ts}" has more than 6 fraction digits`, at);
    return `${ts.slice(0, 10)}T${ts.slice(11, 19)}.${frac.slice(0, 6)}${m[8]!.toUpperCase()}`;
  }
  return lenient ? `${ts.slice(0, 10)}T${ts.slice(11, -m[8]!.length)}${m[8]!.toUpperCase()}` : ts;
}

function checkSdName(name: string, what: string, at: number, lenient: boolean): void {
  if (name.length === 0) throw new SyslogParseError(`${what} is empty`, at);
  if (name.length > MAX_SDNAME && !lenient) throw new SyslogParseError(`${what} "${name}" is longer than 32`, at);
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c < 33 || c > 126 || c === 0x3d || c === 0x5d || c === 0x22) {
      throw new SyslogParseError(`${what} "${name}" has a forbidden character`, at + i);
    }
  }
}

function parseStructuredData(text: string, start: number, lenient: boolean): { data: StructuredData; end: number } {
  const data: StructuredData = Object.create(null) as StructuredData;
  let pos = start;
  while (pos < text.length && text.charCodeAt(pos) === 0x5b /* [ */) {
    pos++;
    let idEnd = pos;
    while (idEnd < text.length && text[idEnd] !== ' ' && text[idEnd] !== ']') idEnd++;
    if (idEnd >= text.length) throw new SyslogParseError('SD-ELEMENT is not closed', pos);
    const id = text.slice(pos, idEnd);
    checkSdName(id, 'SD-ID', pos, lenient);
    if (id in data) throw new SyslogParseError(`SD-ID "${id}" appears twice`, pos);
    const params: SdParams = Object.create(null) as SdParams;
    data[id] = params;
    pos = idEnd;
    for (;;) {
      const c = text[pos];
      if (c === ']') {
        pos++;
        break;
      }
      if (c !== ' ') throw new SyslogParseError('expected " " or "]" in SD-ELEMENT', pos);
      pos++;
      const eq = text.indexOf('=', pos);
      if (eq < 0) throw new SyslogParseError('SD-PARAM has no "="', pos);
      const name = text.slice(pos, eq);
      checkSdName(name, 'PARAM-NAME', pos, lenient);
      pos = eq + 1;
      if (text[pos] !== '"') throw new SyslogParseError('PARAM-VALUE must start with a quote', pos);
      pos++;
      let value = '';
      let chunkStart = pos;
      for (;;) {
        if (pos >= text.length) throw new SyslogParseError('PARAM-VALUE is not closed', pos);
        const ch = text.charCodeAt(pos);
        if (ch === 0x22 /* " */) break;
        if (ch === 0x5c /* \ */) {
          const next = text.charCodeAt(pos + 1);
          if (next === 0x22 || next === 0x5c || next === 0x5d) {
            value += text.slice(chunkStart, pos);
            chunkStart = pos + 1; // drop the backslash, keep the escaped character
            pos += 2;
            continue;
          }
          // An invalid escape keeps its backslash (RFC 5424 section 6.3.3).
          pos++;
          continue;
        }
        if (ch === 0x5d /* ] */ && !lenient) throw new SyslogParseError('"]" inside PARAM-VALUE must be escaped', pos);
        pos++;
      }
      value += text.slice(chunkStart, pos);
      pos++; // closing quote
      const prev = params[name];
      if (prev === undefined) params[name] = value;
      else if (typeof prev === 'string') params[name] = [prev, value];
      else prev.push(value);
    }
  }
  return { data, end: pos };
}

function parse3164(
  text: string,
  start: number,
  facility: number,
  severity: number,
  lenient: boolean,
  reference: Date,
): SyslogMessage {
  const noHeader = headerlessMessage(facility, severity, text.slice(start));
  const ts = parseBsdTimestamp(text, start, lenient, reference);
  if (!ts) return noHeader; // RFC 3164 section 4.3.2: all after the PRI is the message
  let rest = text.slice(ts.end);

  let hostname: string | null = null;
  // Leniently a tag needs no space after its colon, so an IPv6 host (`0000:BABA:...`) would pass
  // for one: an address first is the host.
  let tag = lenient && ipv6First(rest) ? null : (lenient ? BSD_TAG_LENIENT : BSD_TAG).exec(rest);
  if (!tag || tag[1]!.length > MAX_TAG) {
    tag = null;
    const sp = rest.indexOf(' ');
    const host = sp < 0 ? rest : rest.slice(0, sp);
    // RFC 3164 names no limit; RFC 5424's 255 (and DNS's) holds for any host name.
    if (host.length === 0 || host.length > MAX_HOSTNAME || !isPrintUsAscii(host)) return noHeader;
    hostname = host;
    rest = sp < 0 ? '' : rest.slice(sp + 1);
    tag = (lenient ? BSD_TAG_LENIENT : BSD_TAG).exec(rest);
    if (tag && tag[1]!.length > MAX_TAG && !lenient) tag = null;
  }
  let appName: string | null = null;
  let procId: string | null = null;
  if (tag) {
    appName = tag[1]!;
    procId = tag[2] ?? null;
    if (procId === '') procId = null;
    rest = rest.slice(tag[0].length);
    if (lenient && rest.charCodeAt(0) === 0x20) rest = rest.slice(1);
  }
  return {
    facility,
    severity,
    timestamp: ts.iso,
    hostname,
    appName,
    procId,
    msgId: null,
    structuredData: null,
    message: rest,
  };
}

/** The first word is an IPv6 address (two colons before the first space, checked before the full test). */
function ipv6First(rest: string): boolean {
  const end = rest.indexOf(' ') >>> 0;
  const c1 = rest.indexOf(':');
  if (c1 < 0 || c1 > end) return false;
  const c2 = rest.indexOf(':', c1 + 1);
  return c2 >= 0 && c2 < end && isIPv6(rest.slice(0, end));
}

function pad2(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/** Parses `Mmm dd hh:mm:ss ` (and, leniently, RFC 3339) at `start`; returns the ISO form and where the rest begins. */
function parseBsdTimestamp(
  text: string,
  start: number,
  lenient: boolean,
  reference: Date,
): { iso: string; end: number } | null {
  if (lenient) {
    const sp = text.indexOf(' ', start);
    if (sp > start && text.charCodeAt(start) >= 0x30 && text.charCodeAt(start) <= 0x39) {
      const m = RFC3339_LOOSE.exec(text.slice(start, sp));
      if (!m) return null;
      const [y, mo, d, h, mi, s] = dateTimeParts(m);
      if (!validDateTime(y, mo, d, h, mi, s)) return null;
      const frac = m[7] === undefined ? '' : `.${m[7].slice(0, 6)}`;
      const off = m[8] === undefined ? '' : m[8].toUpperCase();
      return { iso: `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}${frac}${off}`, end: sp + 1 };
    }
  }
  const mon = text.slice(start, start + 3);
  let month = MONTHS.indexOf(mon);
  if (month < 0 && lenient) month = MONTHS_LOWER.indexOf(mon.toLowerCase());
  if (month < 0 || text[start + 3] !== ' ') return null;
  let pos = start + 4;
  let day: number;
  const d0 = text.charCodeAt(pos);
  const d1 = text.charCodeAt(pos + 1);
  const isDigit = (c: number) => c >= 0x30 && c <= 0x39;
  if (d0 === 0x20 && isDigit(d1)) {
    day = d1 - 0x30;
    pos += 2;
  } else if (isDigit(d0) && isDigit(d1)) {
    day = (d0 - 0x30) * 10 + d1 - 0x30;
    if (d0 === 0x30 && !lenient) return null; // RFC 3164 pads a single-digit day with a space
    pos += 2;
  } else if (lenient && isDigit(d0) && d1 === 0x20) {
    day = d0 - 0x30;
    pos += 1;
  } else {
    return null;
  }
  const hms = /^ (\d{2}):(\d{2}):(\d{2})(?: |$)/.exec(text.slice(pos, pos + 10));
  if (!hms) return null;
  const h = Number(hms[1]);
  const mi = Number(hms[2]);
  const s = Number(hms[3]);
  const year = inferYear(month + 1, day, h, mi, s, reference);
  if (year === null || !validDateTime(year, month + 1, day, h, mi, s)) return null;
  return {
    iso: `${year}-${pad2(month + 1)}-${pad2(day)}T${hms[1]}:${hms[2]}:${hms[3]}`,
    end: Math.min(text.length, pos + hms[0].length),
  };
}

/**
 * RFC 3164 has no year. Like syslog-ng, take the reference year unless that puts the message more
 * than a month in the future (then it is last year's) or eleven months in the past (a clock slightly
 * ahead at new year: next year's). Feb 29 only exists in leap years: elsewhere the header is invalid.
 */
function inferYear(month: number, day: number, h: number, mi: number, s: number, ref: Date): number | null {
  const DAY = 86_400_000;
  let year = ref.getFullYear();
  const diff = new Date(year, month - 1, day, h, mi, s).getTime() - ref.getTime();
  if (diff > 31 * DAY) year--;
  else if (diff < -334 * DAY) year++;
  return day > daysInMonth(year, month) ? null : year;
}
