import type { SourceCounters } from './stats.js';
import { headerlessMessage, parseSyslog, SyslogParseError, type SyslogMessage } from './parser/syslog.js';

/** Where records came from; one object shared by every record of a connection or file. */
export interface RecordOrigin {
  /** Name of the sluice source. */
  readonly source: string;
  /** Sender address, or the path of a followed file. */
  readonly from: string;
  /** `syslog`: the bytes are a syslog message. `text`: a plain line, wrapped with the fields below. */
  readonly format: 'syslog' | 'text';
  readonly lenient: boolean;
  /** Where the source's counters live: parse errors, repairs and drops are reported there by `source`. */
  readonly counters: SourceCounters;
  /** For text lines. */
  readonly hostname?: string;
  readonly appName?: string;
  readonly facility?: number;
  readonly severity?: number;
}

/** Earlier positions a record keeps (the newest): each is one more reader that crashed holding it. */
export const MAX_EARLIER = 16;

/**
 * One message. The raw bytes travel untouched; the syslog fields are parsed only when a filter,
 * a template or an output format asks for them, and then once.
 */
export class LogRecord {
  private parsed: SyslogMessage | undefined;
  /** Its sequence number in a reliable queue's file (stable across restarts); -1 elsewhere. */
  queueSeq = -1;
  /** Its bytes in the queue record format, when it was read in that format (so it is not encoded again). */
  encoded: Buffer | undefined = undefined;
  /**
   * Where it sits in a stream that can be read again: a followed file (the line's offset) or an
   * agent's queue (its sequence number). A record seen twice has the same (stream, position), so a
   * destination that deduplicates writes it once.
   */
  stream: string | undefined = undefined;
  streamPos = -1;
  /**
   * Positions the same message had before, in streams of earlier readers, when it was read again
   * without knowing whether those copies were written (a NATS message delivered again after its
   * reader crashed). A deduplicating destination drops the record when any of them was written.
   */
  earlier: (readonly [stream: string, pos: number])[] | undefined = undefined;

  setStream(stream: string, pos: number): void {
    this.stream = stream;
    this.streamPos = pos;
    this.encoded = undefined; // the stored form changes
  }

  setEarlier(earlier: (readonly [string, number])[]): void {
    this.earlier = earlier.length > 0 ? earlier.slice(-MAX_EARLIER) : undefined;
    this.encoded = undefined;
  }

  constructor(
    readonly raw: Buffer,
    readonly receivedAt: number,
    readonly origin: RecordOrigin,
  ) {
    this.parsed = undefined;
  }

  get message(): SyslogMessage {
    return (this.parsed ??= this.parse());
  }

  private parse(): SyslogMessage {
    const o = this.origin;
    if (o.format === 'text') {
      return {
        ...headerlessMessage(o.facility ?? 1, o.severity ?? 5, this.raw.toString('utf8')),
        hostname: o.hostname ?? null,
        appName: o.appName ?? null,
      };
    }
    try {
      return parseSyslog(this.raw, { lenient: o.lenient, referenceDate: new Date(this.receivedAt) });
    } catch (e) {
      if (!(e instanceof SyslogParseError)) throw e;
      o.counters.parseError(o.source);
      // Unparseable input is still delivered, whole, as the message of a user.notice record.
      return headerlessMessage(1, 5, this.raw.toString('utf8').replace(/\r?\n$/, ''));
    }
  }
}
