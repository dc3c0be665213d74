/**
 * What sluice counts, and the one place each source's counters live. Components that drop, repair
 * or fail to parse a record report it here by the source's name (a record's origin carries it); no
 * component holds or bumps another component's counters.
 */
import type { DestinationStats } from './destinations/types.js';
import type { GateState } from './ops/gate.js';
import type { QueueStats } from './queue/types.js';

/** Counters every source keeps; exposed by `Agent.stats()`, /api/v1/stats and /metrics. */
export interface SourceStats {
  received: number;
  receivedBytes: number;
  parseErrors: number;
  truncated: number;
  /** Records dropped, by reason (`oversize`, `queue_full`, ...). */
  dropped: Record<string, number>;
  /** Records taken in with a field the rest of sluice cannot use, set right, by reason (`invalid_time`, ...). */
  repaired: Record<string, number>;
  connectionsAccepted: number;
  connectionsRejected: number;
  connectionErrors: number;
}

export function newSourceStats(): SourceStats {
  return {
    received: 0,
    receivedBytes: 0,
    parseErrors: 0,
    truncated: 0,
    dropped: {},
    repaired: {},
    connectionsAccepted: 0,
    connectionsRejected: 0,
    connectionErrors: 0,
  };
}

/** Adds `n` to `reason` in a by-reason table. */
export function countDrop(dropped: Record<string, number>, reason: string, n = 1): void {
  dropped[reason] = (dropped[reason] ?? 0) + n;
}

/**
 * The counters of every source of one agent, by name. A source takes its own (`of`) and counts
 * what it receives; queues, the router and the parser report what happens to its records later,
 * after a reload or a disk round trip too, by the name in the record's origin. Records of a source
 * no longer configured (an orphan queue drained into another destination) count under that name.
 */
export class SourceCounters {
  private readonly bySource = new Map<string, SourceStats>();

  /** The counters of `source`, made on first use; the same object for the life of the agent. */
  of(source: string): SourceStats {
    let s = this.bySource.get(source);
    if (!s) this.bySource.set(source, (s = newSourceStats()));
    return s;
  }

  dropped(source: string, reason: string, n = 1): void {
    countDrop(this.of(source).dropped, reason, n);
  }

  repaired(source: string, reason: string, n = 1): void {
    countDrop(this.of(source).repaired, reason, n);
  }

  parseError(source: string): void {
    this.of(source).parseErrors++;
  }

  /** Every source counted so far. */
  names(): string[] {
    return [...this.bySource.keys()];
  }

  /**
   * These counters seen through one name: whatever source a record names, it counts under `name`.
   * The sluice source decodes records that name an agent's sources, which mean nothing here.
   */
  as(name: string): SourceCounters {
    return new CountingAs(this, name);
  }
}

class CountingAs extends SourceCounters {
  constructor(
    private readonly base: SourceCounters,
    private readonly name: string,
  ) {
    super();
  }

  override of(): SourceStats {
    return this.base.of(this.name);
  }

  override names(): string[] {
    return [];
  }
}

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

/** The body of /api/v1/stats and what `sluice stats` prints. */
export interface AgentStatus extends AgentStats {
  version: string;
  pid: number;
  /** When this was taken (ms since the epoch). */
  time: number;
  uptimeSeconds: number;
  ready: boolean;
  notReady: string[];
  gate: GateState;
  pipelines: Record<string, { from: string[]; to: string[]; where: boolean }>;
  process: { rssBytes: number; heapUsedBytes: number };
}
