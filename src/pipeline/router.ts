import type { PipelineConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import type { LoadGate } from '../ops/gate.js';
import type { LogRecord } from '../record.js';
import { SourceCounters } from '../stats.js';
import type { DestinationQueue } from '../queue/types.js';
import { compileWhere, type RecordFilter } from './filter.js';

/** One queue fed by a source, and the filters of the pipelines that lead there (null: no filter, all pass). */
interface Route {
  queue: DestinationQueue;
  filters: RecordFilter[] | null;
  /** How long a producer waits for room in a full `block` queue; 0: forever. */
  blockTimeout: number;
}

/**
 * What a source does when a `block` queue is full. `no`: it cannot wait (UDP), the records are
 * dropped. `drop_after_timeout`: it waits up to the queue's block_timeout, then drops that batch
 * for that queue (TCP: a sender is never hung forever). `keep_waiting`: it holds its data itself
 * (a file), so it waits on, with a warning after the timeout.
 */
export type WaitMode = 'no' | 'drop_after_timeout' | 'keep_waiting';

export interface RouterOptions {
  /** block_timeout of each destination's queue, in ms. */
  blockTimeout?: (destination: string) => number;
  logger?: Logger;
  /** The load-shedding gate: while latched, nothing is queued. */
  gate?: LoadGate;
  /** Where sources' drops are counted (an agent's); the router keeps its own when none is given. */
  counters?: SourceCounters;
}

/**
 * Moves batches from sources into the queues of their pipelines' destinations. A record that
 * several pipelines send to one destination is queued there once.
 */
export class Router {
  private readonly routes = new Map<string, Route[]>();
  private readonly lastStallLog = new Map<DestinationQueue, number>();

  private held: { promise: Promise<void>; release: () => void } | null = null;
  private counters: SourceCounters;

  constructor(
    pipelines: Record<string, PipelineConfig>,
    queues: Map<string, DestinationQueue>,
    private options: RouterOptions = {},
  ) {
    this.counters = options.counters ?? new SourceCounters();
    this.update(pipelines, queues, options);
  }

  /** Replaces every route at once (a reload); sources keep calling the same router. */
  update(
    pipelines: Record<string, PipelineConfig>,
    queues: Map<string, DestinationQueue>,
    options: RouterOptions = this.options,
  ): void {
    this.options = options;
    if (options.counters) this.counters = options.counters;
    const next = new Map<string, Route[]>();
    for (const pipeline of Object.values(pipelines)) {
      const filter = pipeline.where ? compileWhere(pipeline.where) : null;
      for (const source of pipeline.from) {
        let routes = next.get(source);
        if (!routes) next.set(source, (routes = []));
        for (const dest of pipeline.to) {
          const queue = queues.get(dest);
          if (!queue) throw new Error(`pipeline refers to unknown destination ${dest}`);
          let route = routes.find((r) => r.queue === queue);
          if (!route) routes.push((route = { queue, filters: [], blockTimeout: options.blockTimeout?.(dest) ?? 0 }));
          if (filter === null) route.filters = null;
          else route.filters?.push(filter);
        }
      }
    }
    this.routes.clear();
    for (const [k, v] of next) this.routes.set(k, v);
  }

  /**
   * Holds every batch (sources wait, UDP batches are kept in order) until the returned function is
   * called: a reload swaps queues meanwhile, and nothing may be pushed into one being closed.
   */
  hold(): () => void {
    if (this.held) return () => undefined;
    let release!: () => void;
    const promise = new Promise<void>((r) => (release = r));
    this.held = { promise, release };
    return () => {
      const h = this.held;
      this.held = null;
      h?.release();
    };
  }

  /** The queues a source feeds. */
  queuesOf(source: string): DestinationQueue[] {
    return (this.routes.get(source) ?? []).map((r) => r.queue);
  }

  /**
   * Hands a batch to every queue it is routed to. A full `block` queue makes a source that can wait
   * wait (see WaitMode): `accepted` resolves once every queue has taken its part (or the wait gave
   * up), and the source reads nothing more meanwhile (flow control). `committed` resolves once
   * every part is durable (disk queues); sources that acknowledge upstream (file checkpoints) wait
   * for it. Records a queue could not take are dropped and counted, by reason, on the queue and the
   * source. Undefined when all is already done.
   *
   * `withdrawn`: a source that reads its data again when an earlier batch failed (a file) aborts it
   * to take back batches still waiting here (a latched gate, a reload, a full queue): pushed after
   * the earlier batch failed, they would reach the receiver before it is sent again. A withdrawn
   * batch is not queued and not counted as dropped: its source has it.
   */
  dispatch(source: string, records: LogRecord[], wait: WaitMode, withdrawn?: AbortSignal): Dispatch | undefined {
    if (withdrawn?.aborted) return undefined;
    if (this.held && records.length > 0) {
      const later = this.held.promise.then(() => this.dispatch(source, records, wait, withdrawn));
      const result = { accepted: later.then((d) => d?.accepted), committed: later.then((d) => d?.committed) };
      result.committed.catch(() => undefined);
      return result;
    }
    const routes = this.routes.get(source);
    if (!routes || records.length === 0) return undefined;
    const gate = this.options.gate;
    if (gate?.latched) {
      if (wait === 'no') {
        for (const route of routes) route.queue.countDrop('load_shedding', records.length);
        this.counters.dropped(source, 'load_shedding', records.length);
        return undefined;
      }
      // Load shedding: the source waits (TCP reads and file reads pause) until the disk works again.
      for (const route of routes) route.queue.countStall();
      const later = gate.waitOpen().then(() => this.dispatch(source, records, wait, withdrawn));
      const result = { accepted: later.then((d) => d?.accepted), committed: later.then((d) => d?.committed) };
      result.committed.catch(() => undefined);
      return result;
    }
    let accepted: Promise<unknown>[] | undefined;
    let committed: Promise<unknown>[] | undefined;
    for (const route of routes) {
      const batch = route.filters === null ? records : records.filter((r) => route.filters!.some((f) => f(r)));
      if (batch.length === 0) continue;
      const q = route.queue;
      if (q.fullPolicy === 'block' && q.isFull()) {
        if (wait === 'no') {
          q.countDrop('queue_full', batch.length);
          this.counters.dropped(source, 'queue_full', batch.length);
          continue;
        }
        q.countStall();
        // The commit travels in a box: returned bare, it would be adopted, and `accepted` would
        // wait for the fsync and reject when the write failed (a source then skipped the batch).
        const pushed = this.waitForRoom(source, route, wait).then((room) => {
          if (withdrawn?.aborted) return { commit: undefined };
          if (room) return { commit: this.pushInto(source, q, batch, wait) };
          q.countDrop('block_timeout', batch.length);
          this.counters.dropped(source, 'block_timeout', batch.length);
          return { commit: undefined };
        }, failedWait);
        (accepted ??= []).push(pushed);
        (committed ??= []).push(pushed.then(unbox));
      } else {
        if (wait === 'no' && q.overloaded()) {
          // The disk has stalled and this source cannot wait: drop, counted, rather than fill memory.
          q.countDrop('disk_behind', batch.length);
          this.counters.dropped(source, 'disk_behind', batch.length);
          continue;
        }
        const c = this.pushInto(source, q, batch, wait);
        if (c) (committed ??= []).push(c);
        if (wait !== 'no' && q.congested()) {
          // The disk is behind the sender: wait for the writes before reading more (bounded memory).
          q.countStall();
          (accepted ??= []).push(q.waitUncongested().catch(ignore));
        }
      }
    }
    if (!accepted && !committed) return undefined;
    const result = { accepted: allDone(accepted), committed: allDone(committed) };
    // Nobody may be listening for a failed commit (UDP, TCP): it is logged by the queue.
    result.committed?.catch(ignore);
    return result;
  }

  /**
   * Pushes a batch into one queue. A queue that throws fails the batch's commit, not the caller: a
   * source's socket handler or read loop must never die of it, nor wait forever.
   */
  private pushInto(source: string, q: DestinationQueue, batch: LogRecord[], wait: WaitMode): Promise<void> | undefined {
    let c: Promise<void> | undefined;
    try {
      c = q.push(batch, wait === 'keep_waiting');
    } catch (err) {
      this.options.logger?.error(
        { destination: q.name, records: batch.length, err: (err as Error).message },
        'the queue refused a batch: its commit fails',
      );
      c = Promise.reject(err as Error);
    }
    return this.countFailedCommit(c, source, q, batch.length, wait);
  }

  /**
   * A source that holds its data (`keep_waiting`: files, RELP, sluice) sends a batch whose commit
   * failed again, so nothing is lost there. For the others (TCP, UDP) the batch is gone: counted
   * once, on the queue and the source, as `write_failed`.
   */
  private countFailedCommit(
    c: Promise<void> | undefined,
    source: string,
    q: DestinationQueue,
    n: number,
    wait: WaitMode,
  ): Promise<void> | undefined {
    if (!c || wait === 'keep_waiting') return c;
    c.catch(() => {
      q.countDrop('write_failed', n);
      this.counters.dropped(source, 'write_failed', n);
    });
    return c;
  }

  /** True once the queue has room; false when a `drop_after_timeout` wait ran out. */
  private async waitForRoom(source: string, route: Route, wait: WaitMode): Promise<boolean> {
    const q = route.queue;
    if (route.blockTimeout <= 0) {
      await q.waitForSpace();
      return true;
    }
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      q.waitForSpace().then(() => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), route.blockTimeout))),
    ]);
    clearTimeout(timer);
    if (!timedOut) return true;
    this.logStall(source, q, wait, route.blockTimeout);
    if (wait === 'drop_after_timeout') return false;
    await q.waitForSpace();
    return true;
  }

  /** At most one line per queue every 10 s: a stuck destination must not flood the log. */
  private logStall(source: string, q: DestinationQueue, wait: WaitMode, timeout: number): void {
    const now = Date.now();
    if (now - (this.lastStallLog.get(q) ?? 0) < 10_000) return;
    this.lastStallLog.set(q, now);
    this.options.logger?.warn(
      { source, destination: q.name, waited_ms: timeout, queued: q.stats().records },
      wait === 'drop_after_timeout'
        ? 'queue still full after block_timeout: dropping the batch (counted as block_timeout) so the sender is not ' +
            'hung'
        : 'queue still full after block_timeout: the source keeps waiting, its data stays where it is',
    );
  }
}

// Module-level, not closures in dispatch: a closure there would keep the batch alive until its commit.
function ignore(): undefined {
  return undefined;
}

function unbox(b: { commit: Promise<void> | undefined }): Promise<void> | undefined {
  return b.commit;
}

/** Waiting for room failed (the queue closed under it): the batch's commit fails, its acceptance does not. */
function failedWait(err: unknown): { commit: Promise<void> } {
  return { commit: Promise.reject(err as Error) };
}

function allDone(ps: Promise<unknown>[] | undefined): Promise<void> | undefined {
  return ps ? Promise.all(ps).then(ignore) : undefined;
}

/**
 * What a source gets back for a batch; undefined when all is done already. The two never depend on
 * each other: waiting for room never waits for the fsync, and a failed write never fails the wait.
 */
export interface Dispatch {
  /**
   * Resolves once every queue has taken the batch, after waiting for room where the source can
   * wait (or the wait gave up). A source reads nothing more meanwhile. Never rejects.
   */
  accepted: Promise<void> | undefined;
  /** Resolves when the batch is durable in every queue; rejects when a queue could not write it. */
  committed: Promise<void> | undefined;
}
