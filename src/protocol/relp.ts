/**
 * RELP framing as librelp 1.11 speaks it (docs/protocol.md): `TXNR SP COMMAND SP DATALEN [SP DATA] LF`,
 * DATA binary-safe, DATALEN 0 with neither the space nor data.
 */

export const RELP_MAX_TXNR = 999_999_999;
export const RELP_OFFERS = 'relp_version=0\nrelp_software=sluice,https://example.invalid/sluice\ncommands=syslog';

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

/** True for the data `200 OK`, the answer that comes by the thousand. */
export function isOk(data: Buffer): boolean {
  return data.length === 6 && data[0] === 0x32 && data[1] === 0x30 && data[2] === 0x30 && data[3] === 0x20 && data[4] === 0x4f && data[5] === 0x4b;
}

/**
 * Splits a byte stream into frames. `maxData` bounds DATALEN; anything malformed throws RelpError
 * (the caller closes that connection).
 */
export class RelpParser {
  private buf: Buffer = Buffer.alloc(0);

  constructor(private readonly maxData: number) {}

  push(chunk: Buffer, out: RelpFrame[]): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    let at = 0;
    for (;;) {
      const f = this.parseOne(at);
      if (!f) break;
      out.push(f.frame);
      at = f.next;
    }
    this.buf = at === 0 ? this.buf : this.buf.subarray(at);
  }

  /** Bytes held waiting for the rest of a frame. */
  get pending(): number {
    return this.buf.length;
  }

  private parseOne(start: number): { frame: RelpFrame; next: number } | null {
    const b = this.buf;
    let i = start;
    const number = (what: string, maxDigits: number): number | null => {
      const from = i;
      let v = 0;
      while (i < b.length && b[i]! >= 0x30 && b[i]! <= 0x39) {
        v = v * 10 + (b[i]! - 0x30);
        i++;
        if (i - from > maxDigits) throw new RelpError(`${what} longer than ${maxDigits} digits`);
      }
      if (i === b.length) return null; // need more
      if (i === from) throw new RelpError(`expected ${what}, got byte 0x${b[i]!.toString(16)}`);
      return v;
    };
    const txnr = number('transaction number', 9);
    if (txnr === null) return null;
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
    i++;
    const len = number('data length', 9);
    if (len === null) return null;
    if (len > this.maxData) throw new RelpError(`data length ${len} exceeds the limit of ${this.maxData}`);
    let data: Buffer;
    if (len === 0) {
      data = Buffer.alloc(0);
    } else {
      if (b[i] !== SP) throw new RelpError('expected a space before the data');
      i++;
      if (b.length < i + len + 1) return null;
      data = Buffer.from(b.subarray(i, i + len));
      i += len;
    }
    if (i >= b.length) return null;
    if (b[i] !== LF) throw new RelpError('frame does not end with LF');
    return { frame: { txnr, command, data }, next: i + 1 };
  }
}
