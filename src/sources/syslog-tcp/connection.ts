import type net from 'node:net';
import { FramingError, SyslogFrameDecoder } from '../../framing/syslog-frame-decoder.js';
import { LogRecord, type RecordOrigin } from '../../record.js';
import { countDrop, type SourceStats } from '../../stats.js';

export interface SyslogStreamOptions {
  maxMessageSize: number;
  oversize: 'truncate' | 'drop';
  /** `unix`: NUL-terminated messages too (local sockets); default: octet counting or LF. */
  framing?: 'auto' | 'unix';
  /** The source's counters: received, truncated, oversize drops, connection errors. */
  stats: SourceStats;
  /** Queues a batch; a promise while the queues have no room (the socket is paused until it settles). */
  dispatch(records: LogRecord[]): Promise<unknown> | undefined;
  /** The connection is closed for `reason` (bytes that are not syslog framing): log it. */
  badFraming(reason: string): void;
}

/**
 * One syslog stream (TCP or TLS) on the receiving side: its own frame decoder, a batch per read,
 * and flow control: while a queue has no room the socket is paused, so the sender feels TCP
 * backpressure. Bad framing closes this connection only, after the frames decoded before it.
 */
export class SyslogStreamConnection {
  private readonly decoder: SyslogFrameDecoder;
  private readonly frames: Buffer[] = [];
  private truncated = 0;
  private dropped = 0;

  constructor(
    private readonly socket: net.Socket,
    private readonly origin: RecordOrigin,
    private readonly options: SyslogStreamOptions,
  ) {
    this.decoder = new SyslogFrameDecoder({
      maxMessageSize: options.maxMessageSize,
      oversize: options.oversize,
      framing: options.framing,
    });
  }

  onData(chunk: Buffer) {
    try {
      this.decoder.push(chunk, this.frames);
    } catch (err) {
      if (err instanceof FramingError) return this.fail(err);
      throw err;
    }
    this.deliver();
  }

  /** The sender closed its side: what is left in the decoder is the last message, if it is one. */
  onEnd() {
    try {
      this.decoder.end(this.frames);
    } catch (err) {
      if (err instanceof FramingError) return this.fail(err);
      throw err;
    }
    this.deliver();
    this.socket.end();
  }

  private deliver(): void {
    const { decoder, frames, options } = this;
    const stats = options.stats;
    if (decoder.truncated !== this.truncated) {
      stats.truncated += decoder.truncated - this.truncated;
      this.truncated = decoder.truncated;
    }
    if (decoder.dropped !== this.dropped) {
      countDrop(stats.dropped, 'oversize', decoder.dropped - this.dropped);
      this.dropped = decoder.dropped;
    }
    if (frames.length === 0) return;
    const now = Date.now();
    const batch = new Array<LogRecord>(frames.length);
    let bytes = 0;
    for (let i = 0; i < frames.length; i++) {
      const f = frames[i]!;
      bytes += f.length;
      batch[i] = new LogRecord(f, now, this.origin);
    }
    frames.length = 0;
    stats.received += batch.length;
    stats.receivedBytes += bytes;
    const wait = options.dispatch(batch);
    if (wait) {
      // Flow control: read nothing more from this sender until the queues have room.
      const socket = this.socket;
      socket.pause();
      void wait.then(() => {
        if (!socket.destroyed) socket.resume();
      });
    }
  }

  private fail(err: FramingError): void {
    this.options.stats.connectionErrors++;
    this.options.badFraming(err.message);
    this.deliver(); // frames decoded before the bad bytes are good
    this.socket.destroy();
  }
}
