import { DeliveryLoop } from './delivery-loop.js';

/**
 * What a session's event handlers and its send loop share: the first failure, and a wait that any
 * event (an answer, a failure, room in the window) cuts short.
 */
export class SessionSignal {
  failure: Error | null = null;
  private wake: () => void = () => undefined;

  /** The session cannot go on: the send loop throws `err` when it next looks. */
  fail(err: Error): void {
    this.failure ??= err;
    this.wake();
  }

  /** Something happened that the send loop may be waiting for. */
  notify(): void {
    this.wake();
  }

  /**
   * Resolves after `ms`, or at the next notify or fail. One wait at a time: a wait left behind (it
   * lost a race) ends here, so its timer does not outlive it.
   */
  wait(ms: number): Promise<void> {
    this.wake();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /** Throws the failure, if there is one. */
  check(): void {
    if (this.failure) throw this.failure;
  }
}

/**
 * What the windowed destinations (`relp`, `sluice`) share: one session at a time keeps records in
 * flight until the far end answers for them. When a session breaks, everything unanswered goes back
 * to the queue and comes out again in the next session, after a backoff with jitter. A destination
 * supplies the session (connect, handshake, send and take answers) and what a failure means.
 */
export abstract class SessionDestination extends DeliveryLoop {
  /**
   * One session: connects, sends and frees what the far end answers for, until it breaks (throws)
   * or, draining, everything is sent (returns). Records unanswered at its end go to `owedReplay`.
   */
  protected abstract session(): Promise<void>;
  /** Cuts the current connection at once. */
  protected abstract cut(): void;
  /** A session failed (the records are back in the queue): logs it; returns how long to wait before the next. */
  protected abstract sessionFailed(err: Error): number;

  protected async run(): Promise<void> {
    while (!this.stopped) {
      await this.expireHead();
      if (this.draining && this.queue.stats().records === 0) return;
      try {
        this.stats.reconnectAttempts++;
        await this.session();
      } catch (err) {
        this.stats.connected = false;
        this.queue.rewind();
        if (this.stopped || (this.draining && this.queue.stats().records === 0)) return;
        this.stats.failures++;
        const wait = this.sessionFailed(err as Error);
        if (this.draining) return;
        await this.pause(wait);
        continue;
      }
      if (this.draining) return;
    }
  }

  protected release(): void {
    this.cut();
  }

  /**
   * A check for one session: it throws once the queue has forgotten what it handed out (see
   * DestinationQueue.epoch), so that no acknowledgement of this session frees records of the next.
   */
  protected queueStillHolds(): () => void {
    const epoch = this.queue.epoch;
    return () => {
      if (this.queue.epoch !== epoch)
        throw new Error('the queue file was rotated and salvaged: sending its records again in a new session');
    };
  }

  /**
   * Between sessions (nothing in flight): records older than the queue's `max_age` at its head are
   * set aside as `expired`, so that an outage longer than that does not keep them.
   */
  protected async expireHead(): Promise<void> {
    for (;;) {
      const batch = this.queue.take(256);
      if (batch.length === 0) return;
      const expired = this.aside.expiredHead(batch);
      try {
        if (expired.length > 0) {
          await this.aside.put(expired);
          this.queue.ack(expired.length);
        }
      } catch (err) {
        this.ctx.logger.error(
          { err: (err as Error).message },
          'cannot set expired records aside as dead letters; they stay queued',
        );
        return;
      } finally {
        this.queue.rewind();
      }
      if (expired.length < batch.length) return;
    }
  }
}
