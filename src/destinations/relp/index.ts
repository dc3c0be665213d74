import type net from 'node:net';
import type tls from 'node:tls';
import type { z } from 'zod';
import { connectStream, tlsClientOptions } from '../../net/sockets.js';
import { parseRsp, RELP_MAX_TXNR, RELP_OFFERS, RelpParser, relpFrame, type RelpFrame } from '../../protocol/relp.js';
import type { LogRecord } from '../../record.js';
import { RecordError, sameRecord } from '../failures.js';
import { renderRecord } from '../format.js';
import { SessionDestination } from '../session-destination.js';
import { type DestinationContext, type DestinationStats, newDestinationStats } from '../types.js';
import type { relpDestinationSchema } from './config.js';

type Config = z.output<typeof relpDestinationSchema>;

const SYSLOG_CMD = Buffer.from(' syslog ');

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

  protected async loop(): Promise<void> {
    while (!this.stopped) {
      await this.expireHead();
      if (this.draining && this.queue.stats().records === 0) return;
      try {
        await this.session();
      } catch (err) {
        this.stats.connected = false;
        this.queue.rewind();
        if (this.stopped || (this.draining && this.queue.stats().records === 0)) return;
        this.stats.failures++;
        if (this.receiverEnded) {
          this.blameNext = true;
          this.isolate = Math.max(this.isolate, this.receiverEnded);
          this.lastBreak = (err as Error).message;
        }
        const wait = this.backoff.next();
        this.quiet.log('failure', (extra) =>
          this.ctx.logger.warn(
            { reason: (err as Error).message, retry_in_ms: wait, queued: this.queue.stats().records, ...extra },
            'RELP delivery failed; records stay queued and will be sent again',
          ),
        );
        if (this.draining) return;
        await this.pause(wait);
      }
    }
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
  private async session(): Promise<void> {
    this.receiverEnded = 0;
    let opened = false;
    let byReceiver = false;
    let notSent = 0;
    this.stats.reconnectAttempts++;
    const socket = await connectStream(this.config.address, this.tlsOptions, this.config.connect_timeout);
    this.socket = socket;
    const parser = new RelpParser(1 << 20);
    // Unanswered syslog commands, oldest first, as plain number arrays (no object per message):
    // entry i is transaction base + i; code 0 while unanswered.
    let codes: number[] = [];
    let sentAt: number[] = [];
    let base = 2; // transaction 1 is the open
    let head = 0; // codes[head] is the oldest unanswered
    let failure: Error | null = null;
    let wake: () => void = () => undefined;
    let openAnswer: { code: number; text: string } | null = null;
    let closeAnswered = false;
    const fail = (err: Error) => {
      failure ??= err;
      wake();
    };
    let refused: Error | null = null;
    let broken: Error | null = null;
    const checkQueue = this.queueStillHolds();
    /** Records one answer; true when the session cannot go on. */
    const answer = (txnr: number, code: number, text: string): boolean => {
      if (txnr === 1) {
        openAnswer = { code, text };
        return false;
      }
      const i = txnr - base;
      if (i < head || i >= codes.length || codes[i] !== 0) {
        if (txnr === closeTxnr) {
          closeAnswered = true;
          return false;
        }
        broken = new Error(`answer for transaction ${txnr}, which is not open`);
        return true;
      }
      codes[i] = code;
      if (code !== 200) {
        this.stats.serverErrors = (this.stats.serverErrors ?? 0) + 1;
        refused ??= new Error(`server answered ${code} ${text}`);
        byReceiver = true;
      }
      return false;
    };
    // `200 OK` answers come by the thousand: they are read in place, with no frame built.
    const onOk = (txnr: number): boolean => answer(txnr, 200, 'OK');
    const onFrame = (f: RelpFrame): boolean => {
      if (f.command === 'serverclose') {
        broken = new Error('the server closed the session (serverclose)');
        byReceiver = true;
      } else if (f.command !== 'rsp') broken = new Error(`unexpected ${f.command} from the server`);
      if (broken) return true;
      const rsp = parseRsp(f.data);
      return answer(f.txnr, rsp.code, rsp.text);
    };
    socket.on('data', (chunk: Buffer) => {
      refused = null;
      try {
        parser.pushAnswers(chunk, onOk, onFrame);
      } catch (err) {
        return fail(new Error(`bad frame from the server: ${(err as Error).message}`));
      }
      if (broken) return fail(broken);
      try {
        checkQueue();
      } catch (err) {
        return fail(err as Error);
      }
      // Free the answered prefix, in order.
      let n = 0;
      while (head < codes.length && codes[head] === 200) {
        head++;
        n++;
      }
      if (n > 0) {
        this.queue.ack(n);
        this.stats.delivered += n;
        if (this.isolate > 0) this.isolate = Math.max(0, this.isolate - n);
        this.suspect = null;
        if (head > 4096 && head * 2 > codes.length) {
          codes = codes.slice(head);
          sentAt = sentAt.slice(head);
          base += head;
          head = 0;
        }
      }
      // A refusal ends the session after the answered prefix is freed: the rest is sent again.
      if (refused) return fail(refused);
      wake();
    });
    socket.on('error', (err) => {
      if ((err as NodeJS.ErrnoException).code === 'ECONNRESET' || (err as NodeJS.ErrnoException).code === 'EPIPE')
        byReceiver = true;
      fail(err);
    });
    socket.on('close', () => {
      byReceiver = true;
      fail(new Error('connection closed by the receiver'));
    });
    const waitEvent = (ms: number) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ms);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    let txnr = 1;
    let closeTxnr = -1;
    const refillAt = Math.max(1, Math.min(WRITE_CHUNK, this.config.window >> 2));
    let roomSince = -1; // when the window, full before, got room that is not yet worth a write
    try {
      socket.write(relpFrame(txnr++, 'open', RELP_OFFERS));
      const deadline = Date.now() + this.config.connect_timeout;
      while (!openAnswer && !failure && Date.now() < deadline) await waitEvent(deadline - Date.now());
      if (failure) throw failure;
      const answer = openAnswer as { code: number; text: string } | null;
      if (!answer) throw new Error('no answer to open in connect_timeout');
      if (answer.code !== 200) throw new Error(`open refused: ${answer.code} ${answer.text}`);
      this.stats.connected = true;
      opened = true;
      this.stats.reconnects++;
      this.backoff.reset();
      this.ctx.logger.info({ address: `${this.config.address.host}:${this.config.address.port}` }, 'RELP session open');

      for (;;) {
        if (failure) throw failure;
        if (this.stopped) return;
        checkQueue();
        const unanswered = codes.length - head;
        if (unanswered > 0 && Date.now() - sentAt[head]! > this.config.response_timeout) {
          throw new Error(`no answer to transaction ${base + head} in ${this.config.response_timeout} ms`);
        }
        // Reconnect well before the transaction number would wrap.
        if (txnr + this.config.window + 2 >= RELP_MAX_TXNR) {
          if (unanswered === 0) return this.closeSession(socket, txnr);
          await waitEvent(1000);
          continue;
        }
        const room = (this.isolate > 0 ? 1 : this.config.window) - unanswered;
        // With a full window, wait until a worthwhile part of it is answered before sending again:
        // refilling after every few answers means tiny writes, and a receiver (librelp) that then
        // spends its time on small reads while we spend ours waking up for each few answers.
        // But once anything is answered, wait at most REFILL_LINGER_MS (see there).
        if (room < refillAt && unanswered > 0) {
          if (room === 0) {
            await waitEvent(1000);
            continue;
          }
          const now = performance.now();
          if (roomSince < 0) roomSince = now;
          const left = roomSince + REFILL_LINGER_MS - now;
          if (left > 0) {
            await waitEvent(Math.ceil(left));
            continue;
          }
        }
        roomSince = -1;
        if (room <= 0) {
          await waitEvent(1000);
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
              closeTxnr = txnr;
              await this.closeSession(socket, txnr, () => closeAnswered);
              return;
            }
            await waitEvent(1000);
          } else {
            await Promise.race([this.queue.waitForRecords(), waitEvent(unanswered > 0 ? 1000 : 5000)]);
          }
          continue;
        }
        const now = Date.now();
        // The whole batch in one buffer, one write.
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
          byReceiver = true; // not the receiver's doing, but blamed the same way: on a record
          throw new RecordError('encoding', `a record cannot be encoded: ${(err as Error).message}`);
        }
        let total = 0;
        for (let i = 0; i < batch.length; i++) {
          const body = bodies[i]!;
          codes.push(0);
          sentAt.push(now);
          // "TXNR syslog LEN DATA\n" (or "TXNR syslog 0\n"), measured without building strings.
          total += digits(txnr + i) + 8 + digits(body.length) + (body.length > 0 ? 1 + body.length : 0) + 1;
        }
        const out = Buffer.allocUnsafe(total);
        let at = 0;
        for (let i = 0; i < batch.length; i++) {
          const body = bodies[i]!;
          at = writeDigits(out, at, txnr++);
          at += SYSLOG_CMD.copy(out, at);
          at = writeDigits(out, at, body.length);
          if (body.length > 0) {
            out[at++] = 0x20;
            at += body.copy(out, at);
          }
          out[at++] = 0x0a;
        }
        socket.write(out);
        this.countSent(batch.length);
      }
    } finally {
      this.sessionEnded(codes.length - head);
      if (opened && byReceiver) this.receiverEnded = codes.length - head + notSent;
      this.socket = null;
      socket.destroy();
    }
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
