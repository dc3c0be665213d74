import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { ConsumerMessages, JetStreamManager, JsMsg } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { z } from 'zod';
import { RateLimitedLog } from '../../log.js';
import { cancellableSleep, ExponentialBackoff } from '../../net/backoff.js';
import { nanos, natsConnect } from '../../net/nats.js';
import { LogRecord, type RecordOrigin } from '../../record.js';
import { countDrop, type SourceStats } from '../../stats.js';
import type { Source, SourceContext } from '../types.js';
import { AckLog, type Committed, type Intent } from './ack-log.js';
import type { natsSourceSchema } from './config.js';

type Config = z.output<typeof natsSourceSchema>;

const ACK = new TextEncoder().encode('+ACK');
const NAK = new TextEncoder().encode('-NAK');
const WORKING = new TextEncoder().encode('+WPI');
/** Committed messages remembered to recognise one delivered again. */
const REMEMBERED = 500_000;
/** Messages read from the stream at once when recovering. */
const RECOVER_AT_ONCE = 64;
/**
 * At start, acknowledgements are sent again, and messages of unknown commit read again, only for
 * messages this far inside their ack_wait (clock and network slack; a delivery is seen here a little
 * after JetStream made it).
 */
const REACK_MARGIN_MS = 2000;
/**
 * How long one pull request lives; the server sends an idle heartbeat every half of it. A pull
 * request lives only on the consumer's leader: when that server dies, a connection to another
 * server sees nothing, and the client pulls again after two missed heartbeats. The client's
 * default (30 s, so a writer idle for up to 30 s after a leader change) is too slow for a log
 * pipeline; at 4 s an idle writer sends one small request every 4 s.
 */
const PULL_EXPIRES_MS = 4000;

/**
 * A message taken in (delivered by the consumer, or read from the stream again after a crash), from
 * its arrival to its commit; then, as a Committed, remembered. One object all along.
 */
interface InFlight {
  seq: number;
  /** The subject of its latest delivery. */
  reply: string;
  /** Since when JetStream counts it in progress (its delivery, or the last +WPI). */
  since: number;
  /** Its body until it is handed on. */
  data: Uint8Array | null;
  /** Its position here once handed on; -1 before. */
  pos: number;
  /** Positions it had in processes that crashed holding it (the ack log's intents). */
  earlier: [string, number][] | undefined;
  /** When it was committed (0 before). */
  at: number;
}

/**
 * A JetStream durable pull consumer. Records are queued in the order they arrive; a message is
 * acknowledged only when its records are committed to every queue they feed. Several sluice
 * processes on the same durable share the stream: JetStream hands each message to one of them, and
 * again (to any) when it was not acknowledged within `ack_wait`.
 *
 * Nothing is written twice at an exactly-once file:
 * - records carry a stream position of their own (this process's incarnation, then a count in
 *   queue order), so that a file destination drops what its queue hands out again after a crash;
 * - a message delivered again that this process already committed is acknowledged, not queued
 *   (the commits are remembered, and written to the ack log before their acknowledgement);
 * - at start, acknowledgements that may not have reached JetStream are sent again (the ack log);
 * - at start, messages an earlier process handed to its queues without hearing of the commit (the
 *   ack log's intents) are read from the stream and handed on again at once, carrying the positions
 *   they had (`LogRecord.earlier`): the file drops those its queue already had, and JetStream is
 *   acknowledged before `ack_wait` gives them to another process. It is told first that they are in
 *   progress, and the ack log records when it confirmed that, so that a process killed again while
 *   it recovers leaves the next one the same chance. Those whose `ack_wait` has run out may be with
 *   another process already: they are left to JetStream's next delivery (with their positions, in
 *   case it comes here).
 * JetStream stream sequences are not used as positions: messages delivered again come after later
 * ones, and a file destination keeps each stream's highest position.
 */
export class NatsSource implements Source {
  readonly stats: SourceStats;
  readonly name: string;
  private readonly origin: RecordOrigin;
  private readonly streamId: string;
  private position = 0;
  private readonly backoff: ExponentialBackoff;
  private readonly quiet = new RateLimitedLog(1000);
  private readonly ackLog: AckLog;
  private stopping = false;
  private loop: Promise<void> | null = null;
  private sleeping: ReturnType<typeof cancellableSleep> | null = null;
  private nc: NatsConnection | null = null;
  private messages: ConsumerMessages | null = null;
  /** Received, commit not yet heard (waiting for a batch, or dispatched), by stream sequence. */
  private readonly inFlight = new Map<number, InFlight>();
  /** Committed here, by stream sequence (insertion order: oldest first). */
  private readonly committed = new Map<number, Committed>();
  /**
   * Handed on by a process that crashed, or here by a commit that failed, by stream sequence: the
   * positions a copy read again carries. (Those on their way now are in `inFlight`.)
   */
  private intents = new Map<number, Intent>();
  /** Intents of earlier processes, read from the ack log, not yet read from the stream again. */
  private toRecover: Intent[] = [];
  /** Messages received and not yet handed to the router. */
  private arrived: InFlight[] = [];
  /** Batches are handed on one after another: the next waits until the last was accepted. */
  private chain: Promise<void> = Promise.resolve();
  private flushScheduled = false;
  private workingTimer: NodeJS.Timeout | null = null;
  /** The creation time of the stream the ack log is for (null before the first connection). */
  private created: string | null = null;

  constructor(
    private readonly config: Config,
    private readonly ctx: SourceContext,
  ) {
    this.name = ctx.name;
    this.stats = ctx.counters.of(ctx.name);
    this.origin = {
      source: ctx.name,
      from: `nats:${config.stream}`,
      format: 'syslog',
      lenient: config.lenient,
      counters: ctx.counters,
    };
    this.streamId = `nats:${config.stream}/${config.durable}/${Date.now().toString(36)}${randomBytes(4).toString('hex')}`;
    this.backoff = new ExponentialBackoff(config.backoff.initial, config.backoff.max);
    this.ackLog = new AckLog(
      path.join(ctx.stateDir, 'nats', `${ctx.name}.acks`),
      Math.max(10 * config.ack_wait, 60_000),
    );
  }

  describe(): string {
    return `nats ${this.config.servers.join(',')} stream ${this.config.stream} durable ${this.config.durable}`;
  }

  async start(): Promise<void> {
    this.loop = this.run();
    this.workingTimer = setInterval(() => this.stillWorking(), Math.max(250, this.config.ack_wait / 4));
    this.workingTimer.unref();
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      try {
        await this.session();
      } catch (err) {
        this.stats.connectionErrors++;
        this.quiet.log('session', (extra) =>
          this.ctx.logger.warn(
            { err: (err as Error).message, stream: this.config.stream, durable: this.config.durable, ...extra },
            'NATS consumer failed; connecting again',
          ),
        );
      }
      if (this.stopping) break;
      this.sleeping = cancellableSleep(this.backoff.next());
      await this.sleeping.promise;
      this.sleeping = null;
    }
  }

  private async session(): Promise<void> {
    const { jetstream, jetstreamManager } = await import('@nats-io/jetstream');
    const nc = await natsConnect(this.config, `sluice ${this.name}`);
    this.nc = nc;
    try {
      const jsm = await jetstreamManager(nc, { timeout: this.config.connect_timeout });
      const info = await jsm.streams.info(this.config.stream).catch((err: Error) => {
        throw new Error(`JetStream stream ${this.config.stream}: ${err.message}`);
      });
      this.resume(nc, info.created);
      await this.ensureConsumer(jsm);
      await this.recover(nc, jsm);
      const consumer = await jetstream(nc).consumers.get(this.config.stream, this.config.durable);
      const messages = await consumer.consume({
        max_messages: this.config.batch,
        expires: PULL_EXPIRES_MS,
        callback: (m) => this.arriveMessage(m),
      });
      this.messages = messages;
      void this.watch(messages);
      this.stats.connectionsAccepted++;
      this.backoff.reset();
      this.ctx.logger.info(
        { server: nc.getServer(), stream: this.config.stream, durable: this.config.durable },
        'NATS consumer reading',
      );
      // Ends when the connection closes or stop stops the messages.
      const closed = nc.closed().then((err) => {
        if (err) throw err;
        throw new Error('connection closed');
      });
      await Promise.race([messages.closed().then(() => undefined), closed]);
      if (!this.stopping) throw new Error('the consumer stopped');
    } finally {
      this.messages?.stop();
      this.messages = null;
      this.nc = null;
      await nc.close().catch(() => undefined);
    }
  }

  /** The client's news of the consumer: missed heartbeats (it pulls again) are logged. */
  private async watch(messages: { status(): AsyncIterable<{ type: string }> }): Promise<void> {
    try {
      for await (const s of messages.status()) {
        if (s.type !== 'heartbeats_missed') continue;
        this.stats.connectionErrors++;
        this.quiet.log('heartbeat', (extra) =>
          this.ctx.logger.warn(
            { stream: this.config.stream, durable: this.config.durable, ...extra },
            "NATS: no heartbeat from the consumer's leader (its server gone?); pulling again",
          ),
        );
      }
    } catch {
      // the messages ended
    }
  }

  /**
   * At each connection: the ack log read (the first time; a stream made anew since voids it), and
   * the acknowledgements of recent commits sent again.
   */
  private resume(nc: NatsConnection, created: string): void {
    if (this.created !== created) {
      // The first connection, or the stream was made anew meanwhile (its numbers start again):
      // the ack log of another stream means nothing.
      if (this.created !== null)
        this.ctx.logger.warn(
          { stream: this.config.stream },
          'the JetStream stream was made anew; its ack log starts again',
        );
      this.committed.clear();
      const log = this.ackLog.load(created);
      for (const c of log.committed) this.remember(c);
      this.intents = new Map(log.intents.map((i) => [i.seq, i]));
      this.toRecover = log.intents;
      this.ackLog.open(created, [...this.committed.values()], log.intents);
      this.created = created;
    }
    const now = Date.now();
    let again = 0;
    for (const c of this.committed.values()) {
      if (c.at + this.config.ack_wait - REACK_MARGIN_MS <= now) continue;
      nc.publish(c.reply, ACK);
      again++;
    }
    if (again > 0) this.ctx.logger.info({ acknowledged_again: again }, 'NATS: acknowledged recent commits again');
  }

  /**
   * The messages an earlier process handed on without hearing of their commit: read again from the
   * stream and handed on, in stream order, before anything else.
   * - Those below the consumer's ack floor were acknowledged by another process meanwhile.
   * - Those whose `ack_wait` ran out (this side was away too long) may be with another process now:
   *   they are left to JetStream's next delivery, keeping their positions in case it comes here.
   * - The others are reported in progress first, and the ack log records when JetStream confirmed
   *   it, so that a process killed again while it recovers leaves the next one the same margin.
   */
  private async recover(nc: NatsConnection, jsm: JetStreamManager): Promise<void> {
    if (this.toRecover.length === 0) return;
    const floor = (await jsm.consumers.info(this.config.stream, this.config.durable)).ack_floor.stream_seq;
    const now = Date.now();
    const todo: Intent[] = [];
    let elsewhere = 0;
    let expired = 0;
    for (const i of this.toRecover) {
      if (i.seq <= floor) {
        this.intents.delete(i.seq);
        elsewhere++;
      } else if (i.at + this.config.ack_wait - REACK_MARGIN_MS <= now) expired++;
      else todo.push(i);
    }
    todo.sort((a, b) => a.seq - b.seq);
    if (todo.length > 0) {
      const reported = await reportWorking(nc, todo);
      for (const i of todo) i.at = reported;
      // Not recorded (a disk error), the next start counts from the older time: it leaves more to
      // JetStream, never less.
      this.toAckLog(() =>
        this.ackLog.working(
          reported,
          todo.map((i) => i.seq),
        ),
      );
    }
    let gone = 0;
    let again = 0;
    for (let at = 0; at < todo.length; at += RECOVER_AT_ONCE) {
      const part = todo.slice(at, at + RECOVER_AT_ONCE);
      const read = await Promise.all(
        part.map((i) =>
          jsm.streams.getMessage(this.config.stream, { seq: i.seq }).then(
            (m) => m?.data ?? null,
            (err: Error) => {
              if (/no message found/i.test(err.message)) return null;
              throw err;
            },
          ),
        ),
      );
      part.forEach((i, k) => {
        const data = read[k];
        if (data === null || data === undefined) {
          this.intents.delete(i.seq); // removed from the stream (its limits) since
          gone++;
        } else {
          this.arrive(i.seq, data, i.reply, i.at);
          again++;
        }
      });
      // A connection lost from here on: the next one goes on with the rest.
      this.toRecover = todo.slice(at + part.length);
    }
    this.toRecover = [];
    this.ctx.logger.info(
      {
        handed_on_again: again,
        acknowledged_elsewhere: elsewhere,
        left_to_redelivery: expired,
        no_longer_in_stream: gone,
      },
      'NATS: messages handed on before a crash, commit unknown, read from the stream again',
    );
    if (expired > 0)
      this.ctx.logger.warn(
        { messages: expired, ack_wait_ms: this.config.ack_wait },
        'NATS: messages handed on before a crash are past their ack_wait; left to JetStream to deliver again (if one goes to another process and this one had written it, it is written twice)',
      );
    if (gone > 0)
      this.ctx.logger.warn(
        { messages: gone, stream: this.config.stream },
        'NATS: messages handed on before a crash are no longer in the stream; if their commit did not complete, they are lost',
      );
  }

  /** The durable consumer, made when missing and set right when its limits differ from the config. */
  private async ensureConsumer(jsm: JetStreamManager): Promise<void> {
    const { AckPolicy, DeliverPolicy, JetStreamApiError, JetStreamApiCodes } = await import('@nats-io/jetstream');
    const c = this.config;
    const want = {
      max_ack_pending: c.max_ack_pending,
      ack_wait: nanos(c.ack_wait),
      ...(c.filter_subject ? { filter_subject: c.filter_subject } : {}),
    };
    try {
      const info = await jsm.consumers.info(c.stream, c.durable);
      const have = info.config;
      if (
        have.max_ack_pending !== want.max_ack_pending ||
        have.ack_wait !== want.ack_wait ||
        (have.filter_subject ?? undefined) !== c.filter_subject
      ) {
        await jsm.consumers.update(c.stream, c.durable, want);
        this.ctx.logger.info({ durable: c.durable, ...want }, 'NATS consumer updated to the config');
      }
    } catch (err) {
      if (!(err instanceof JetStreamApiError && err.code === JetStreamApiCodes.ConsumerNotFound)) throw err;
      await jsm.consumers.add(c.stream, {
        durable_name: c.durable,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        ...want,
      });
      this.ctx.logger.info({ durable: c.durable, stream: c.stream }, 'NATS consumer created');
    }
  }

  /**
   * A message arrives: one committed here already is acknowledged and dropped as a duplicate; one
   * that is already on its way to the queues (delivered again meanwhile) is not taken twice (its
   * newest acknowledgement subject is kept). The others wait for the next batch, and count as in
   * progress from now on (JetStream's ack_wait runs from its delivery).
   */
  private arriveMessage(m: JsMsg): void {
    const reply = (m as unknown as { reply: string }).reply;
    this.arrive(streamSequence(reply) ?? m.seq, m.data, reply, Date.now());
  }

  /** `since`: when JetStream started counting it in progress (its delivery, or a confirmed +WPI). */
  private arrive(seq: number, data: Uint8Array, reply: string, since: number): void {
    if (this.committed.has(seq)) {
      // Delivered again after its ack was lost: written already.
      this.nc?.publish(reply, ACK);
      countDrop(this.stats.dropped, 'duplicate');
      return;
    }
    const taken = this.inFlight.get(seq);
    if (taken) {
      taken.reply = reply;
      taken.since = since;
      return;
    }
    const before = this.intents.size > 0 ? this.intents.get(seq) : undefined;
    if (before) this.intents.delete(seq); // its positions travel with it now (and come back if its commit fails)
    const f: InFlight = {
      seq,
      reply,
      since,
      data,
      pos: -1,
      earlier: before?.positions,
      at: 0,
    };
    this.inFlight.set(seq, f);
    this.arrived.push(f);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      const batch = this.arrived;
      this.arrived = [];
      this.chain = this.chain.then(() => this.handOn(batch));
    });
  }

  /** Queues one batch; resolves once the router accepted it (its commit is followed on its own). */
  private async handOn(batch: InFlight[]): Promise<void> {
    if (batch.length === 0) return;
    const records: LogRecord[] = [];
    const now = Date.now();
    const firstPos = this.position;
    let bytes = 0;
    let since = now;
    for (const f of batch) {
      if (f.since < since) since = f.since;
      const data = f.data!;
      const r = new LogRecord(Buffer.from(data.buffer, data.byteOffset, data.byteLength), now, this.origin);
      f.pos = this.position++;
      f.data = null;
      r.setStream(this.streamId, f.pos);
      // Handed on before, its commit unknown: the file drops it if one of those copies was written.
      if (f.earlier) r.setEarlier(f.earlier);
      records.push(r);
      bytes += data.byteLength;
    }
    // Before the queues can have them: a crash from here on leaves them to the next process.
    this.toAckLog(() => this.ackLog.intend(since, this.streamId, firstPos, batch));
    this.stats.received += records.length;
    this.stats.receivedBytes += bytes;
    let d: ReturnType<SourceContext['router']['dispatch']>;
    try {
      if (this.ctx.shedding?.()) throw new Error('load shedding: the queues cannot be written');
      d = this.ctx.router.dispatch(this.name, records, 'keep_waiting');
    } catch (err) {
      this.settle(batch, err as Error);
      return;
    }
    if (!d) {
      this.settle(batch, null); // no queue wants them (filtered out)
      return;
    }
    const accepted = Promise.resolve(d.accepted);
    accepted
      .then(() => d.committed)
      .then(
        () => this.settle(batch, null),
        (err: Error) => this.settle(batch, err),
      );
    await accepted.catch(() => undefined);
  }

  /**
   * A batch's commit is known: acknowledged (the ack log written first), or refused so that
   * JetStream delivers it again soon. The acknowledgement goes to the subject of the message's
   * latest delivery.
   */
  private settle(batch: InFlight[], err: Error | null): void {
    const nc = this.nc;
    const at = Date.now();
    const entries: InFlight[] = [];
    for (const f of batch) {
      if (this.inFlight.get(f.seq) !== f) continue;
      this.inFlight.delete(f.seq);
      entries.push(f);
      if (err) {
        // A failed commit keeps its intent: the records may be in a queue all the same.
        this.intents.set(f.seq, this.intentOf(f)!);
      } else {
        if (this.intents.size > 0) this.intents.delete(f.seq);
        f.at = at;
        f.earlier = undefined;
      }
    }
    if (err) {
      this.quiet.log('commit', (extra) =>
        this.ctx.logger.warn(
          { err: err.message, messages: entries.length, ...extra },
          'NATS messages not committed to the queues; JetStream will deliver them again',
        ),
      );
      for (const { reply } of entries) nc?.publish(reply, NAK);
      return;
    }
    this.toAckLog(() =>
      this.ackLog.append(entries, () => ({ committed: [...this.committed.values()], intents: this.unsettled() })),
    );
    for (const c of entries) {
      this.remember(c);
      // A connection lost meanwhile: the next one acknowledges from the log (resume).
      nc?.publish(c.reply, ACK);
    }
  }

  /** Every message handed on whose commit is not known: those of crashed processes, and those on their way now. */
  private unsettled(): Intent[] {
    const out = [...this.intents.values()];
    for (const f of this.inFlight.values()) {
      const i = this.intentOf(f);
      if (i) out.push(i);
    }
    return out;
  }

  /**
   * A message in flight as an intent: the positions it had before (read again from the ack log) and,
   * once handed on, its own here. Null when it has neither.
   */
  private intentOf(f: InFlight): Intent | null {
    const positions: [string, number][] = [...(f.earlier ?? [])];
    if (f.pos >= 0) positions.push([this.streamId, f.pos]);
    return positions.length > 0 ? { at: f.since, seq: f.seq, reply: f.reply, positions } : null;
  }

  private remember(c: Committed): void {
    this.committed.set(c.seq, c);
    if (this.committed.size > REMEMBERED) {
      const oldest = this.committed.keys().next().value as number;
      this.committed.delete(oldest);
    }
  }

  /**
   * Messages waiting for a commit longer than a third of their ack_wait: JetStream is told they are
   * in progress. Once it confirmed, the ack log records when, for those handed on (a process that
   * follows a crash knows how long they stay with this consumer).
   */
  private stillWorking(): void {
    const nc = this.nc;
    if (!nc) return;
    const before = Date.now() - this.config.ack_wait / 3;
    const sent = [...this.inFlight.values()].filter((f) => f.since <= before);
    if (sent.length === 0) return;
    reportWorking(nc, sent).then(
      (reported) => {
        const logged: number[] = [];
        for (const f of sent) {
          if (this.inFlight.get(f.seq) !== f || f.since >= reported) continue;
          f.since = reported;
          if (f.pos >= 0) logged.push(f.seq);
        }
        this.toAckLog(() => this.ackLog.working(reported, logged));
      },
      () => undefined, // the connection is gone: the next one's deliveries count anew
    );
  }

  /** A write to the ack log; one that fails is reported to the disk health gate, not thrown. */
  private toAckLog(write: () => void): void {
    try {
      write();
    } catch (e) {
      this.ctx.diskHealth?.failed(e as Error, 'the NATS ack log');
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.workingTimer) clearInterval(this.workingTimer);
    this.sleeping?.cancel();
    this.messages?.stop();
    // What was taken in settles (its acks go out) before the connection closes, for 5 s at most: a
    // message stays in flight from its arrival until its commit is known.
    const deadline = Date.now() + 5000;
    while (this.inFlight.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    // close() sends what is buffered (the acks) first.
    await this.nc?.close().catch(() => undefined);
    await this.loop;
    this.ackLog.close();
  }
}

/**
 * Tells JetStream these messages are in progress (`+WPI` on their latest delivery's subject); once it
 * has the reports (a flush: the server answered a PING sent after them), resolves with the time
 * taken before they were sent, from which their `ack_wait` runs at the latest. Rejects when the
 * connection is gone.
 */
async function reportWorking(nc: NatsConnection, messages: { reply: string }[]): Promise<number> {
  const at = Date.now();
  for (const m of messages) nc.publish(m.reply, WORKING);
  await nc.flush();
  return at;
}

/**
 * The stream sequence in a JetStream acknowledgement subject, read without JsMsg's full parse:
 * `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>`, or with a
 * domain and account hash after `$JS.ACK.` (and a random token at the end) in newer servers.
 * Undefined when the subject has neither form.
 */
export function streamSequence(reply: string): number | undefined {
  let dots = 0;
  for (let i = 0; i < reply.length; i++) if (reply.charCodeAt(i) === 46) dots++;
  const index = dots === 8 ? 5 : dots >= 10 ? 7 : -1;
  if (index < 0 || !reply.startsWith('$JS.ACK.')) return undefined;
  let start = 0;
  for (let k = 0; k < index; k++) start = reply.indexOf('.', start) + 1;
  const end = reply.indexOf('.', start);
  const n = Number(reply.slice(start, end));
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}
