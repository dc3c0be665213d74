import type net from 'node:net';
import type tls from 'node:tls';
import type { z } from 'zod';
import { connectStream, tlsClientOptions } from '../../net/sockets.js';
import { RELP_MAX_TXNR, RELP_OFFERS, RelpParser, relpFrame, syslogFrames } from '../../protocol/relp.js';
import type { LogRecord } from '../../record.js';
import { RecordError, sameRecord } from '../failures.js';
import { renderRecord } from '../format.js';
import { SessionDestination, SessionSignal } from '../session-destination.js';
import { RelpWindow } from './window.js';
import { type DestinationContext, type DestinationStats, newDestinationStats } from '../types.js';
import type { relpDestinationSchema } from './config.js';

type Config = z.output<typeof relpDestinationSchema>;

/**
 * Messages per socket write. Against rsyslog imrelp (bench:forward), anything from 8 to 512 frames a
 * write measured within the noise; one frame a write was much slower (118k against about 160k msg/s).
 */
const WRITE_CHUNK = 128;

/**
 * The longest the client holds back a part-empty window waiting for more answers. librelp's server
 * socket has no TCP_NODELAY: after one small segment of answers it holds the rest until that
 * segment is acknowledged, and Linux delays that ACK (by 40 ms) unless data goes back with it. A
 * client that sends nothing until more answers come then moves a window per delayed ACK: at
 * window 1024, both omrelp and this client crawled at about 23k msg/s against rsyslog imrelp and
 * stalled. Sending what room there is after 1 ms carries the ACK and releases the answers
 * (bench:forward, docs/protocol.md).
 */
const REFILL_LINGER_MS = 1;

/**
 * The RELP client, with a sliding window as librelp has: up to `window` `syslog` commands
 * unanswered at once; queue records are freed in order as their `200 OK` answers arrive. Any other
 * answer, a timeout or a broken connection sends everything unanswered again on a new connection.
 */
export class RelpDestination extends SessionDestination {
  readonly stats: DestinationStats = { ...newDestinationStats(), serverErrors: 0 };
  private readonly tlsOptions: tls.ConnectionOptions | null;
  private socket: net.Socket | null = null;
  /**
   * A session the receiver ended while records were unanswered (it closed or reset the connection,
   * sent serverclose, or refused a record): the first record sent in the next session may be the
   * cause. From then on records go one at a time (window 1) for as many as were unanswered, so that
   * the one to blame is known; one that ends the session `max_record_attempts` times in a row is
   * set aside as a dead letter (rsyslog's omrelp would resend it for ever).
   */
  private blameNext = false;
  private isolate = 0;
  private suspect: { record: LogRecord; attempts: number } | null = null;
  private lastBreak = '';

  constructor(
    private readonly config: Config,
    ctx: DestinationContext,
  ) {
    super(ctx, config.backoff);
    this.tlsOptions = config.tls ? tlsClientOptions(config.tls, config.address.host) : null;
  }

  describe(): string {
    return (
      `relp${this.tlsOptions ? '+tls' : ''}://${this.config.address.host}:${this.config.address.port} ` +
      `(${this.config.format}, window ${this.config.window})`
    );
  }

  protected sessionFailed(err: Error): number {
    if (this.receiverEnded) {
      this.blameNext = true;
      this.isolate = Math.max(this.isolate, this.receiverEnded);
      this.lastBreak = err.message;
    }
    const wait = this.backoff.next();
    this.logRetry(
      { reason: err.message, retry_in_ms: wait },
      'RELP delivery failed; records stay queued and will be sent again',
    );
    return wait;
  }

  /** Records unanswered when the receiver itself ended the last session (see `blameNext`); 0 otherwise. */
  private receiverEnded = 0;

  /**
   * The first record of a session after the receiver ended the last one: counted against it, and
   * set aside once it has ended `max_record_attempts` sessions in a row. True when it was set aside
   * (and acknowledged): take the next.
   */
  private async blameFirst(r: LogRecord): Promise<boolean> {
    if (!this.blameNext) return false;
    this.blameNext = false;
    if (!this.suspect || !sameRecord(this.suspect.record, r)) {
      this.suspect = { record: r, attempts: 1 };
      return false;
    }
    // `attempts` counts its sends alone; each ended the session.
    const s = this.suspect;
    if (s.attempts < this.aside.maxRecordAttempts) {
      s.attempts++;
      return false;
    }
    await this.setAside(
      r,
      'receiver_closed_session',
      `the receiver ended the session each time this record was sent alone (${s.attempts} times); last: ` +
        `${this.lastBreak}`,
      s.attempts,
    );
    return true;
  }

  private async setAside(r: LogRecord, reason: string, error: string, attempts: number): Promise<void> {
    await this.aside.put([{ record: r, reason, error, attempts }]);
    this.queue.ack(1);
    this.suspect = null;
    this.isolate = Math.max(0, this.isolate - 1);
  }

  /** One RELP session; throws when it breaks, returns when draining is done. */
  protected async session(): Promise<void> {
    this.receiverEnded = 0;
    let opened = false;
    let notSent = 0;
    const socket = await connectStream(this.config.address, this.tlsOptions, this.config.connect_timeout);
    this.socket = socket;
    const parser = new RelpParser(1 << 20);
    const window = new RelpWindow(RELP_MAX_TXNR);
    const signal = new SessionSignal();
    let closedByReceiver = false;
    const checkQueue = this.queueStillHolds();
    socket.on('data', (chunk: Buffer) => this.onAnswers(chunk, parser, window, signal, checkQueue));
    socket.on('error', (err) => {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ECONNRESET' || code === 'EPIPE') closedByReceiver = true;
      signal.fail(err);
    });
    socket.on('close', () => {
      closedByReceiver = true;
      signal.fail(new Error('connection closed by the receiver'));
    });
    try {
      await this.open(socket, window, signal);
      opened = true;
      const refillAt = Math.max(1, Math.min(WRITE_CHUNK, this.config.window >> 2));
      let roomSince = -1; // when the window, full before, got room that is not yet worth a write
      for (;;) {
        signal.check();
        if (this.stopped) return;
        checkQueue();
        const unanswered = window.unanswered;
        const overdue = window.overdue(Date.now(), this.config.response_timeout);
        if (overdue >= 0) throw new Error(`no answer to transaction ${overdue} in ${this.config.response_timeout} ms`);
        // Reconnect well before the transaction number would wrap.
        if (window.nearWrap(this.config.window)) {
          if (unanswered === 0) return this.closeSession(socket, window.close());
          await signal.wait(1000);
          continue;
        }
        const room = (this.isolate > 0 ? 1 : this.config.window) - unanswered;
        // With a full window, wait until a worthwhile part of it is answered before sending again:
        // refilling after every few answers means tiny writes, and a receiver (librelp) that then
        // spends its time on small reads while we spend ours waking up for each few answers.
        // But once anything is answered, wait at most REFILL_LINGER_MS (see there).
        if (room < refillAt && unanswered > 0) {
          if (room === 0) {
            await signal.wait(1000);
            continue;
          }
          const now = performance.now();
          if (roomSince < 0) roomSince = now;
          const left = roomSince + REFILL_LINGER_MS - now;
          if (left > 0) {
            await signal.wait(Math.ceil(left));
            continue;
          }
        }
        roomSince = -1;
        if (room <= 0) {
          await signal.wait(1000);
          continue;
        }
        const batch = this.queue.take(Math.min(room, WRITE_CHUNK));
        if (batch.length > 0 && unanswered === 0 && (await this.blameFirst(batch[0]!))) {
          this.queue.rewind(); // the rest of the batch (none in isolation) comes out again
          continue;
        }
        if (batch.length === 0) {
          if (this.draining) {
            if (unanswered === 0) {
              await this.closeSession(socket, window.close(), () => window.closeAnswered);
              return;
            }
            await signal.wait(1000);
          } else {
            await Promise.race([this.queue.waitForRecords(), signal.wait(unanswered > 0 ? 1000 : 5000)]);
          }
          continue;
        }
        const bodies = new Array<Buffer>(batch.length);
        try {
          for (let i = 0; i < batch.length; i++)
            bodies[i] = renderRecord(batch[i]!, this.config.format, this.ctx.hostname);
        } catch (err) {
          // Alone, with nothing before it unanswered: set aside at once. Else the session ends and
          // the records go one at a time until it is alone.
          if (batch.length === 1 && unanswered === 0) {
            await this.setAside(batch[0]!, 'encoding', (err as Error).message, 1);
            continue;
          }
          notSent = batch.length;
          closedByReceiver = true; // not the receiver's doing, but blamed the same way: on a record
          throw new RecordError('encoding', `a record cannot be encoded: ${(err as Error).message}`);
        }
        // The whole batch in one buffer, one write.
        socket.write(syslogFrames(window.sent(batch.length, Date.now()), bodies));
        this.countSent(batch.length);
      }
    } finally {
      this.owedReplay(window.unanswered);
      if (opened && (closedByReceiver || window.endedByReceiver)) this.receiverEnded = window.unanswered + notSent;
      this.socket = null;
      signal.notify(); // no wait's timer outlives the session
      socket.destroy();
    }
  }

  /** Sends `open` and waits for its answer (connect_timeout); throws when refused or unanswered. */
  private async open(socket: net.Socket, window: RelpWindow, signal: SessionSignal): Promise<void> {
    socket.write(relpFrame(1, 'open', RELP_OFFERS));
    const deadline = Date.now() + this.config.connect_timeout;
    while (!window.openAnswer && !signal.failure && Date.now() < deadline) await signal.wait(deadline - Date.now());
    signal.check();
    const answer = window.openAnswer as { code: number; text: string } | null;
    if (!answer) throw new Error('no answer to open in connect_timeout');
    if (answer.code !== 200) throw new Error(`open refused: ${answer.code} ${answer.text}`);
    this.stats.connected = true;
    this.stats.reconnects++;
    this.backoff.reset();
    this.ctx.logger.info({ address: `${this.config.address.host}:${this.config.address.port}` }, 'RELP session open');
  }

  /**
   * Answers from the server: the records answered `200 OK`, as a prefix in the order sent, leave
   * the queue; a refusal ends the session after that prefix is freed (the rest is sent again).
   */
  private onAnswers(
    chunk: Buffer,
    parser: RelpParser,
    window: RelpWindow,
    signal: SessionSignal,
    checkQueue: () => void,
  ): void {
    const refusalsBefore = window.refusals;
    try {
      parser.pushAnswers(chunk, window.onOk, window.onFrame);
    } catch (err) {
      signal.fail(new Error(`bad frame from the server: ${(err as Error).message}`));
      return;
    }
    this.stats.serverErrors = (this.stats.serverErrors ?? 0) + window.refusals - refusalsBefore;
    if (window.broken) {
      signal.fail(window.broken);
      return;
    }
    try {
      checkQueue();
    } catch (err) {
      signal.fail(err as Error);
      return;
    }
    const n = window.takeAnswered();
    if (n > 0) {
      this.queue.ack(n);
      this.stats.delivered += n;
      if (this.isolate > 0) this.isolate = Math.max(0, this.isolate - n);
      this.suspect = null;
    }
    const refused = window.takeRefusal();
    if (refused) signal.fail(refused);
    else signal.notify();
  }

  /** `close`, its answer (briefly awaited), then the socket ends. */
  private async closeSession(socket: net.Socket, txnr: number, answered: () => boolean = () => false): Promise<void> {
    socket.write(relpFrame(txnr, 'close'));
    const until = Date.now() + 2000;
    while (!answered() && Date.now() < until && !socket.destroyed) await new Promise((r) => setTimeout(r, 20));
    socket.end();
  }

  protected cut(): void {
    this.socket?.destroy();
  }
}
