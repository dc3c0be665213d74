import { LogRecord, type RecordOrigin } from '../record.js';
import type { SourceCounters } from '../stats.js';

/**
 * A LogRecord as the payload of a queue record:
 * `u16 originLength, origin, f64 receivedAt, [u16 streamLength, stream, f64 streamPos, [earlier]] raw bytes`,
 * where origin is `u8 flags (1 text, 2 lenient), u8 facility, u8 severity, then source, from,
 * hostname, appName`, each a u16 length and UTF-8, and the stream part is there when the top bit of
 * originLength is set. The earlier positions (`u8 count`, then for each `u16 length, stream, f64
 * pos`) are there when the top bit of streamLength is set. The origin of a connection or file is
 * encoded once and reused.
 */

const HAS_STREAM = 0x8000;
const HAS_EARLIER = 0x8000;

function streamBytes(r: LogRecord): number {
  if (r.stream === undefined) return 0;
  let n = 2 + Buffer.byteLength(r.stream) + 8;
  if (r.earlier) {
    n += 1;
    for (const [k] of r.earlier) n += 2 + Buffer.byteLength(k) + 8;
  }
  return n;
}

const TEXT = 1;
const LENIENT = 2;
const encodedOrigins = new WeakMap<RecordOrigin, Buffer>();

function encodeOrigin(o: RecordOrigin): Buffer {
  let b = encodedOrigins.get(o);
  if (b) return b;
  const strings = [o.source, o.from, o.hostname ?? '', o.appName ?? ''].map((s) => Buffer.from(s.slice(0, 4096)));
  b = Buffer.alloc(3 + strings.reduce((n, s) => n + 2 + s.length, 0));
  b[0] = (o.format === 'text' ? TEXT : 0) | (o.lenient ? LENIENT : 0);
  b[1] = o.facility ?? 1;
  b[2] = o.severity ?? 5;
  let at = 3;
  for (const s of strings) {
    b.writeUInt16LE(s.length, at);
    s.copy(b, at + 2);
    at += 2 + s.length;
  }
  encodedOrigins.set(o, b);
  return b;
}

/** Bytes `encodeInto` writes for `r`. */
export function encodedSize(r: LogRecord): number {
  if (r.encoded) return r.encoded.length;
  return 2 + encodeOrigin(r.origin).length + 8 + streamBytes(r) + r.raw.length;
}

/** Writes `r` into `out` at `at`; returns the position after it. */
export function encodeInto(r: LogRecord, out: Buffer, at: number): number {
  // A record that came from a queue file or the network in this format is copied as it is.
  if (r.encoded) return at + r.encoded.copy(out, at);
  const origin = encodeOrigin(r.origin);
  out.writeUInt16LE(origin.length | (r.stream === undefined ? 0 : HAS_STREAM), at);
  origin.copy(out, at + 2);
  out.writeDoubleLE(r.receivedAt, at + 2 + origin.length);
  let pos = at + 10 + origin.length;
  if (r.stream !== undefined) {
    pos = writePosition(out, pos, r.stream, r.streamPos, r.earlier ? HAS_EARLIER : 0);
    if (r.earlier) {
      out[pos++] = r.earlier.length;
      for (const [k, p] of r.earlier) pos = writePosition(out, pos, k, p, 0);
    }
  }
  return pos + r.raw.copy(out, pos);
}

/** `u16 length (| flag), stream, f64 pos` at `at`; returns the position after it. */
function writePosition(out: Buffer, at: number, stream: string, pos: number, flag: number): number {
  const len = out.write(stream, at + 2, 'utf8');
  out.writeUInt16LE(len | flag, at);
  out.writeDoubleLE(pos, at + 2 + len);
  return at + 2 + len + 8;
}

export function encodeRecord(r: LogRecord): Buffer {
  if (r.encoded) return r.encoded;
  const out = Buffer.allocUnsafe(encodedSize(r));
  encodeInto(r, out, 0);
  return out;
}

export class RecordDecodeError extends Error {
  override readonly name = 'RecordDecodeError';
}

/** The latest receive time taken as it is: the end of year 9999 (what a Date can print as ISO 8601). */
export const MAX_TIME = 253402300799999;

const isTime = (t: number) => t >= 0 && t <= MAX_TIME; // false for NaN too
/** A stream position: a whole number, not negative. */
export const isPosition = (p: unknown): boolean => Number.isSafeInteger(p) && (p as number) >= 0;

/**
 * Checks the fields the rest of sluice relies on, in a record that came from outside this process
 * (a queue file, a peer's sluice-protocol batch): a receive time that is not a time (NaN, infinite,
 * negative, past year 9999) becomes the time it is read, and a stream position that is not a whole
 * non-negative number drops the stream (the record is then written even if seen before). Each
 * repair is counted on the record's source, by reason. The record is then encoded anew.
 */
function repaired(
  r: LogRecord,
  receivedAt: number,
  stream: string | undefined,
  streamPos: number,
  earlier: [string, number][] | undefined,
): LogRecord {
  let time = receivedAt;
  if (!isTime(time)) {
    time = Date.now();
    r.origin.counters.repaired(r.origin.source, 'invalid_time');
  }
  const out = new LogRecord(r.raw, time, r.origin); // not `encoded`: written anew, as repaired
  if (stream !== undefined) {
    if (isPosition(streamPos)) out.setStream(stream, streamPos);
    else r.origin.counters.repaired(r.origin.source, 'invalid_stream_position');
  }
  if (out.stream !== undefined && earlier) {
    const sound = earlier.filter(([, p]) => isPosition(p));
    if (sound.length < earlier.length) r.origin.counters.repaired(r.origin.source, 'invalid_stream_position');
    out.setEarlier(sound);
  }
  return out;
}

/**
 * A `u16 length, stream, f64 pos` at `at`: the stream, its position, where it ends, and whether the
 * length's top bit (earlier positions follow) is set.
 */
function readPosition(payload: Buffer, at: number): [string, number, number, boolean] {
  if (payload.length < at + 2) throw new RecordDecodeError('stream part cut short');
  const field = payload.readUInt16LE(at);
  const len = field & ~HAS_EARLIER;
  if (payload.length < at + 2 + len + 8) throw new RecordDecodeError('stream part cut short');
  const end = at + 2 + len + 8;
  return [
    payload.toString('utf8', at + 2, at + 2 + len),
    payload.readDoubleLE(at + 2 + len),
    end,
    !!(field & HAS_EARLIER),
  ];
}

/** Turns payloads back into LogRecords, sharing one origin object per distinct origin. */
export class RecordDecoder {
  private readonly origins = new Map<string, RecordOrigin>();
  private last: { bytes: Buffer; origin: RecordOrigin } | null = null;

  /** `counters`: where the decoded records' sources are counted (repairs here, drops and parse errors later). */
  constructor(private readonly counters: SourceCounters) {}

  decode(payload: Buffer): LogRecord {
    if (payload.length < 2) throw new RecordDecodeError('payload shorter than its origin length');
    const lengthField = payload.readUInt16LE(0);
    const originLength = lengthField & ~HAS_STREAM;
    if (payload.length < 2 + originLength + 8 || originLength < 11)
      throw new RecordDecodeError('payload shorter than its header');
    const originBytes = payload.subarray(2, 2 + originLength);
    let origin: RecordOrigin | undefined;
    // Consecutive records mostly share their origin: compare bytes before building a map key.
    if (this.last?.bytes.equals(originBytes)) {
      origin = this.last.origin;
    } else {
      const key = originBytes.toString('latin1');
      origin = this.origins.get(key);
      if (!origin) {
        origin = this.decodeOrigin(originBytes);
        if (this.origins.size > 10_000) this.origins.clear();
        this.origins.set(key, origin);
      }
      this.last = { bytes: Buffer.from(originBytes), origin };
    }
    const receivedAt = payload.readDoubleLE(2 + originLength);
    let rawAt = 10 + originLength;
    let stream: string | undefined;
    let streamPos = -1;
    let earlier: [string, number][] | undefined;
    if (lengthField & HAS_STREAM) {
      let hasEarlier: boolean;
      [stream, streamPos, rawAt, hasEarlier] = readPosition(payload, rawAt);
      if (hasEarlier) {
        if (payload.length < rawAt + 1) throw new RecordDecodeError('earlier positions cut short');
        const count = payload[rawAt++]!;
        earlier = [];
        for (let i = 0; i < count; i++) {
          let k: string;
          let p: number;
          [k, p, rawAt] = readPosition(payload, rawAt);
          earlier.push([k, p]);
        }
      }
    }
    const r = new LogRecord(payload.subarray(rawAt), receivedAt, origin);
    const badEarlier = earlier?.some(([, p]) => !isPosition(p)) ?? false;
    if (!isTime(receivedAt) || (stream !== undefined && !isPosition(streamPos)) || badEarlier) {
      return repaired(r, receivedAt, stream, streamPos, earlier);
    }
    if (stream !== undefined) {
      r.stream = stream;
      r.streamPos = streamPos;
      r.earlier = earlier;
    }
    r.encoded = payload;
    return r;
  }

  private decodeOrigin(b: Buffer): RecordOrigin {
    const strings: string[] = [];
    let at = 3;
    for (let i = 0; i < 4; i++) {
      if (at + 2 > b.length) throw new RecordDecodeError('origin is cut short');
      const len = b.readUInt16LE(at);
      if (at + 2 + len > b.length) throw new RecordDecodeError('origin string runs past its end');
      strings.push(b.toString('utf8', at + 2, at + 2 + len));
      at += 2 + len;
    }
    const [source, from, hostname, appName] = strings as [string, string, string, string];
    const text = (b[0]! & TEXT) !== 0;
    // A text line's facility and severity outside syslog's ranges (a damaged or forged origin).
    if (text && (b[1]! > 23 || b[2]! > 7)) this.counters.repaired(source, 'invalid_priority');
    return {
      source,
      from,
      format: text ? 'text' : 'syslog',
      lenient: (b[0]! & LENIENT) !== 0,
      counters: this.counters,
      hostname: hostname || undefined,
      appName: appName || undefined,
      facility: text ? Math.min(b[1]!, 23) : undefined,
      severity: text ? Math.min(b[2]!, 7) : undefined,
    };
  }
}
