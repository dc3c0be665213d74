import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import type { Logger, RateLimitedLog } from '../../log.js';
import type { RecordDecoder } from '../../protocol/record-codec.js';
import {
  CLOSE,
  decodeBatch,
  parseControl,
  PROTOCOL_VERSION,
  WireError,
  type ErrorCode,
  type Welcome,
} from '../../protocol/sluice-wire.js';
import type { SourceStats } from '../../stats.js';

/** Batches an agent may have unacknowledged on one connection. */
export const WINDOW = 32;

/** What one agent connection needs from the source that accepted it. */
export interface AgentConnectionHost {
  readonly config: {
    handshake_timeout: number;
    idle_timeout: number;
    max_frame_size: number;
    max_inflight_bytes: number;
  };
  readonly stats: SourceStats;
  readonly quiet: RateLimitedLog;
  /** The highest sequence of `sender` durably taken (what the agent may skip), or -1. */
  resumeFrom(sender: string): number;
  /** Records that `sender`'s batches up to `seq` are durable in every queue. */
  commitMark(sender: string, seq: number): Promise<void>;
  /** A batch was not committed: what was queued after the durable mark is taken again when resent. */
  forgetQueued(sender: string): void;
  /** Queues what a batch holds that was not taken before; resolves once queued, to its commit. */
  dispatchBatch(
    sender: string,
    firstSeq: number,
    payloads: Buffer[],
    decoder: RecordDecoder,
  ): Promise<{ committed: Promise<void> | undefined }>;
}

/**
 * One agent's connection to the central server: the hello within `handshake_timeout`, then
 * batches queued in order, each acknowledged once it is durable in every queue and the sender's
 * mark is raised durably. Commits of consecutive batches overlap (one fsync can serve many). The
 * socket is paused while more than `max_inflight_bytes` wait for their ack. A protocol error closes
 * this connection only, with an error frame saying why.
 */
export class AgentConnection {
  private sender: string | null = null;
  private dispatchChain: Promise<void> = Promise.resolve();
  private ackChain: Promise<void> = Promise.resolve();
  private inflight = 0;
  private paused = false;
  private closed = false;
  private readonly raw: Duplex;
  private readonly helloTimer: NodeJS.Timeout;
  private idleTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly ws: WebSocket,
    private readonly host: AgentConnectionHost,
    private readonly decoder: RecordDecoder,
    private readonly log: Logger,
  ) {
    this.raw = (ws as unknown as { _socket: Duplex })._socket;
    this.helloTimer = setTimeout(
      () => this.fail(CLOSE.handshakeTimeout, 'protocol', 'no hello within handshake_timeout', false),
      host.config.handshake_timeout,
    );
    this.touch();
    ws.on('ping', () => this.touch());
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (this.closed) return;
      this.touch();
      if (isBinary) this.onBatch(data);
      else this.onControl(data);
    });
    ws.on('error', (err) => {
      host.quiet.log('ws-error', (extra) =>
        log.warn({ sender: this.sender, err: err.message, ...extra }, 'agent connection error'),
      );
      if (/max payload/i.test(err.message)) host.stats.connectionErrors++;
    });
  }

  /** The connection closed: nothing more is queued or acknowledged. */
  onClose(): void {
    this.closed = true;
    clearTimeout(this.helloTimer);
    if (this.idleTimer) clearTimeout(this.idleTimer);
  }

  private touch(): void {
    const idle = this.host.config.idle_timeout;
    if (idle <= 0) return;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.fail(CLOSE.normal, 'protocol', 'idle_timeout', true), idle);
    this.idleTimer.unref();
  }

  private fail(code: number, error: ErrorCode, message: string, retryable: boolean): void {
    if (this.closed) return;
    this.closed = true;
    if (!retryable) this.host.stats.connectionErrors++;
    this.host.quiet.log(`close:${error}`, (extra) =>
      this.log.warn({ sender: this.sender, code, reason: message, ...extra }, 'closing an agent connection'),
    );
    try {
      this.ws.send(JSON.stringify({ type: 'error', code: error, retryable, message }));
    } catch {
      // the socket may be gone already
    }
    this.ws.close(code, message.slice(0, 120));
    setTimeout(() => this.ws.terminate(), 2000).unref();
  }

  /** A text frame: from an agent, only one `hello`, first. */
  private onControl(data: Buffer) {
    let c: ReturnType<typeof parseControl>;
    try {
      c = parseControl(data.toString('utf8'));
    } catch (err) {
      return this.fail(CLOSE.badFrame, 'bad_frame', (err as Error).message, false);
    }
    if (c.type !== 'hello')
      return this.fail(CLOSE.protocol, 'protocol', `an agent does not send ${c.type} frames`, false);
    if (this.sender !== null) return this.fail(CLOSE.protocol, 'protocol', 'a second hello', false);
    if (!c.versions.includes(PROTOCOL_VERSION))
      return this.fail(
        CLOSE.protocol,
        'version',
        `no common version: offered ${c.versions.join(',')}, server speaks ${PROTOCOL_VERSION}`,
        false,
      );
    clearTimeout(this.helloTimer);
    this.sender = c.sender;
    const welcome: Welcome = {
      type: 'welcome',
      version: PROTOCOL_VERSION,
      resume: this.host.resumeFrom(c.sender),
      compression: c.compression.includes('deflate') ? 'deflate' : 'none',
      window: WINDOW,
      maxFrameBytes: this.host.config.max_frame_size,
    };
    this.ws.send(JSON.stringify(welcome));
    this.log.info({ sender: c.sender, resume: welcome.resume }, 'agent connected');
  }

  /** A binary frame: a batch of records, after the hello. */
  private onBatch(data: Buffer) {
    const from = this.sender;
    if (from === null) return this.fail(CLOSE.protocol, 'protocol', 'a batch before hello', false);
    const host = this.host;
    let batch: ReturnType<typeof decodeBatch>;
    try {
      batch = decodeBatch(data, host.config.max_frame_size);
    } catch (err) {
      return this.fail(
        err instanceof WireError && /exceeds the limit/.test(err.message) ? CLOSE.tooLarge : CLOSE.badFrame,
        'bad_frame',
        (err as Error).message,
        false,
      );
    }
    this.inflight += data.length;
    if (this.inflight > host.config.max_inflight_bytes && !this.paused) {
      this.paused = true;
      this.raw.pause();
    }
    const lastSeq = batch.firstSeq + batch.payloads.length - 1;
    // Batches are queued one after another (order, flow control), but their fsyncs overlap:
    // a batch's ack waits only for its own commit and the acks before it.
    const queued = this.dispatchChain.then(() =>
      this.closed ? null : host.dispatchBatch(from, batch.firstSeq, batch.payloads, this.decoder),
    );
    this.dispatchChain = queued.then(
      () => undefined,
      () => undefined,
    );
    // Durable in every queue, then the mark raised durably; several batches' marks share one write.
    // (Queues commit in order, so a later batch committed means the earlier ones are too.)
    const durable = queued.then(async (q) => {
      if (q) await q.committed;
      if (!this.closed) await host.commitMark(from, lastSeq);
    });
    durable.catch(() => undefined);
    this.ackChain = this.ackChain.then(async () => {
      try {
        await durable;
        if (!this.closed) this.ws.send(JSON.stringify({ type: 'ack', seq: lastSeq }));
      } catch (err) {
        host.forgetQueued(from);
        if (err instanceof WireError) return this.fail(CLOSE.badFrame, 'bad_frame', err.message, false);
        this.fail(CLOSE.retryLater, 'retry_later', `not committed: ${(err as Error).message}`, true);
      } finally {
        this.inflight -= data.length;
        if (this.paused && this.inflight <= host.config.max_inflight_bytes / 2) {
          this.paused = false;
          this.raw.resume();
        }
      }
    });
  }
}
