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
   * caller wait: the promise resolves once every queue has taken (and committed) its part, and the
   * source reads nothing more meanwhile. Without it (UDP), records for a full queue are dropped and
   * counted. Returns undefined when everything is already done.
   */
  dispatch(source: string, records: LogRecord[], stats: SourceStats, canWait: boolean): Promise<void> | undefined {
    const routes = this.routes.get(source);
    if (!routes || records.length === 0) return undefined;
    let pending: Promise<void>[] | undefined;
    for (const route of routes) {
      const batch = route.filters === null ? records : records.filter((r) => route.filters!.some((f) => f(r)));
      if (batch.length === 0) continue;
      const q = route.queue;
      let done: Promise<void> | undefined;
      if (q.fullPolicy === 'block' && q.isFull()) {
        if (!canWait) {
          q.countDrop('queue_full', batch.length);
          countDrop(stats.dropped, 'queue_full', batch.length);
          continue;
        }
        done = q.waitForSpace().then(() => q.push(batch));
      } else {
        done = q.push(batch);
      }
      if (done) (pending ??= []).push(done);
    }
    if (!pending) return undefined;
    return pending.length === 1 ? pending[0] : Promise.all(pending).then(() => undefined);
  }
}
