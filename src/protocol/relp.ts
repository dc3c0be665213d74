/**
 * RELP framing as librelp 1.11 speaks it (docs/protocol.md): `TXNR SP COMMAND SP DATALEN [SP DATA] LF`,
 * DATA binary-safe, DATALEN 0 with neither the space nor data.
 */
import { version } from '../version.js';

export const RELP_MAX_TXNR = 999_999_999;

/** What sluice offers in `open` and answers to it: as librelp, with sluice's name and version. */
export const RELP_OFFERS = `relp_version=0\nrelp_software=sluice,${version()}\ncommands=syslog`;

export interface RelpFrame {
  txnr: number;
  command: string;
  data: Buffer;
}

export class RelpError extends Error {}

const SP = 0x20;
const LF = 0x0a;

/** Serializes one frame. */
export function relpFrame(txnr: number, command: string, data: Buffer | string = ''): Buffer {
  const body = typeof data === 'string' ? Buffer.from(data) : data;
  const head = Buffer.from(body.length > 0 ? `${txnr} ${command} ${body.length} ` : `${txnr} ${command} 0`);
  return Buffer.concat([head, body, Buffer.from('\n')]);
}

/**
 * The same `rsp` with `text` for each of `txnrs`, framed as relpFrame frames them, in one buffer
 * (a window's answers: one allocation and one write, not four allocations an answer).
 */
export function relpResponses(txnrs: readonly number[], text: string): Buffer {
  const length = Buffer.byteLength(text);
  const tail = length > 0 ? ` rsp ${length} ${text}\n` : ' rsp 0\n';
  let out = '';
  for (const t of txnrs) out += t + tail;
  return Buffer.from(out);
}

const SYSLOG_CMD = Buffer.from(' syslog ');

/** Decimal digits of a non-negative integer. */
function digits(n: number): number {
  let d = 1;
  while (n >= 10) {
    n = Math.floor(n / 10);
    d++;
  }
  return d;
}

/** Writes `n` in decimal at `at`; returns the position after it. */
function writeDigits(out: Buffer, at: number, n: number): number {
  const d = digits(n);
  for (let i = at + d - 1; i >= at; i--) {
    out[i] = 0x30 + (n % 10);
    n = Math.floor(n / 10);
  }
  return at + d;
}

/**
 * `syslog` commands for `bodies`, numbered from `firstTxnr`, in one buffer (one socket write): the
 * same bytes as `relpFrame(firstTxnr + i, 'syslog', bodies[i])` one after another, measured and
 * written without building strings (the client's hot path).
 */
export function syslogFrames(firstTxnr: number, bodies: readonly Buffer[]): Buffer {
  let total = 0;
  for (let i = 0; i < bodies.length; i++) {
    const len = bodies[i]!.length;
    // "TXNR syslog LEN DATA\n", or "TXNR syslog 0\n"
    total += digits(firstTxnr + i) + SYSLOG_CMD.length + digits(len) + (len > 0 ? 1 + len : 0) + 1;
  }
  const out = Buffer.allocUnsafe(total);
  let at = 0;
  for (let i = 0; i < bodies.length; i++) {
    const body = bodies[i]!;
    at = writeDigits(out, at, firstTxnr + i);
    at += SYSLOG_CMD.copy(out, at);
    at = writeDigits(out, at, body.length);
    if (body.length > 0) {
      out[at++] = SP;
      at += body.copy(out, at);
    }
    out[at++] = LF;
  }
  return out;
}

/** `rsp` data: a three-digit code, a space, a text; more lines may follow (offers). */
export function parseRsp(data: Buffer): { code: number; text: string } {
  const s = data.toString('utf8');
  const m = /^(\d{3})(?: ([^\n]*))?/.exec(s);
  if (!m) return { code: 0, text: s.slice(0, 80) };
  return { code: Number(m[1]), text: m[2] ?? '' };
}

const COMMANDS = ['rsp', 'syslog', 'open', 'close', 'serverclose'].map((c) => ({ c, bytes: Buffer.from(c) }));

/** The command string without allocating one, for the commands that come by the thousand. */
function knownCommand(b: Buffer, from: number, to: number): string | null {
  for (const { c, bytes } of COMMANDS) {
    if (bytes.length === to - from && b.compare(bytes, 0, bytes.length, from, to) === 0) return c;
  }
  return null;
}

/** `TXNR` is followed by these bytes in the answer that comes by the thousand: ` rsp 6 200 OK\n`. */
const RSP_OK_TAIL = Buffer.from(' rsp 6 200 OK\n');

/**
 * Splits a byte stream into frames. `maxData` bounds DATALEN; anything malformed throws RelpError
 * (the caller closes that connection).
 */
export class RelpParser {
  private buf: Buffer = Buffer.alloc(0);
  /** Where the frame that parseOne just returned ends (or where it stopped). */
  private pos = 0;

  constructor(private readonly maxData: number) {}

  push(chunk: Buffer, out: RelpFrame[]): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    let at = 0;
    for (;;) {
      const f = this.parseOne(at);
      if (!f) break;
      out.push(f);
      at = this.pos;
    }
    this.buf = at === 0 ? this.buf : this.buf.subarray(at);
  }

  /**
   * As push, for a client reading answers: every `TXNR rsp 6 200 OK` goes to `ok(txnr)` without
   * building a frame, every other frame to `other`, all in the order they came. Either callback may
   * return true to stop reading (the rest of the chunk is then dropped: the session is over).
   */
  pushAnswers(
    chunk: Buffer,
    ok: (txnr: number) => boolean | undefined,
    other: (f: RelpFrame) => boolean | undefined,
  ): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const b = this.buf;
    const tail = RSP_OK_TAIL.length;
    let at = 0;
    for (;;) {
      // The common answer, read in place.
      let i = at;
      let txnr = 0;
      while (i < b.length && i - at < 10 && b[i]! >= 0x30 && b[i]! <= 0x39) txnr = txnr * 10 + (b[i++]! - 0x30);
      if (i > at && i - at <= 9 && i + tail <= b.length) {
        let j = 0;
        while (j < tail && b[i + j] === RSP_OK_TAIL[j]) j++;
        if (j === tail) {
          at = i + tail;
          if (ok(txnr)) return;
          continue;
        }
      }
      // Anything else, or a frame not complete yet.
      const f = this.parseOne(at);
      if (!f) break;
      at = this.pos;
      if (other(f)) return;
    }
    this.buf = at === 0 ? b : b.subarray(at);
  }

  /** Bytes held waiting for the rest of a frame. */
  get pending(): number {
    return this.buf.length;
  }

  /** A decimal number at `pos` of at most `maxDigits` digits; null when the buffer ends first. */
  private number(what: string, maxDigits: number): number | null {
    const b = this.buf;
    const from = this.pos;
    let i = from;
    let v = 0;
    while (i < b.length && b[i]! >= 0x30 && b[i]! <= 0x39) {
      v = v * 10 + (b[i]! - 0x30);
      i++;
      if (i - from > maxDigits) throw new RelpError(`${what} longer than ${maxDigits} digits`);
    }
    this.pos = i;
    if (i === b.length) return null; // need more
    if (i === from) throw new RelpError(`expected ${what}, got byte 0x${b[i]!.toString(16)}`);
    return v;
  }

  /** The frame starting at `start`, with `pos` set past it; null when it is not complete yet. */
  private parseOne(start: number): RelpFrame | null {
    const b = this.buf;
    this.pos = start;
    const txnr = this.number('transaction number', 9);
    if (txnr === null) return null;
    let i = this.pos;
    if (b[i] !== SP) throw new RelpError('expected a space after the transaction number');
    i++;
    const cmdFrom = i;
    while (i < b.length && b[i] !== SP && b[i] !== LF) {
      const c = b[i]!;
      if (!((c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a))) throw new RelpError('command is not letters');
      i++;
      if (i - cmdFrom > 32) throw new RelpError('command longer than 32 letters');
    }
    if (i === b.length) return null;
    if (b[i] !== SP || i === cmdFrom) throw new RelpError('expected a command and a space');
    const command = knownCommand(b, cmdFrom, i) ?? b.toString('latin1', cmdFrom, i);
    this.pos = i + 1;
    const len = this.number('data length', 9);
    if (len === null) return null;
    i = this.pos;
    if (len > this.maxData) throw new RelpError(`data length ${len} exceeds the limit of ${this.maxData}`);
    let data: Buffer;
    if (len === 0) {
      data = EMPTY;
    } else {
      if (b[i] !== SP) throw new RelpError('expected a space before the data');
      i++;
      if (b.length < i + len + 1) return null;
      data = Buffer.from(b.subarray(i, i + len));
      i += len;
    }
    if (i >= b.length) return null;
    if (b[i] !== LF) throw new RelpError('frame does not end with LF');
    this.pos = i + 1;
    return { txnr, command, data };
  }
}

const EMPTY = Buffer.alloc(0);
