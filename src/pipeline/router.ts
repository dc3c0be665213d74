import type { PipelineConfig } from '../config/schema.js';
import { countDrop, type LogRecord, type SourceStats } from '../record.js';
import type { DestinationQueue } from '../queue/types.js';
import { compileWhere, type RecordFilter } from './filter.js';

/** One queue fed by a source, and the filters of the pipelines that lead there (null: no filter, all pass). */
interface Route {
  queue: DestinationQueue;
  filters: RecordFilter[] | null;
}

/**
 * Moves batches from sources into the queues of their pipelines' destinations. A record that
 * several pipelines send to one destination is queued there once.
 */
export class Router {
  private readonly routes = new Map<string, Route[]>();

  constructor(pipelines: Record<string, PipelineConfig>, queues: Map<string, DestinationQueue>) {
    for (const pipeline of Object.values(pipelines)) {
      const filter = pipeline.where ? compileWhere(pipeline.where) : null;
      for (const source of pipeline.from) {
        let routes = this.routes.get(source);
        if (!routes) this.routes.set(source, (routes = []));
        for (const dest of pipeline.to) {
          const queue = queues.get(dest);
          if (!queue) throw new Error(`pipeline refers to unknown destination ${dest}`);
          let route = routes.find((r) => r.queue === queue);
          if (!route) routes.push((route = { queue, filters: [] }));
          if (filter === null) route.filters = null;
          else route.filters?.push(filter);
        }
      }
    }
  }

  /** The queues a source feeds. */
  queuesOf(source: string): DestinationQueue[] {
    return (this.routes.get(source) ?? []).map((r) => r.queue);
  }

  /**
   * Hands a batch to every queue it is routed to. With `canWait`, a full `block` queue makes the
   * caller wait: `accepted` resolves once every queue has taken its part, and the source reads
   * nothing more meanwhile (flow control). `committed` resolves once every part is durable (disk
   * queues); sources that acknowledge upstream (file checkpoints) wait for it. Without `canWait`
   * (UDP), records for a full queue are dropped and counted. Undefined when all is already done.
   */
  dispatch(source: string, records: LogRecord[], stats: SourceStats, canWait: boolean): Dispatch | undefined {
    const routes = this.routes.get(source);
    if (!routes || records.length === 0) return undefined;
    let accepted: Promise<unknown>[] | undefined;
    let committed: Promise<unknown>[] | undefined;
    for (const route of routes) {
      const batch = route.filters === null ? records : records.filter((r) => route.filters!.some((f) => f(r)));
      if (batch.length === 0) continue;
      const q = route.queue;
      if (q.fullPolicy === 'block' && q.isFull()) {
        if (!canWait) {
          q.countDrop('queue_full', batch.length);
          countDrop(stats.dropped, 'queue_full', batch.length);
          continue;
        }
        const pushed = q.waitForSpace().then(() => q.push(batch));
        (accepted ??= []).push(pushed);
        (committed ??= []).push(pushed.then((c) => c));
      } else {
        const c = q.push(batch);
        if (c) (committed ??= []).push(c);
      }
    }
    if (!accepted && !committed) return undefined;
    const all = (ps: Promise<unknown>[] | undefined) => (ps ? Promise.all(ps).then(() => undefined) : undefined);
    const result = { accepted: all(accepted), committed: all(committed) };
    // Nobody may be listening for a failed commit (UDP, TCP): it is logged by the queue.
    result.committed?.catch(() => undefined);
    return result;
  }
}

export interface Dispatch {
  /** Resolves when every queue has taken the batch (after waiting for room). */
  accepted: Promise<void> | undefined;
  /** Resolves when the batch is durable in every queue; rejects when a queue could not write it. */
  committed: Promise<void> | undefined;
}
