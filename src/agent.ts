import { isDeepStrictEqual } from 'node:util';
import { mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Registry } from 'prom-client';
import { buildDestination, buildMemoryQueue, buildSource, loadComponents, openQueue } from './components.js';
import type { QueueConfig, SluiceConfig } from './config/schema.js';
import {
  deadLetterFile,
  DestinationDeadLetters,
  DropDeadLetters,
  FileDeadLetters,
} from './destinations/dead-letters.js';
import type { Destination, SetAsideOptions } from './destinations/types.js';
import type { Logger } from './log.js';
import { Router } from './pipeline/router.js';
import { inspectQueueFile } from './queue/disk/inspect.js';
import { QueueLayout } from './queue/layout.js';
import { findOrphans, startDrain, type Drain } from './queue/orphans.js';
import type { DestinationQueue } from './queue/types.js';
import { SourceCounters, type AgentStats, type AgentStatus, type OrphanStats } from './stats.js';
import type { Source } from './sources/types.js';
import { AdminServer } from './ops/admin.js';
import { LoadGate } from './ops/gate.js';
import { version } from './version.js';

export interface ReloadResult {
  kept: string[];
  started: string[];
  restarted: string[];
  stopped: string[];
  errors: string[];
}

/** A reload that cannot be applied component by component (state_dir changed). */
export class ReloadNeedsRestart extends Error {}

/** Sources, queues, router and destinations built from one config, started and stopped together. */
export class Agent {
  readonly sources = new Map<string, Source>();
  readonly destinations = new Map<string, Destination>();
  readonly queues = new Map<string, DestinationQueue>();

  router: Router | null = null;
  readonly orphans = new Map<string, OrphanStats>();
  /** Every source's counters, kept across reloads (a restarted source counts on). */
  readonly counters = new SourceCounters();
  private readonly drains: Drain[] = [];
  readonly stateDir: string;
  private hostname: string;
  private started = false;
  private readonly startedAt = Date.now();
  readonly gate: LoadGate;
  private admin: AdminServer | null = null;
  /** Built at the first scrape: prom-client is loaded only when someone reads /metrics. */
  private metrics: Promise<Registry> | null = null;
  /** Sources that failed to start at a reload: readiness fails while any is listed. */
  private readonly failedSources = new Map<string, string>();

  /**
   * `planOnly` builds every component without opening files or sockets (for `sluice check`); the
   * config's component types must have been loaded first (loadComponents).
   */
  constructor(
    public config: SluiceConfig,
    private readonly logger: Logger,
    options: { planOnly?: boolean } = {},
  ) {
    this.stateDir = path.resolve(config.state_dir);
    this.hostname = config.hostname ?? os.hostname();
    this.gate = new LoadGate(gateOptions(config), logger.child({ component: 'load_shedding' }));
    if (options.planOnly) {
      this.build(
        new Map(Object.entries(config.destinations).map(([name, dc]) => [name, buildMemoryQueue(name, dc.queue)])),
      );
    }
  }

  private build(queues: Map<string, DestinationQueue>): void {
    for (const [name, queue] of queues) this.addDestination(name, queue);
    this.router = new Router(this.config.pipelines, this.queues, this.routerOptions());
    for (const name of Object.keys(this.config.sources)) this.addSource(name);
  }

  private routerOptions() {
    const config = this.config;
    return {
      blockTimeout: (d: string) => config.destinations[d]!.queue.block_timeout,
      logger: this.logger,
      gate: this.gate,
      counters: this.counters,
    };
  }

  private addDestination(name: string, queue: DestinationQueue): Destination {
    this.queues.set(name, queue);
    const config = this.config.destinations[name]!;
    const logger = this.logger.child({ destination: name });
    const d = buildDestination(config, {
      name,
      queue,
      logger,
      hostname: this.hostname,
      setAside: this.setAsideFor(name, config.queue, logger),
    });
    this.destinations.set(name, d);
    return d;
  }

  /** Where a destination's set-aside records go (its queue's `dead_letter`), counted in its stats. */
  private setAsideFor(name: string, q: QueueConfig, logger: Logger): SetAsideOptions {
    const sink =
      q.dead_letter === 'drop'
        ? new DropDeadLetters(logger)
        : q.dead_letter === 'file'
          ? new FileDeadLetters(deadLetterFile(this.stateDir, name), name, logger)
          : new DestinationDeadLetters(
              q.dead_letter,
              (n) => this.queues.get(n),
              name,
              logger,
              this.hostname,
              this.counters,
            );
    return { sink, maxAge: q.max_age, maxRecordAttempts: q.max_record_attempts };
  }

  private addSource(name: string): Source {
    const s = buildSource(this.config.sources[name]!, {
      name,
      router: this.router!,
      logger: this.logger.child({ source: name }),
      stateDir: this.stateDir,
      hostname: this.hostname,
      counters: this.counters,
      diskHealth: this.gate,
      shedding: () => this.gate.latched,
    });
    this.sources.set(name, s);
    return s;
  }

  private openQueue(name: string): Promise<DestinationQueue> {
    return openQueue(
      name,
      this.config.destinations[name]!.queue,
      this.stateDir,
      this.logger.child({ destination: name }),
      this.counters,
      this.gate,
    );
  }

  /** Opens every queue (disk queues take their lock and recover), then builds the components. */
  private async openQueues(): Promise<Map<string, DestinationQueue>> {
    const queues = new Map<string, DestinationQueue>();
    try {
      for (const name of Object.keys(this.config.destinations)) queues.set(name, await this.openQueue(name));
    } catch (err) {
      await Promise.all([...queues.values()].map((q) => q.dispose().catch(() => undefined)));
      throw err;
    }
    return queues;
  }

  async start(): Promise<void> {
    await mkdir(this.stateDir, { recursive: true });
    if (this.destinations.size > 0) throw new Error('an agent starts once');
    await loadComponents(this.config);
    this.build(await this.openQueues());
    for (const d of this.destinations.values()) d.start();
    const results = await Promise.allSettled([...this.sources.values()].map((s) => s.start()));
    const failed = results.flatMap((r, i) =>
      r.status === 'rejected' ? [[[...this.sources.keys()][i]!, r.reason as Error] as const] : [],
    );
    if (failed.length > 0) {
      await this.stop();
      throw new Error(failed.map(([name, err]) => `source ${name} cannot start: ${err.message}`).join('; '));
    }
    this.started = true;
    for (const [name, s] of this.sources) this.logger.info({ source: name, listen: s.describe() }, 'source ready');
    for (const [name, d] of this.destinations)
      this.logger.info({ destination: name, target: d.describe() }, 'destination ready');
    await this.startAdmin();
    await this.handleOrphans();
  }

  private async startAdmin(): Promise<void> {
    const a = this.config.admin;
    if (!a.enabled) return;
    const metrics = () =>
      (this.metrics ??= import('./ops/metrics.js').then((m) =>
        m.createMetrics({
          stats: () => this.stats(),
          gate: () => this.gate.snapshot(),
          ready: () => this.notReady() === null,
        }),
      ));
    const admin = new AdminServer(
      { metrics, stats: () => this.status(), notReady: () => this.notReady() },
      this.logger.child({ component: 'admin' }),
      a.allowed_hosts,
    );
    if (await admin.start(a.address.host, a.address.port)) this.admin = admin;
  }

  /** Where the admin listener listens (host:port), or null. */
  adminAddress(): string | null {
    return this.admin?.address() ?? null;
  }

  /** Why the agent is not ready, or null when it is: every source runs and the gate is open. */
  notReady(): string[] | null {
    const reasons: string[] = [];
    if (!this.started) reasons.push('not started');
    if (this.gate.latched) reasons.push(`load shedding: ${this.gate.snapshot().reason}`);
    for (const [name, why] of this.failedSources) reasons.push(`source ${name} is not running: ${why}`);
    return reasons.length > 0 ? reasons : null;
  }

  status(): AgentStatus {
    const mem = process.memoryUsage();
    const notReady = this.notReady();
    const pipelines: AgentStatus['pipelines'] = {};
    for (const [name, p] of Object.entries(this.config.pipelines))
      pipelines[name] = { from: p.from, to: p.to, where: p.where !== undefined };
    return {
      version: version(),
      pid: process.pid,
      time: Date.now(),
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      ready: notReady === null,
      notReady: notReady ?? [],
      gate: this.gate.snapshot(),
      pipelines,
      process: { rssBytes: mem.rss, heapUsedBytes: mem.heapUsed },
      ...this.stats(),
    };
  }

  /**
   * Applies a new configuration without a restart: sources and destinations whose settings did
   * not change keep running, with their connections and queues; changed ones are stopped and
   * started again, removed ones stopped (a removed destination's disk queue stays, reported as an
   * orphan), added ones started. Intake is held while queues are swapped, so no record is pushed
   * into a queue that is closing. Throws ReloadNeedsRestart when state_dir changed.
   */
  async reload(next: SluiceConfig): Promise<ReloadResult> {
    if (path.resolve(next.state_dir) !== this.stateDir) throw new ReloadNeedsRestart('state_dir changed');
    await loadComponents(next);
    const prev = this.config;
    const result: ReloadResult = { kept: [], started: [], restarted: [], stopped: [], errors: [] };
    const same = (kind: 'sources' | 'destinations', name: string) =>
      isDeepStrictEqual(prev[kind][name], next[kind][name]);
    const diff = (kind: 'sources' | 'destinations') => {
      const old = Object.keys(prev[kind]);
      const now = Object.keys(next[kind]);
      return {
        keep: old.filter((n) => n in next[kind] && same(kind, n)),
        change: old.filter((n) => n in next[kind] && !same(kind, n)),
        remove: old.filter((n) => !(n in next[kind])),
        add: now.filter((n) => !(n in prev[kind])),
      };
    };
    const src = diff('sources');
    const dst = diff('destinations');
    (this.logger as { level: string }).level = next.log.level;
    this.gate.configure(gateOptions(next));
    this.hostname = next.hostname ?? os.hostname();

    const release = this.router!.hold();
    try {
      // Stop what goes away or changes: sources first (they stop reading), then destinations (drain, close the queue).
      await Promise.all(
        [...src.change, ...src.remove].map(async (name) => {
          await this.sources
            .get(name)
            ?.stop()
            .catch((err: Error) => result.errors.push(`source ${name}: ${err.message}`));
          this.sources.delete(name);
          this.failedSources.delete(name);
        }),
      );
      await Promise.all(
        [...dst.change, ...dst.remove].map(async (name) => {
          const d = this.destinations.get(name)!;
          const left = await d.stop(prev.shutdown_timeout);
          if (left > 0 && prev.destinations[name]!.queue.mode === 'memory') {
            this.logger.error(
              { destination: name, records: left },
              'reload: records still queued in memory for a changed or removed destination were not delivered',
            );
          }
          await this.queues
            .get(name)!
            .dispose()
            .catch((err: Error) => result.errors.push(`queue ${name}: ${err.message}`));
          this.destinations.delete(name);
          this.queues.delete(name);
        }),
      );
      this.config = next;
      // Open and start what is new or changed.
      for (const name of [...dst.change, ...dst.add]) {
        try {
          this.addDestination(name, await this.openQueue(name)).start();
        } catch (err) {
          result.errors.push(`destination ${name}: ${(err as Error).message}`);
          this.logger.error({ destination: name, err: (err as Error).message }, 'reload: destination cannot start');
        }
      }
      // Pipelines may name a destination that failed to start: route only to those that run.
      const pipelines = Object.fromEntries(
        Object.entries(next.pipelines).map(([n, p]) => [n, { ...p, to: p.to.filter((d) => this.queues.has(d)) }]),
      );
      this.router!.update(
        Object.fromEntries(Object.entries(pipelines).filter(([, p]) => p.to.length > 0)),
        this.queues,
        this.routerOptions(),
      );
    } finally {
      release();
    }
    for (const name of [...src.change, ...src.add]) {
      const s = this.addSource(name);
      try {
        await s.start();
        this.logger.info({ source: name, listen: s.describe() }, 'source ready');
      } catch (err) {
        this.sources.delete(name);
        this.failedSources.set(name, (err as Error).message);
        result.errors.push(`source ${name}: ${(err as Error).message}`);
        this.logger.error({ source: name, err: (err as Error).message }, 'reload: source cannot start');
      }
    }
    if (!isDeepStrictEqual(prev.admin, next.admin)) {
      await this.admin?.stop();
      this.admin = null;
      await this.startAdmin();
    }
    for (const [name, d] of [...dst.remove.map((n) => [n, prev.destinations[n]!] as const)]) {
      if (d.queue.mode !== 'memory')
        this.logger.warn(
          { destination: name },
          'reload: the removed destination leaves its disk queue behind (an orphan; nothing is deleted)',
        );
    }
    this.orphans.clear();
    await this.handleOrphans();
    result.kept = [...src.keep.map((n) => `source ${n}`), ...dst.keep.map((n) => `destination ${n}`)];
    result.restarted = [...src.change.map((n) => `source ${n}`), ...dst.change.map((n) => `destination ${n}`)];
    result.started = [...src.add.map((n) => `source ${n}`), ...dst.add.map((n) => `destination ${n}`)];
    result.stopped = [...src.remove.map((n) => `source ${n}`), ...dst.remove.map((n) => `destination ${n}`)];
    return result;
  }

  /** Reports every orphan queue; drains those listed in drain_orphans. Never deletes one that is not empty. */
  private async handleOrphans(): Promise<void> {
    const orphans = findOrphans(this.stateDir, Object.keys(this.config.destinations));
    const wanted = new Map(Object.entries(this.config.drain_orphans));
    for (const o of orphans) {
      const target = wanted.get(o.name) ?? null;
      wanted.delete(o.name);
      const active = this.drains.find((d) => d.orphan.name === o.name);
      if (active) {
        // Already being drained (since start or an earlier reload).
        this.orphans.set(o.name, {
          dir: o.dir,
          records: active.queue.stats().records,
          drainingInto: active.destination.name,
          drained: false,
        });
        continue;
      }
      const info = await inspectQueueFile(new QueueLayout(o.dir).ring, true).catch(() => null);
      const stats: OrphanStats = {
        dir: o.dir,
        records: (info?.records ?? 0) + (info?.memoryRecords ?? 0),
        drainingInto: target,
        drained: false,
      };
      this.orphans.set(o.name, stats);
      if (!target) {
        this.logger.warn(
          { orphan: o.name, dir: o.dir, records: stats.records },
          'queue directory with no configured destination (an orphan): its records are kept; send them on with ' +
            '`sluice queue drain DIR --to DESTINATION` or drain_orphans',
        );
        continue;
      }
      try {
        const drain = await startDrain(
          o,
          target,
          (name, queue, logger) =>
            buildDestination(this.config.destinations[target]!, { name, queue, logger, hostname: this.hostname }),
          this.logger,
          this.counters,
        );
        stats.records = drain.initial;
        this.drains.push(drain);
        void drain.done.then((r) => (stats.drained = r.drained));
      } catch (err) {
        this.logger.error(
          { orphan: o.name, dir: o.dir, err: (err as Error).message },
          'cannot drain the orphan queue; it is left as it is',
        );
      }
    }
    for (const name of wanted.keys())
      this.logger.warn({ orphan: name }, 'drain_orphans names a queue that does not exist (already drained?)');
  }

  /** Stops taking input, then lets destinations drain for up to shutdown_timeout. */
  async stop(): Promise<void> {
    await Promise.all(
      [...this.sources.values()].map((s) =>
        s.stop().catch((err: Error) => this.logger.error({ err }, 'source stop failed')),
      ),
    );
    const deadline = this.config.shutdown_timeout;
    const drains = Promise.all(
      this.drains.map((d) =>
        d.stop(deadline).catch((err: Error) => this.logger.error({ err }, 'stopping an orphan drain failed')),
      ),
    );
    const left = await Promise.all(
      [...this.destinations.values()].map((d) => d.stop(deadline).then((n) => [d.name, n] as const)),
    );
    for (const [name, n] of left) {
      if (n > 0 && this.config.destinations[name]!.queue.mode === 'memory') {
        this.logger.error(
          { destination: name, records: n },
          'shutdown timeout: records still queued in memory were not delivered',
        );
      } else if (n > 0) {
        this.logger.info({ destination: name, records: n }, 'records stay in the disk queue for the next start');
      }
    }
    await drains;
    await Promise.all(
      [...this.queues.values()].map((q) =>
        q.dispose().catch((err: Error) => this.logger.error({ err }, 'closing a queue failed')),
      ),
    );
    await this.admin?.stop();
    this.admin = null;
    this.gate.stop();
    this.started = false;
  }

  get running(): boolean {
    return this.started;
  }

  stats(): AgentStats {
    const out: AgentStats = { sources: {}, destinations: {}, orphans: {} };
    for (const [name, o] of this.orphans) out.orphans[name] = { ...o };
    // Every source counted: those configured (each counts into `counters`), and those no longer
    // configured whose records were still counted (queued before a reload, orphans).
    for (const name of this.counters.names()) {
      const s = this.counters.of(name);
      const address = this.sources.get(name)?.describe() ?? '(not configured)';
      out.sources[name] = { ...s, dropped: { ...s.dropped }, address };
    }
    for (const [name, d] of this.destinations)
      out.destinations[name] = { ...d.stats, address: d.describe(), queue: d.queue.stats() };
    return out;
  }
}

function gateOptions(config: SluiceConfig) {
  return { debounce: config.load_shedding.debounce, quietWindow: config.load_shedding.quiet_window };
}
