import { deflateRawSync, inflateRawSync } from 'node:zlib';

/**
 * The sluice protocol's frames (docs/protocol.md). Control frames are JSON text frames; batches are
 * binary: a 24-byte header, then the records, each `u32 length` + a queue record payload
 * (src/protocol/record-codec.ts), optionally deflated as a whole.
 */

export const SUBPROTOCOL = 'sluice.v1';
export const PROTOCOL_VERSION = 1;
export const PATH = '/sluice/v1';
export const BATCH_MAGIC = 0x31424c53; // "SLB1"
export const BATCH_HEADER = 24;
export const FLAG_DEFLATE = 1;

/** WebSocket close codes (4000-4999 are the application's). */
export const CLOSE = {
  normal: 1000,
  goingAway: 1001,
  internal: 1011,
  /** Garbage or an invalid frame: terminal for this connection; the client reconnects with backoff. */
  badFrame: 4000,
  /** Bad or missing token: terminal, the client backs off long. */
  unauthorized: 4001,
  /** A frame over the server's max_frame_size: terminal. */
  tooLarge: 4002,
  /** Out of order: no hello, a second hello, an ack from a client, a sequence gap. */
  protocol: 4003,
  /** No hello in time. */
  handshakeTimeout: 4004,
  /** The server cannot take more now (load shedding, shutting down): retry. */
  retryLater: 4008,
} as const;

export type ErrorCode =
  | 'bad_frame'
  | 'unauthorized'
  | 'too_large'
  | 'protocol'
  | 'retry_later'
  | 'internal'
  | 'version';

export interface Hello {
  type: 'hello';
  versions: number[];
  sender: string;
  compression: string[];
}

export interface Welcome {
  type: 'welcome';
  version: number;
  /** Highest sequence of this sender the server has committed; -1 for none. */
  resume: number;
  compression: 'deflate' | 'none';
  /** Batches the client may have unacknowledged at once. */
  window: number;
  maxFrameBytes: number;
}

export interface Ack {
  type: 'ack';
  /** Every record of this sender up to and including `seq` is committed. */
  seq: number;
}

export interface ErrorFrame {
  type: 'error';
  code: ErrorCode;
  retryable: boolean;
  message: string;
}

export type Control = Hello | Welcome | Ack | ErrorFrame;

export class WireError extends Error {}

export function parseControl(text: string): Control {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new WireError('control frame is not JSON');
  }
  if (typeof v !== 'object' || v === null || typeof (v as { type?: unknown }).type !== 'string')
    throw new WireError('control frame without a type');
  const c = v as Record<string, unknown>;
  switch (c.type) {
    case 'hello':
      if (!Array.isArray(c.versions) || !c.versions.every((x) => Number.isInteger(x)))
        throw new WireError('hello: versions must be integers');
      if (typeof c.sender !== 'string' || c.sender.length === 0 || c.sender.length > 200)
        throw new WireError('hello: sender must be a string of 1 to 200 characters');
      if (!Array.isArray(c.compression) || !c.compression.every((x) => typeof x === 'string'))
        throw new WireError('hello: compression must be a list');
      return c as unknown as Hello;
    case 'welcome':
      return c as unknown as Welcome;
    case 'ack':
      if (!Number.isSafeInteger(c.seq)) throw new WireError('ack: seq must be an integer');
      return c as unknown as Ack;
    case 'error':
      return c as unknown as ErrorFrame;
    default:
      throw new WireError(`unknown control frame type ${JSON.stringify(c.type).slice(0, 40)}`);
  }
}

/** One batch: consecutive sequence numbers from `firstSeq`. */
export function encodeBatch(firstSeq: number, payloads: Buffer[], deflate: boolean): Buffer {
  let rawLength = 0;
  for (const p of payloads) rawLength += 4 + p.length;
  const body = Buffer.allocUnsafe(rawLength);
  let at = 0;
  for (const p of payloads) {
    body.writeUInt32LE(p.length, at);
    p.copy(body, at + 4);
    at += 4 + p.length;
  }
  const data = deflate ? deflateRawSync(body, { level: 1 }) : body;
  const out = Buffer.allocUnsafe(BATCH_HEADER + data.length);
  out.writeUInt32LE(BATCH_MAGIC, 0);
  out[4] = deflate ? FLAG_DEFLATE : 0;
  out[5] = out[6] = out[7] = 0;
  out.writeUInt32LE(firstSeq % 2 ** 32, 8);
  out.writeUInt32LE(Math.floor(firstSeq / 2 ** 32), 12);
  out.writeUInt32LE(payloads.length, 16);
  out.writeUInt32LE(rawLength, 20);
  data.copy(out, BATCH_HEADER);
  return out;
}

export interface DecodedBatch {
  firstSeq: number;
  payloads: Buffer[];
  /** Bytes of the records, uncompressed. */
  rawLength: number;
}

/** Parses a batch frame; throws WireError on anything malformed, never reads out of bounds. */
export function decodeBatch(frame: Buffer, maxRawBytes: number): DecodedBatch {
  if (frame.length < BATCH_HEADER)
    throw new WireError(`batch frame of ${frame.length} bytes is shorter than its header`);
  if (frame.readUInt32LE(0) !== BATCH_MAGIC) throw new WireError('batch frame without its magic');
  const flags = frame[4]!;
  if ((flags & ~FLAG_DEFLATE) !== 0) throw new WireError(`unknown batch flags ${flags}`);
  const firstSeq = frame.readUInt32LE(8) + frame.readUInt32LE(12) * 2 ** 32;
  if (!Number.isSafeInteger(firstSeq)) throw new WireError('batch sequence out of range');
  const count = frame.readUInt32LE(16);
  const rawLength = frame.readUInt32LE(20);
  if (rawLength > maxRawBytes) throw new WireError(`batch of ${rawLength} bytes exceeds the limit of ${maxRawBytes}`);
  let body = frame.subarray(BATCH_HEADER);
  if (flags & FLAG_DEFLATE) {
    try {
      body = inflateRawSync(body, { maxOutputLength: Math.max(1, rawLength) });
    } catch (err) {
      throw new WireError(`batch does not inflate: ${(err as Error).message}`);
    }
  }
  if (body.length !== rawLength)
    throw new WireError(`batch body is ${body.length} bytes, its header says ${rawLength}`);
  if (count > rawLength / 4) throw new WireError(`batch claims ${count} records in ${rawLength} bytes`);
  const payloads = new Array<Buffer>(count);
  let at = 0;
  for (let i = 0; i < count; i++) {
    if (at + 4 > body.length) throw new WireError(`record ${i} of ${count} runs past the batch`);
    const len = body.readUInt32LE(at);
    if (at + 4 + len > body.length) throw new WireError(`record ${i} of ${count} runs past the batch`);
    payloads[i] = body.subarray(at + 4, at + 4 + len);
    at += 4 + len;
  }
  if (at !== body.length) throw new WireError(`${body.length - at} bytes after the last record`);
  return { firstSeq, payloads, rawLength };
}
