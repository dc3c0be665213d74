import type { JournalEntry } from './export-format.js';

/**
 * The SD-ID under which chosen journal fields travel in a record's structured data. 32473 is the
 * enterprise number RFC 5612 sets aside for examples and documentation: sluice has none of its own.
 */
export const JOURNAL_SD_ID = 'journal@32473';

/** The parts of a journal cursor (`s=…;i=…;b=…;m=…;t=…;x=…`) that say where an entry sits. */
export interface CursorPosition {
  /** The sequence number id: entries of one id are numbered one after another. */
  seqnumId: string;
  seqnum: number;
  /** Wall-clock time of the entry, microseconds since the epoch. */
  realtime: number;
}

/** Reads the sequence number and time out of a cursor; null when it has neither. */
export function cursorPosition(cursor: string): CursorPosition | null {
  const seqnumId = part(cursor, 's=');
  const seqnum = Number.parseInt(part(cursor, 'i='), 16);
  const realtime = Number.parseInt(part(cursor, 't='), 16);
  if (!seqnumId || !Number.isSafeInteger(seqnum) || seqnum < 0) return null;
  return { seqnumId, seqnum, realtime: Number.isSafeInteger(realtime) ? realtime : -1 };
}

/** The value of `key` (`s=`, `i=`...) in a cursor; empty when it has none. */
function part(cursor: string, key: string): string {
  const at = cursor.startsWith(key) ? 0 : cursor.indexOf(`;${key}`) + 1;
  if (at === 0 && !cursor.startsWith(key)) return '';
  const end = cursor.indexOf(';', at);
  return cursor.slice(at + key.length, end < 0 ? cursor.length : end);
}

/** The fields a record is made of (entryToSyslog), besides the chosen ones; `__` ones journalctl always prints. */
export const ENTRY_FIELDS = [
  '__CURSOR',
  '__REALTIME_TIMESTAMP',
  'MESSAGE',
  'PRIORITY',
  'SYSLOG_FACILITY',
  'SYSLOG_IDENTIFIER',
  '_COMM',
  '_PID',
  'SYSLOG_PID',
  '_HOSTNAME',
  'MESSAGE_ID',
] as const;

export interface EntryOptions {
  /** HOSTNAME when the entry has no `_HOSTNAME`. */
  hostname: string;
  /** Facility and severity numbers for entries without SYSLOG_FACILITY or PRIORITY. */
  facility: number;
  severity: number;
  /** Journal fields carried as structured data (`[journal@32473 NAME="value" …]`), in this order. */
  fields: readonly string[];
}

const text = (e: JournalEntry, name: string): string | undefined => e.fields.get(name)?.toString('utf8');

/** A header field made of printable US-ASCII without spaces (RFC 5424's PRINTUSASCII), cut to `max`; `-` when empty. */
function headerToken(value: string | undefined, max: number): string {
  if (value === undefined || value === '') return '-';
  let out = '';
  for (const ch of value) {
    const c = ch.codePointAt(0)!;
    out += c > 32 && c < 127 ? ch : '_';
    if (out.length >= max) break;
  }
  return out;
}

/** A PARAM-VALUE: `"`, `\` and `]` escaped with a backslash (RFC 5424 6.3.3). */
function paramValue(v: Buffer): string {
  return v.toString('utf8').replace(/["\\\]]/g, (c) => `\\${c}`);
}

/** An SD-NAME: at most 32 printable US-ASCII characters, no `=`, space, `]` or `"`. Journal names always fit but for length. */
const sdName = (n: string) => n.slice(0, 32);

/** The last second formatted (entries come in bursts within one second). */
let lastSecond = -1;
let lastPrefix = '';

function timestamp(micros: number): string {
  const second = Math.floor(micros / 1_000_000);
  if (second !== lastSecond) {
    lastSecond = second;
    lastPrefix = new Date(second * 1000).toISOString().slice(0, 19); // 2026-11-30T03:39:07
  }
  return `${lastPrefix}.${String(micros % 1_000_000).padStart(6, '0')}Z`;
}

function smallInt(v: string | undefined, max: number): number | null {
  if (v === undefined || !/^\d{1,3}$/.test(v)) return null;
  const n = Number(v);
  return n <= max ? n : null;
}

/**
 * One journal entry as an RFC 5424 message: PRIORITY and SYSLOG_FACILITY make PRI,
 * `__REALTIME_TIMESTAMP` the timestamp to the microsecond, `_HOSTNAME` the host, SYSLOG_IDENTIFIER
 * (else `_COMM`) the APP-NAME, `_PID` (else SYSLOG_PID) the PROCID, MESSAGE_ID the MSGID, the
 * chosen fields the structured data, and MESSAGE, as the bytes it was logged with, the MSG.
 */
export function entryToSyslog(e: JournalEntry, o: EntryOptions): Buffer {
  const facility = smallInt(text(e, 'SYSLOG_FACILITY'), 23) ?? o.facility;
  const severity = smallInt(text(e, 'PRIORITY'), 7) ?? o.severity;
  const realtime = e.position?.realtime ?? Number(text(e, '__REALTIME_TIMESTAMP'));
  const ts = Number.isSafeInteger(realtime) && realtime > 0 ? timestamp(realtime) : '-';
  const host = headerToken(text(e, '_HOSTNAME') ?? o.hostname, 255);
  const app = headerToken(text(e, 'SYSLOG_IDENTIFIER') ?? text(e, '_COMM'), 48);
  const pid = headerToken(text(e, '_PID') ?? text(e, 'SYSLOG_PID'), 128);
  const msgId = headerToken(text(e, 'MESSAGE_ID'), 32);
  let sd = '';
  for (const name of o.fields) {
    const v = e.fields.get(name);
    if (v !== undefined) sd += ` ${sdName(name)}="${paramValue(v)}"`;
  }
  const head = `<${facility * 8 + severity}>1 ${ts} ${host} ${app} ${pid} ${msgId} ${sd ? `[${JOURNAL_SD_ID}${sd}]` : '-'}`;
  const message = e.fields.get('MESSAGE');
  if (!message || message.length === 0) return Buffer.from(head);
  // One buffer: the header written into it, the message bytes copied after it.
  const headBytes = Buffer.byteLength(head);
  const out = Buffer.allocUnsafe(headBytes + 1 + message.length);
  out.write(head, 0);
  out[headBytes] = 0x20;
  message.copy(out, headBytes + 1);
  return out;
}
