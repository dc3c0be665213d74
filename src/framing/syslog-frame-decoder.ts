/**
 * RFC 6587 stream framing, detected once per connection: octet counting (`LEN SP MSG`) when the
 * first byte is a digit, LF-terminated otherwise. On a local socket (`unix`), messages may also end
 * with a NUL byte, as glibc's syslog(3) sends them over a stream socket: a stream whose first chunk
 * holds a NUL is NUL-terminated (an LF inside a message is kept); one without ends messages at LF or
 * NUL (util-linux `logger` ends them with LF). A pure codec: it never touches a socket.
 */

export type OversizePolicy = 'truncate' | 'drop';
export type Framing = 'unknown' | 'octet-counting' | 'lf' | 'nul';

export class FramingError extends Error {
  override readonly name = 'FramingError';
}

export interface FrameDecoderOptions {
  maxMessageSize: number;
  oversize: OversizePolicy;
  /**
   * `lf` skips detection: every byte is text (for files). `unix`: detection that also knows
   * NUL-terminated messages (local sockets). Default (`auto`): octet counting or LF.
   */
  framing?: 'auto' | 'lf' | 'unix';
}

const LF = 0x0a;
const NUL = 0x00;
const CR = 0x0d;
const SP = 0x20;
// 10 digits would already allow more than 4 GB in one frame: no real sender needs that.
const MAX_LENGTH_DIGITS = 10;

function describeByte(b: number): string {
  const hex = `0x${b.toString(16).padStart(2, '0')}`;
  if (b === 0x16) return `${hex} (looks like a TLS handshake: is the client using TLS against a plain port?)`;
  return hex;
}

export class SyslogFrameDecoder {
  framing: Framing = 'unknown';
  /** Messages cut to maxMessageSize. */
  truncated = 0;
  /** Messages thrown away because they were larger than maxMessageSize. */
  dropped = 0;

  private readonly max: number;
  private readonly truncate: boolean;
  // LF mode: bytes of the current line seen so far (only when it spans chunks).
  private partial: Buffer[] = [];
  private partialLength = 0;
  // Set while discarding the tail of an oversized frame.
  private skipping = false;
  // Octet-counting mode.
  private lengthDigits = '';
  private remaining = -1; // bytes of the current body still to come; -1 while reading the length
  private frameOversize = false;

  /** LF framing: stream offset of the bytes pushed so far, and of the start of the current line. */
  private consumed = 0;
  private lineStart = 0;
  /** Where `emit` reports each frame's line start, during a push that asked for positions. */
  private positions: number[] | null = null;

  /** Sets the stream offset of the next byte pushed (LF framing), for the positions `push` reports. */
  seek(offset: number): void {
    this.consumed = offset;
    this.lineStart = offset;
  }

  /** Where a text message ends: LF; NUL; or either (a local socket that sent no NUL in its first chunk). */
  private terminator: 'lf' | 'nul' | 'either' = 'lf';
  private readonly unix: boolean;

  constructor(options: FrameDecoderOptions) {
    this.max = options.maxMessageSize;
    this.truncate = options.oversize === 'truncate';
    this.unix = options.framing === 'unix';
    if (options.framing === 'lf') this.framing = 'lf';
  }

  /** Bytes taken in but not yet part of an emitted frame (an unfinished line or octet frame). */
  get pendingBytes(): number {
    if (this.skipping) return 0;
    return this.framing === 'octet-counting' ? this.partialLength + this.lengthDigits.length : this.partialLength;
  }

  /**
   * Appends every complete frame in `chunk` to `out`, and with `positions` (LF framing) the stream
   * offset where each frame's line starts. Throws FramingError on a stream that cannot be syslog.
   */
  push(chunk: Buffer, out: Buffer[], positions?: number[]): void {
    if (chunk.length === 0) return;
    this.positions = positions ?? null;
    if (this.framing === 'unknown') {
      const b = chunk[0]!;
      if (b >= 0x30 && b <= 0x39) this.framing = 'octet-counting';
      else if (this.unix && chunk.includes(0)) {
        this.framing = 'nul';
        this.terminator = 'nul';
      } else if (b === 0x09 || (b >= 0x20 && b !== 0x7f)) {
        this.framing = 'lf';
        if (this.unix) this.terminator = 'either';
      } else
        throw new FramingError(`stream starts with byte ${describeByte(b)}, which is neither an octet count nor text`);
    }
    if (this.framing === 'octet-counting') this.pushOctet(chunk, out);
    else this.pushLf(chunk, out);
  }

  /** The peer closed: a last LF frame without its newline is still a message; a cut octet frame is not. */
  end(out: Buffer[], positions?: number[]): void {
    this.positions = positions ?? null;
    if (this.framing === 'lf' || this.framing === 'nul') {
      if (this.partialLength > 0 && !this.skipping) this.emit(Buffer.concat(this.partial, this.partialLength), out);
      this.lineStart = this.consumed; // what follows starts a new line
    } else if (this.framing === 'octet-counting' && (this.remaining > 0 || this.lengthDigits.length > 0)) {
      this.reset();
      throw new FramingError('connection closed in the middle of an octet-counted frame');
    }
    this.reset();
  }

  private reset(): void {
    this.partial = [];
    this.partialLength = 0;
    this.skipping = false;
    this.lengthDigits = '';
    this.remaining = -1;
  }

  private emit(frame: Buffer, out: Buffer[]): void {
    // One trailing LF or CRLF is transport (senders such as loggen -P put one inside the octet frame).
    let end = frame.length;
    if (end > 0 && frame[end - 1] === LF) end--;
    if (end > 0 && frame[end - 1] === CR) end--;
    if (end === 0) return;
    out.push(end === frame.length ? frame : frame.subarray(0, end));
    this.positions?.push(this.lineStart);
  }

  private pushLf(chunk: Buffer, out: Buffer[]): void {
    let start = 0;
    const n = chunk.length;
    const base = this.consumed;
    this.consumed += n;
    // With either terminator, where the next NUL is (looked up again only once passed). The first
    // NUL settles it: the sender ends its messages with NUL, and an LF is part of a message.
    let nul = this.terminator === 'either' ? chunk.indexOf(NUL) : -1;
    while (start < n) {
      let nl = chunk.indexOf(this.terminator === 'nul' ? NUL : LF, start);
      if (this.terminator === 'either' && nul >= 0) {
        if (nul < start) nul = chunk.indexOf(NUL, start);
        if (nul >= 0 && (nl < 0 || nul < nl)) {
          nl = nul;
          this.terminator = 'nul';
          this.framing = 'nul';
        }
      }
      if (nl < 0) {
        this.holdLf(chunk.subarray(start), out);
        return;
      }
      if (this.skipping) {
        this.skipping = false;
      } else if (this.partialLength > 0) {
        this.holdLf(chunk.subarray(start, nl), out);
        if (!this.skipping) this.emit(Buffer.concat(this.partial, this.partialLength), out);
        this.skipping = false;
      } else if (nl - start > this.max) {
        this.oversized(chunk.subarray(start, start + this.max), out);
      } else {
        this.emit(chunk.subarray(start, nl), out);
      }
      this.partial = [];
      this.partialLength = 0;
      start = nl + 1;
      this.lineStart = base + start;
    }
  }

  /** Keeps part of an unfinished line, cutting it at the size limit. */
  private holdLf(piece: Buffer, out: Buffer[]): void {
    if (this.skipping || piece.length === 0) return;
    const room = this.max - this.partialLength;
    if (piece.length <= room) {
      this.partial.push(piece);
      this.partialLength += piece.length;
      return;
    }
    this.partial.push(piece.subarray(0, room));
    this.partialLength += room;
    this.oversized(Buffer.concat(this.partial, this.partialLength), out);
    this.partial = [];
    this.partialLength = 0;
    this.skipping = true;
  }

  private oversized(head: Buffer, out: Buffer[]): void {
    if (this.truncate) {
      this.truncated++;
      this.emit(head, out);
    } else {
      this.dropped++;
    }
  }

  private pushOctet(chunk: Buffer, out: Buffer[]): void {
    let pos = 0;
    const n = chunk.length;
    while (pos < n) {
      if (this.remaining < 0) {
        pos = this.readLength(chunk, pos);
        continue;
      }
      const take = Math.min(this.remaining, n - pos);
      if (this.partialLength === 0 && take === this.remaining && !this.frameOversize) {
        this.emit(chunk.subarray(pos, pos + take), out); // whole frame in this chunk: no copy
      } else {
        const room = this.frameOversize && !this.truncate ? 0 : this.max - this.partialLength;
        const keep = Math.min(take, room);
        if (keep > 0) {
          this.partial.push(chunk.subarray(pos, pos + keep));
          this.partialLength += keep;
        }
        if (take === this.remaining) {
          if (this.frameOversize) this.oversized(Buffer.concat(this.partial, this.partialLength), out);
          else this.emit(Buffer.concat(this.partial, this.partialLength), out);
        }
      }
      this.remaining -= take;
      pos += take;
      if (this.remaining === 0) {
        this.remaining = -1;
        this.partial = [];
        this.partialLength = 0;
      }
    }
  }

  /** Reads MSG-LEN (NONZERO-DIGIT *DIGIT SP); returns the position after what it consumed. */
  private readLength(chunk: Buffer, pos: number): number {
    const n = chunk.length;
    while (pos < n) {
      const b = chunk[pos++]!;
      // A stray newline between frames (some senders end each frame with one) is harmless.
      if ((b === LF || b === CR) && this.lengthDigits.length === 0) continue;
      if (b === SP) {
        if (this.lengthDigits.length === 0) throw new FramingError('octet-counted frame has an empty length');
        this.remaining = Number(this.lengthDigits);
        this.frameOversize = this.remaining > this.max;
        this.lengthDigits = '';
        return pos;
      }
      if (b < 0x30 || b > 0x39) {
        throw new FramingError(
          `expected an octet count but found byte ${describeByte(b)}` +
            (this.lengthDigits ? ` after "${this.lengthDigits}"` : '') +
            ' (a client cannot switch from octet counting to LF framing)',
        );
      }
      if (this.lengthDigits.length === 0 && b === 0x30) throw new FramingError('octet count has a leading zero');
      if (this.lengthDigits.length >= MAX_LENGTH_DIGITS) throw new FramingError('octet count has more than 10 digits');
      this.lengthDigits += String.fromCharCode(b);
    }
    return pos;
  }
}
