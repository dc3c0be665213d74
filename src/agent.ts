import { mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { buildDestination, buildMemoryQueue, buildSource, openQueue } from './components.js';
import type { SluiceConfig } from './config/schema.js';
import type { Destination, DestinationStats } from './destinations/types.js';
import type { Logger } from './log.js';
import { Router } from './pipeline/router.js';
import { inspectQueueFile } from './queue/disk/inspect.js';
import { QUEUE_FILE } from './queue/disk/reliable-queue.js';
import { findOrphans, startDrain, type Drain } from './queue/orphans.js';
import type { DestinationQueue, QueueStats } from './queue/types.js';
import type { SourceStats } from './record.js';
import type { Source } from './sources/types.js';

export interface OrphanStats {
  dir: string;
  /** Records in it when sluice started (or now, while it is being drained). */
  records: number;
  /** The destination draining it (drain_orphans), or null: it waits for an operator. */
  drainingInto: string | null;
  drained: boolean;
}

export interface AgentStats {
  sources: Record<string, SourceStats & { address: string }>;
  destinations: Record<string, DestinationStats & { address: string; queue: QueueStats }>;
  orphans: Record<string, OrphanStats>;
}

/** Sources, queues, router and destinations built from one config, started and stopped together. */
export class Agent {
  readonly sources = new Map<string, Source>();
  readonly destinations = new Map<string, Destination>();
  readonly queues = new Map<string, DestinationQueue>();

  router: Router | null = null;
  readonly orphans = new Map<string, OrphanStats>();
  private readonly drains: Drain[] = [];
  readonly stateDir: string;
  private readonly hostname: string;
  private started = false;

  /** `planOnly` builds every component without opening files or sockets (for `sluice check`). */
  constructor(
    readonly config: SluiceConfig,
    private readonly logger: Logger,
    options: { planOnly?: boolean } = {},
  ) {
    this.stateDir = path.resolve(config.state_dir);
    this.hostname = config.hostname ?? os.hostname();
    if (options.planOnly) {
      this.build(new Map(Object.entries(config.destinations).map(([name, dc]) => [name, buildMemoryQueue(name, dc.queue)])));
    }
  }

  private build(queues: Map<string, DestinationQueue>): void {
    const { config, logger, hostname } = this;
    for (const [name, queue] of queues) {
      this.queues.set(name, queue);
      this.destinations.set(name, buildDestination(config.destinations[name]!, { name, queue, logger: logger.child({ destination: name }), hostname }));
    }
    const router = new Router(config.pipelines, this.queues, { blockTimeout: (d) => config.destinations[d]!.queue.block_timeout, logger });
    this.router = router;
    for (const [name, sc] of Object.entries(config.sources)) {
      this.sources.set(name, buildSource(sc, { name, router, logger: logger.child({ source: name }), stateDir: this.stateDir, hostname }));
    }
  }

  /** Opens every queue (disk queues take their lock and recover), then builds the components. */
  private async openQueues(): Promise<Map<string, DestinationQueue>> {
    const queues = new Map<string, DestinationQueue>();
    const statsOf = (source: string) => this.sources.get(source)?.stats;
    try {
      for (const [name, dc] of Object.entries(this.config.destinations)) {
        queues.set(name, await openQueue(name, dc.queue, this.stateDir, this.logger.child({ destination: name }), statsOf));
      }
    } catch (err) {
      await Promise.all([...queues.values()].map((q) => q.dispose().catch(() => undefined)));
      throw err;
    }
    return queues;
  }

  async start(): Promise<void> {
    await mkdir(this.stateDir, { recursive: true });
    if (this.destinations.size > 0) throw new Error('an agent starts once');
    this.build(await this.openQueues());
    for (const d of this.destinations.values()) d.start();
    const results = await Promise.allSettled([...this.sources.values()].map((s) => s.start()));
    const failed = results.flatMap((r, i) => (r.status === 'rejected' ? [[[...this.sources.keys()][i]!, r.reason as Error] as const] : []));
    if (failed.length > 0) {
      await this.stop();
      throw new Error(failed.map(([name, err]) => `source ${name} cannot start: ${err.message}`).join('; '));
    }
    this.started = true;
    for (const [name, s] of this.sources) this.logger.info({ source: name, listen: s.describe() }, 'source ready');
    for (const [name, d] of this.destinations) this.logger.info({ destination: name, target: d.describe() }, 'destination ready');
    await this.handleOrphans();
  }

  /** Reports every orphan queue; drains those listed in drain_orphans. Never deletes one that is not empty. */
  private async handleOrphans(): Promise<void> {
    const orphans = findOrphans(this.stateDir, Object.keys(this.config.destinations));
    const wanted = new Map(Object.entries(this.config.drain_orphans));
    for (const o of orphans) {
      const target = wanted.get(o.name) ?? null;
      wanted.delete(o.name);
      const info = await inspectQueueFile(path.join(o.dir, QUEUE_FILE), true).catch(() => null);
      const stats: OrphanStats = { dir: o.dir, records: (info?.records ?? 0) + (info?.memoryRecords ?? 0), drainingInto: target, drained: false };
      this.orphans.set(o.name, stats);
      if (!target) {
        this.logger.warn(
          { orphan: o.name, dir: o.dir, records: stats.records },
          'queue directory with no configured destination (an orphan): its records are kept; send them on with `sluice queue drain DIR --to DESTINATION` or drain_orphans',
        );
        continue;
      }
      try {
        const drain = await startDrain(o, target, this.config.destinations[target]!, this.logger, this.hostname);
        stats.records = drain.initial;
        this.drains.push(drain);
        void drain.done.then((r) => (stats.drained = r.drained));
      } catch (err) {
        this.logger.error({ orphan: o.name, dir: o.dir, err: (err as Error).message }, 'cannot drain the orphan queue; it is left as it is');
      }
    }
    for (const name of wanted.keys()) this.logger.warn({ orphan: name }, 'drain_orphans names a queue that does not exist (already drained?)');
  }

  /** Stops taking input, then lets destinations drain for up to shutdown_timeout. */
  async stop(): Promise<void> {
    await Promise.all([...this.sources.values()].map((s) => s.stop().catch((err: Error) => this.logger.error({ err }, 'source stop failed'))));
    const deadline = this.config.shutdown_timeout;
    const drains = Promise.all(this.drains.map((d) => d.stop(deadline).catch((err: Error) => this.logger.error({ err }, 'stopping an orphan drain failed'))));
    const left = await Promise.all([...this.destinations.values()].map((d) => d.stop(deadline).then((n) => [d.name, n] as const)));
    for (const [name, n] of left) {
      if (n > 0 && this.config.destinations[name]!.queue.mode === 'memory') {
        this.logger.error({ destination: name, records: n }, 'shutdown timeout: records still queued in memory were not delivered');
      } else if (n > 0) {
        this.logger.info({ destination: name, records: n }, 'records stay in the disk queue for the next start');
      }
    }
    await drains;
    await Promise.all([...this.queues.values()].map((q) => q.dispose().catch((err: Error) => this.logger.error({ err }, 'closing a queue failed'))));
    this.started = false;
  }

  get running(): boolean {
    return this.started;
  }

  stats(): AgentStats {
    const out: AgentStats = { sources: {}, destinations: {}, orphans: {} };
    for (const [name, o] of this.orphans) out.orphans[name] = { ...o };
    for (const [name, s] of this.sources) out.sources[name] = { ...s.stats, dropped: { ...s.stats.dropped }, address: s.describe() };
    for (const [name, d] of this.destinations) out.destinations[name] = { ...d.stats, address: d.describe(), queue: d.queue.stats() };
    return out;
  }
}
