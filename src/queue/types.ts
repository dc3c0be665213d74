import type { LogRecord } from '../record.js';

export type FullPolicy = 'block' | 'drop_newest' | 'drop_oldest';

export type QueueMode = 'memory' | 'normal' | 'reliable';

/** Damaged queue files handled since start. */
export interface CorruptionStats {
  /** Files renamed to `.corrupted-<time>`. */
  rotated: number;
  /** Records copied from them into fresh files. */
  salvaged: number;
  /** Records they held unacknowledged (by their newest readable header) that could not be salvaged. */
  lostRecords: number;
  /** Bytes of those records (or, when no header could be read, bytes that held no valid record). */
  lostBytes: number;
  /** Records cut short by a crash during an unsynced write, discarded at open. */
  tornRecords: number;
}

export interface QueueStats {
  mode: QueueMode;
  /** Records waiting, including those handed out and not yet acknowledged. */
  records: number;
  /** Message bytes of those records. */
  bytes: number;
  /** Of `records`, how many are only in memory (lost by a crash in `normal` and `memory` modes). */
  memoryRecords: number;
  /** Bytes the queue holds in memory (records, or the read cache of a disk queue). */
  memoryBytes: number;
  /** Bytes the records occupy in the queue file (frames included). */
  diskBytes: number;
  inFlight: number;
  capacityRecords: number;
  capacityBytes: number;
  pushed: number;
  acked: number;
  /** Records dropped, by reason. */
  dropped: Record<string, number>;
  /** Times a producer found the queue full (or congested) and had to wait (backpressure). */
  stalls: number;
  /** Wall-clock time (ms since the epoch) the oldest waiting record was received; null when empty or unknown. */
  oldestReceivedAt: number | null;
  corruption: CorruptionStats;
}

export function noCorruption(): CorruptionStats {
  return { rotated: 0, salvaged: 0, lostRecords: 0, lostBytes: 0, tornRecords: 0 };
}

/**
 * The queue in front of one destination. Producers (the router) push batches; the destination
 * takes batches, sends them, and acknowledges or rewinds. The disk-backed modes implement the
 * same contract, with `push` resolving once the batch is durable.
 */
export interface DestinationQueue {
  readonly name: string;
  readonly fullPolicy: FullPolicy;
  /**
   * Set when every record this queue hands out carries a `queueSeq` that stays the same across
   * restarts: an id for those numbers (it changes when the queue file is made anew). Receivers
   * that deduplicate (the sluice protocol) key on it.
   */
  readonly durableId?: string;
  /**
   * Appends a batch. Under `drop_newest`/`drop_oldest` a full queue drops (and counts) instead of
   * growing. Returns a promise when the batch becomes committed later; undefined when it already is.
   * `awaited`: the producer waits for that commit before it acknowledges upstream (RELP answers, the
   * sluice protocol's acks, file checkpoints); a disk queue then commits as soon as appends pause
   * instead of at the next `sync_interval`, so a sender waiting with a full window is not held.
   */
  push(records: LogRecord[], awaited?: boolean): Promise<void> | undefined;
  /**
   * Counts the times the queue forgot, on its own, the records it had handed out (a corrupt file
   * rotated and salvaged: they come out again from the fresh file). A destination that sees it
   * change drops its session and rewinds instead of acknowledging: an acknowledgement counted
   * before the change would free records it never sent.
   */
  readonly epoch: number;
  /** True when the queue holds as much as it may. */
  isFull(): boolean;
  /** Resolves once the queue is no longer full (or is closed). */
  waitForSpace(): Promise<void>;
  /**
   * True while more appended data waits to be written to disk than the queue keeps in memory for
   * that. It is not full: records are still taken, but a producer that can wait should, so that a
   * sender faster than the disk does not fill memory. Always false for a memory queue.
   */
  congested(): boolean;
  /** Resolves once the queue is no longer congested (or is closed). */
  waitUncongested(): Promise<void>;
  /**
   * So far behind on its writes (a stalled disk) that a producer that cannot wait (UDP) must drop
   * rather than let memory grow without bound. Always false for a memory queue.
   */
  overloaded(): boolean;
  /** Counts records that a producer could not wait to push. */
  countDrop(reason: string, n: number): void;
  /** Counts a producer that found the queue full and waits. */
  countStall(): void;

  /** Up to `max` records not yet handed out, oldest first; empty when there are none. */
  take(max: number): LogRecord[];
  /** The oldest `count` handed-out records were delivered: free them. */
  ack(count: number): void;
  /** Hands out again every record that was handed out and not acknowledged. */
  rewind(): void;
  /** Resolves when there is something to take (or the queue is closed). */
  waitForRecords(): Promise<void>;

  stats(): QueueStats;
  /** No more pushes; wakes every waiter (the destination is about to drain and stop). */
  close(): Promise<void>;
  /** Releases files and locks, after the destination has stopped. */
  dispose(): Promise<void>;
}
