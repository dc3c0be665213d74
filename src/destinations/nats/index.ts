import type { JetStreamManager } from '@nats-io/jetstream';
import type { Msg, MsgHdrs, NatsConnection } from '@nats-io/transport-node';
import type { z } from 'zod';
import { nanos, natsConnect, subjectToken } from '../../net/nats.js';
import type { LogRecord } from '../../record.js';
import { RecordTemplate, TemplateError } from '../../template/path-template.js';
import { renderRecord } from '../format.js';
import { SessionDestination, SessionSignal } from '../session-destination.js';
import { type DestinationContext, type DestinationStats, newDestinationStats } from '../types.js';
import type { natsDestinationSchema } from './config.js';

type Config = z.output<typeof natsDestinationSchema>;

/** Records taken from the queue at a time (each is its own publish). */
const TAKE = 256;
/** Subjects remembered as captured (or not) by a stream; the map starts again when it is full. */
const SUBJECTS_KNOWN = 10_000;
/** Bytes a `Nats-Msg-Id` header costs besides its value (the header block, its name, separators). */
const HEADER_OVERHEAD = 64;

/** One record handed out: waiting for its PubAck, stored, or to be set aside when its turn comes. */
interface Slot {
  record: LogRecord;
  state: 'waiting' | 'stored' | 'aside';
  sentAt: number;
  reason?: string;
  error?: string;
  subject?: string;
}

const decoder = new TextDecoder();

/** What is wrong with a PubAck (a refusal, or no stream answering); null when the message was stored. */
function pubAckProblem(m: Msg, subject: string): Error | null {
  if (m.headers?.hasError) {
    const code = m.headers.code;
    return new Error(
      code === 503
        ? `no JetStream stream answered for ${subject} (503 no responders)`
        : `publish to ${subject} refused: ${code} ${m.headers.description}`,
    );
  }
  let ack: { stream?: string; error?: { code?: number; err_code?: number; description?: string } };
  try {
    ack = JSON.parse(decoder.decode(m.data)) as typeof ack;
  } catch {
    return new Error(`publish to ${subject}: the answer is not a PubAck`);
  }
  if (ack.error)
    return new Error(
      `publish to ${subject} refused: ${ack.error.description ?? 'error'} (${ack.error.err_code ?? ack.error.code})`,
    );
  if (!ack.stream) return new Error(`publish to ${subject}: the answer is not a PubAck`);
  return null;
}

/**
 * The id a record is published under, the same every time it is sent: its stream position (a
 * followed file's line, a journal entry, an agent's sequence number), else its sequence number in
 * a reliable queue's file. A memory queue's records have neither: the stream cannot tell a publish
 * made again from a new one.
 */
export function natsMsgId(r: LogRecord, durableId: string | undefined): string | undefined {
  if (r.stream !== undefined && r.streamPos >= 0) return `${r.stream}:${r.streamPos}`;
  if (durableId !== undefined && r.queueSeq >= 0) return `${durableId}:${r.queueSeq}`;
  return undefined;
}

/** True when `err` is JetStream's answer that no stream matches (captures) a subject. */
async function streamNotFound(err: unknown): Promise<boolean> {
  const { JetStreamApiError, JetStreamApiCodes } = await import('@nats-io/jetstream');
  return err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound;
}

/** The subjects a stream made by `create_stream` captures by default: the template's literal head, then `>`. */
export function defaultStreamSubjects(template: RecordTemplate): string[] {
  if (template.isStatic) return [template.template];
  const head = template.template.slice(0, template.template.indexOf('${'));
  const dot = head.lastIndexOf('.');
  if (dot <= 0)
    throw new TemplateError(
      `the subject "${template.template}" starts with a macro: give create_stream.subjects (a stream cannot take ">")`,
    );
  return [`${head.slice(0, dot)}.>`];
}

/**
 * JetStream publisher. Up to `max_inflight` publishes wait for their PubAck at once; records leave
 * the queue in the order taken, each once it and every record before it was stored. A missing
 * PubAck, a refusal or a broken connection ends the session: what was not acknowledged is
 * published again under the same `Nats-Msg-Id`, which the stream drops within its duplicate window.
 * A record that can never be published (larger than the server's max_payload, a subject no stream
 * captures, one that cannot be encoded) is set aside when its turn comes, never retried for ever.
 */
export class NatsDestination extends SessionDestination {
  readonly stats: DestinationStats = { ...newDestinationStats(), serverErrors: 0 };
  private readonly subject: RecordTemplate;
  /** The subject with each macro as `x`: what a stream must capture for the template to be publishable. */
  private readonly sample: string;
  private nc: NatsConnection | null = null;
  /** Per subject: whether a stream captures it (asked of the server once per session). */
  private readonly captured = new Map<string, boolean>();

  constructor(
    private readonly config: Config,
    ctx: DestinationContext,
  ) {
    super(ctx, config.backoff);
    this.subject = new RecordTemplate(config.subject, subjectToken);
    this.sample = this.subject.sample('x');
    if (config.create_stream && !config.create_stream.subjects) defaultStreamSubjects(this.subject);
  }

  describe(): string {
    return `nats ${this.config.servers.join(',')} subject ${this.config.subject} (${this.config.format}, window ${this.config.max_inflight})`;
  }

  protected sessionFailed(err: Error): number {
    const wait = this.backoff.next();
    this.logRetry(
      { reason: err.message, retry_in_ms: wait },
      'NATS delivery failed; records stay queued and will be published again',
    );
    return wait;
  }

  /** At start: a stream must capture the subject (made with `create_stream` when none does). */
  private async ensureStream(jsm: JetStreamManager): Promise<string> {
    const { StorageType } = await import('@nats-io/jetstream');
    const sample = this.sample;
    try {
      return await jsm.streams.find(sample);
    } catch (err) {
      if (!(await streamNotFound(err))) throw err;
    }
    const s = this.config.create_stream;
    if (!s)
      throw new Error(
        `no JetStream stream captures the subject ${sample} (of "${this.config.subject}"): create one, or give ` +
          'create_stream',
      );
    await jsm.streams.add({
      name: s.name,
      subjects: s.subjects ?? defaultStreamSubjects(this.subject),
      storage: s.storage === 'memory' ? StorageType.Memory : StorageType.File,
      num_replicas: s.replicas,
      max_age: nanos(s.max_age),
      max_bytes: s.max_bytes ?? -1,
      duplicate_window: nanos(s.duplicate_window),
    });
    this.ctx.logger.info({ stream: s.name, replicas: s.replicas, storage: s.storage }, 'created JetStream stream');
    return s.name;
  }

  /** Whether a stream captures `subject` (asked once per subject and session). */
  private async isCaptured(jsm: JetStreamManager, subject: string): Promise<boolean> {
    const known = this.captured.get(subject);
    if (known !== undefined) return known;
    let yes = true;
    try {
      await jsm.streams.find(subject);
    } catch (err) {
      if (!(await streamNotFound(err))) throw err;
      yes = false;
    }
    if (this.captured.size >= SUBJECTS_KNOWN) this.captured.clear();
    this.captured.set(subject, yes);
    return yes;
  }

  protected async session(): Promise<void> {
    const { jetstreamManager } = await import('@nats-io/jetstream');
    const core = await import('@nats-io/transport-node');
    const nc = await natsConnect(this.config, `sluice ${this.name}`);
    let live = true;
    this.nc = nc;
    const signal = new SessionSignal();
    void nc.closed().then((err) => signal.fail(err ?? new Error('connection closed')));
    const slots: Slot[] = [];
    let head = 0; // slots before it are freed
    try {
      const jsm = await jetstreamManager(nc, { timeout: this.config.ack_timeout });
      this.captured.clear();
      const stream = await this.ensureStream(jsm);
      // Publishes are JetStream's request and reply, made here without the client's per-request
      // machinery (a promise, a timer and a header object each, which held a bare js.publish to
      // about 11k msg/s on one core): one subscription takes every PubAck, keyed by the reply
      // subject's last token; ack_timeout is checked on the oldest waiting publish.
      const inbox = core.createInbox();
      const byReply = new Map<number, Slot>();
      let nextReply = 0;
      // (Closing the connection ends the subscription.)
      nc.subscribe(`${inbox}.*`, {
        callback: (err, m) => {
          if (!live) return;
          if (err) return signal.fail(err);
          const n = Number(m.subject.slice(inbox.length + 1));
          const slot = byReply.get(n);
          if (!slot) return;
          byReply.delete(n);
          const problem = pubAckProblem(m, slot.subject!);
          if (problem) {
            this.stats.serverErrors = (this.stats.serverErrors ?? 0) + 1;
            return signal.fail(problem);
          }
          slot.state = 'stored';
          signal.notify();
        },
      });
      const maxPayload = nc.info?.max_payload ?? 1 << 20;
      this.stats.connected = true;
      this.stats.reconnects++;
      this.backoff.reset();
      this.ctx.logger.info({ server: nc.getServer(), stream, max_payload: maxPayload }, 'NATS connection open');
      const checkQueue = this.queueStillHolds();
      const { msg_id } = this.config;
      const durableId = this.queue.durableId;
      for (;;) {
        signal.check();
        if (this.stopped) return;
        checkQueue();
        // Free the stored prefix; set aside, in turn, what cannot be published.
        let freed = 0;
        while (head < slots.length && slots[head]!.state !== 'waiting') {
          const s = slots[head]!;
          if (s.state === 'aside') {
            if (freed > 0) this.free(freed);
            freed = 0;
            await this.aside.put([{ record: s.record, reason: s.reason!, error: s.error!, attempts: 1 }]);
            this.queue.ack(1);
          } else freed++;
          head++;
        }
        if (freed > 0) this.free(freed);
        if (head > 4096 && head * 2 > slots.length) {
          slots.splice(0, head);
          head = 0;
        }
        const waiting = slots.length - head;
        if (waiting > 0 && Date.now() - slots[head]!.sentAt > this.config.ack_timeout)
          throw new Error(`no PubAck in ack_timeout (${this.config.ack_timeout} ms)`);
        const room = this.config.max_inflight - waiting;
        if (room <= 0) {
          await signal.wait(1000);
          continue;
        }
        const batch = this.queue.take(Math.min(room, TAKE));
        if (batch.length === 0) {
          if (this.draining) {
            if (waiting === 0) return;
            await signal.wait(1000);
          } else await Promise.race([this.queue.waitForRecords(), signal.wait(waiting > 0 ? 1000 : 5000)]);
          continue;
        }
        for (const r of batch) {
          const slot: Slot = { record: r, state: 'waiting', sentAt: Date.now() };
          slots.push(slot);
          let body: Buffer;
          try {
            body = renderRecord(r, this.config.format, this.ctx.hostname);
          } catch (err) {
            this.putAside(slot, 'encoding', `a record cannot be encoded: ${(err as Error).message}`);
            continue;
          }
          const subject = this.subject.expand(r);
          slot.subject = subject;
          const msgID = msg_id ? natsMsgId(r, durableId) : undefined;
          if (body.length + (msgID ? msgID.length + HEADER_OVERHEAD : 0) > maxPayload) {
            this.putAside(
              slot,
              'too_large',
              `${body.length} bytes: larger than the server's max_payload (${maxPayload}), it can never be published`,
            );
            continue;
          }
          if (!(await this.isCaptured(jsm, subject))) {
            // Only this record's subject, not a cluster that lost sight of its streams for a moment
            // (a server restarted, a leader being elected): the template's own subject must still
            // be captured, asked again now; otherwise the session ends and nothing is set aside.
            this.captured.delete(this.sample);
            if (!(await this.isCaptured(jsm, this.sample)))
              throw new Error(`no JetStream stream captures ${this.sample} any more (of "${this.config.subject}")`);
            this.putAside(slot, 'no_stream', `no JetStream stream captures the subject ${subject}`);
            continue;
          }
          const n = nextReply++;
          byReply.set(n, slot);
          let headers: MsgHdrs | undefined;
          if (msgID) {
            headers = core.headers();
            headers.set('Nats-Msg-Id', msgID);
          }
          nc.publish(subject, body, { reply: `${inbox}.${n}`, headers });
        }
        this.countSent(batch.length);
      }
    } finally {
      live = false;
      this.owedReplay(slots.length - head);
      this.nc = null;
      signal.notify();
      await nc.close().catch(() => undefined);
    }
  }

  private putAside(slot: Slot, reason: string, error: string): void {
    slot.state = 'aside';
    slot.reason = reason;
    slot.error = error; // logged (rate-limited) and counted when it is set aside
  }

  private free(n: number): void {
    this.queue.ack(n);
    this.stats.delivered += n;
  }

  protected cut(): void {
    void this.nc?.close().catch(() => undefined);
  }
}
