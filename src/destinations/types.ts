import type { Logger } from '../log.js';
import type { DestinationQueue } from '../queue/types.js';
import type { DeadLetterSink, DeadLetterStats } from './dead-letters.js';

/** How a destination sets records aside (see DeadLetter). */
export interface SetAsideOptions {
  sink: DeadLetterSink;
  /** Records older than this (ms since they were received) are set aside unsent; 0: never. */
  maxAge: number;
  /** A record that failed this many times in a row, alone, is set aside. */
  maxRecordAttempts: number;
}

export interface DestinationContext {
  name: string;
  queue: DestinationQueue;
  logger: Logger;
  hostname: string;
  /** Absent (tools, orphan drains): set-aside records are dropped, counted and logged. */
  setAside?: SetAsideOptions;
}

export interface DestinationStats extends DeadLetterStats {
  /** Records handed to the network or the file system. */
  sent: number;
  /** Records confirmed delivered (written and, where configured, fsynced) and freed from the queue. */
  delivered: number;
  /** Failed deliveries; their records stay queued and are sent again. */
  failures: number;
  /** Records sent again after a failed delivery (at-least-once repeats). */
  replayed: number;
  /** Errors the receiver reported (protocol error frames, refused upgrades, RELP non-200 answers). */
  serverErrors?: number;
  /** exactly_once file destinations: records not written again because their stream position was. */
  duplicatesSkipped?: number;
  /** exactly_once file destinations: streams forgotten after `exactly_once_retention` without a write. */
  streamsForgotten?: number;
  reconnectAttempts: number;
  reconnects: number;
  connected: boolean;
}

export interface Destination {
  readonly name: string;
  readonly queue: DestinationQueue;
  readonly stats: DestinationStats;
  start(): void;
  /**
   * Sends what is queued until the queue is empty or `timeoutMs` passes, then closes. Resolves to the records left
   * behind.
   */
  stop(timeoutMs: number): Promise<number>;
  describe(): string;
}

/** A destination's figures at start: everything zero, not connected. */
export function newDestinationStats(): DestinationStats {
  return {
    sent: 0,
    delivered: 0,
    failures: 0,
    replayed: 0,
    reconnectAttempts: 0,
    reconnects: 0,
    connected: false,
    deadLettered: {},
    deadLetterDropped: 0,
  };
}
