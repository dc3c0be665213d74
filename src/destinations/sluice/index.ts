import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import type WebSocket from 'ws';
import type { z } from 'zod';
import { tlsClientOptions } from '../../net/sockets.js';
import {
  CLOSE,
  encodeBatch,
  parseControl,
  PATH,
  PROTOCOL_VERSION,
  SUBPROTOCOL,
  type Welcome,
} from '../../protocol/sluice-wire.js';
import { encodeRecord } from '../../protocol/record-codec.js';
import type { LogRecord } from '../../record.js';
import { SessionDestination, SessionSignal } from '../session-destination.js';
import { type DestinationContext, type DestinationStats, newDestinationStats } from '../types.js';
import type { sluiceDestinationSchema } from './config.js';

type Config = z.infer<typeof sluiceDestinationSchema>;

/** An error the server called terminal: retrying soon will not help. */
class TerminalError extends Error {}

interface InFlight {
  lastSeq: number;
  count: number;
  sentAt: number;
}

export interface SluiceDestinationStats extends DestinationStats {
  /** Errors the server reported (error frames and refused upgrades). */
  serverErrors: number;
}

/**
 * The agent end of the sluice protocol: keeps a window of batches in flight to a central server and
 * frees queue records as the server's cumulative acks arrive.
 */
export class SluiceDestination extends SessionDestination {
  readonly stats: SluiceDestinationStats = { ...newDestinationStats(), serverErrors: 0 };
  private readonly token: string | undefined;
  private urlIndex = 0;
  private ws: WebSocket | null = null;
  /** Counter sequence for queues without durable sequence numbers. */
  private counter = 0;
  private readonly volatileSender = `${os.hostname()}/${randomUUID()}`;

  constructor(
    private readonly config: Config,
    ctx: DestinationContext,
  ) {
    super(ctx, config.backoff);
    this.token = config.token_file ? readFileSync(config.token_file, 'utf8').trimEnd() : config.token;
  }

  describe(): string {
    return (
      `sluice ${this.config.urls.map((u) => this.url(u)).join(' | ')} (window ${this.config.window}, ` +
      `${this.config.compression})`
    );
  }

  private url(u: string): string {
    return /^wss?:\/\/[^/]+$/.test(u) ? `${u}${PATH}` : u;
  }

  private senderFor(ringId: string | undefined): string {
    return ringId ? `${os.hostname()}/${this.name}/${ringId}` : this.volatileSender;
  }

  /** The URL the next session connects to: the next of `urls` after each failure (failover). */
  private currentUrl(): string {
    return this.url(this.config.urls[this.urlIndex % this.config.urls.length]!);
  }

  protected sessionFailed(err: Error): number {
    const url = this.currentUrl();
    this.urlIndex++; // failover: the next URL
    const terminal = err instanceof TerminalError;
    const wait = terminal ? this.config.terminal_backoff : this.backoff.next();
    const fields = { url, reason: err.message, retry_in_ms: wait };
    // A terminal refusal is always logged: it needs the operator.
    if (terminal)
      this.ctx.logger.error(
        { ...fields, queued: this.queue.stats().records },
        'the central server refused this agent (a terminal error); records stay queued; retrying after ' +
          'terminal_backoff',
      );
    else this.logRetry(fields, 'connection to the central server failed; records stay queued and will be sent again');
    return wait;
  }

  /** One connection: handshake, then batches in a window until it breaks (throws) or draining ends (returns). */
  protected async session(): Promise<void> {
    const url = this.currentUrl();
    const t = this.config.tls;
    const options: WebSocket.ClientOptions & { servername?: string } = {
      headers: this.token ? { authorization: `Bearer ${this.token}` } : {},
      handshakeTimeout: this.config.connect_timeout,
      perMessageDeflate: false,
      maxPayload: 1 << 20,
      // No host given: ws takes the name to check from the URL.
      ...(t ? tlsClientOptions(t, undefined) : {}),
    };
    // Loaded here, not at start-up: only configs that use the sluice protocol pay for `ws`.
    const { default: WebSocketClient } = await import('ws');
    const ws = new WebSocketClient(url, [SUBPROTOCOL], options);
    this.ws = ws;
    const signal = new SessionSignal();
    const fail = (err: Error) => signal.fail(err);
    const inflight: InFlight[] = [];
    let welcome: Welcome | null = null;
    // The sequence numbers this session sends are those of the queue file it said hello for. A
    // file rotated for corruption numbers its salvaged records anew under a new id: they must go
    // out under that id, in a new session, or the server would take them for replays.
    const ringId = this.queue.durableId;
    const checkQueue = this.queueStillHolds();
    ws.on('unexpected-response', (_req, res) => {
      this.stats.serverErrors++;
      const code = res.statusCode ?? 0;
      fail(
        code === 401 || code === 400 || code === 404
          ? new TerminalError(`upgrade refused: HTTP ${code}`)
          : new Error(`upgrade refused: HTTP ${code}`),
      );
      res.resume();
      ws.terminate();
    });
    ws.on('error', (err) => fail(err));
    ws.on('close', (code, reason) => {
      const why = `connection closed (${code}${reason.length ? ` ${reason.toString()}` : ''})`;
      fail(code === CLOSE.unauthorized || code === CLOSE.protocol ? new TerminalError(why) : new Error(why));
    });
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) return fail(new Error('the server sent a binary frame'));
      let c: ReturnType<typeof parseControl>;
      try {
        c = parseControl(data.toString('utf8'));
      } catch (err) {
        return fail(err as Error);
      }
      if (c.type === 'welcome') {
        welcome = c;
        return signal.notify();
      }
      if (c.type === 'error') {
        this.stats.serverErrors++;
        return fail(
          c.retryable
            ? new Error(`server error ${c.code}: ${c.message}`)
            : new TerminalError(`server error ${c.code}: ${c.message}`),
        );
      }
      if (c.type === 'ack') {
        try {
          checkQueue();
        } catch (err) {
          return fail(err as Error);
        }
        // Cumulative: frees every batch up to seq. An ack for nothing we sent is a broken server.
        let n = 0;
        let records = 0;
        while (n < inflight.length && inflight[n]!.lastSeq <= c.seq) records += inflight[n++]!.count;
        if (
          n === 0 ||
          (n < inflight.length && inflight[n - 1]!.lastSeq !== c.seq) ||
          (n === inflight.length && inflight[n - 1]!.lastSeq !== c.seq)
        ) {
          return fail(new Error(`ack for sequence ${c.seq}, which matches no batch in flight`));
        }
        inflight.splice(0, n);
        this.queue.ack(records);
        this.stats.delivered += records;
        return signal.notify();
      }
      fail(new Error(`unexpected ${c.type} frame from the server`));
    });

    try {
      // Open and hello.
      const deadline = Date.now() + this.config.connect_timeout;
      await new Promise<void>((resolve) => {
        ws.once('open', resolve);
        void signal.wait(this.config.connect_timeout).then(resolve);
      });
      signal.check();
      if (ws.readyState !== ws.OPEN) throw new Error('no connection in connect_timeout');
      ws.send(
        JSON.stringify({
          type: 'hello',
          versions: [PROTOCOL_VERSION],
          sender: this.senderFor(ringId),
          compression: this.config.compression === 'deflate' ? ['deflate'] : [],
        }),
      );
      while (!welcome && !signal.failure && Date.now() < deadline) await signal.wait(deadline - Date.now());
      signal.check();
      if (!welcome) throw new Error('no welcome from the server in connect_timeout');
      const w = welcome as Welcome;
      this.stats.connected = true;
      this.stats.reconnects++;
      this.backoff.reset();
      const deflate = w.compression === 'deflate';
      const window = Math.max(1, Math.min(this.config.window, w.window));
      const durable = this.queue.durableId !== undefined;
      let resume = durable ? w.resume : -1;

      for (;;) {
        signal.check();
        if (this.stopped) return;
        checkQueue();
        if (inflight.length > 0 && Date.now() - inflight[0]!.sentAt > this.config.ack_timeout)
          throw new Error(`no ack in ack_timeout (${this.config.ack_timeout} ms)`);
        if (inflight.length >= window) {
          await signal.wait(1000);
          continue;
        }
        const batch = this.takeBatch();
        if (batch.length === 0) {
          if (this.draining && inflight.length === 0) {
            ws.close(CLOSE.normal, 'drained');
            return;
          }
          // Draining, the queue is closed and its wait returns at once: wait for acks only.
          if (this.draining) await signal.wait(1000);
          else await Promise.race([this.queue.waitForRecords(), signal.wait(inflight.length > 0 ? 1000 : 5000)]);
          continue;
        }
        let seqs = batch.map((r) => (durable ? r.queueSeq : this.counter++));
        // Already committed by the server (our acks got lost before a restart): free them here.
        if (resume >= 0 && inflight.length === 0) {
          let k = 0;
          while (k < batch.length && seqs[k]! <= resume) k++;
          if (k > 0) {
            this.queue.ack(k);
            this.stats.delivered += k;
            this.skippedReplays(k);
            batch.splice(0, k);
            seqs = seqs.slice(k);
            if (batch.length === 0) continue;
          }
          resume = -1;
        }
        ws.send(encodeBatch(seqs[0]!, batch.map(encodeRecord), deflate));
        inflight.push({ lastSeq: seqs[seqs.length - 1]!, count: batch.length, sentAt: Date.now() });
        this.countSent(batch.length);
      }
    } finally {
      this.owedReplay(inflight.reduce((n, b) => n + b.count, 0));
      this.ws = null;
      signal.notify(); // no wait's timer outlives the session (the connect wait's, after open)
      if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.terminate();
    }
  }

  private takeBatch(): LogRecord[] {
    const out: LogRecord[] = [];
    let bytes = 0;
    while (out.length < this.config.batch_size && bytes < this.config.batch_bytes) {
      const got = this.queue.take(Math.min(256, this.config.batch_size - out.length));
      if (got.length === 0) break;
      for (const r of got) {
        out.push(r);
        bytes += r.raw.length;
      }
    }
    return out;
  }

  protected cut(): void {
    this.ws?.terminate();
  }
}
