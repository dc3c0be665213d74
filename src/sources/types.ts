import type { Logger } from '../log.js';
import type { Router } from '../pipeline/router.js';
import type { RecordOrigin } from '../record.js';
import type { SourceCounters, SourceStats } from '../stats.js';

export interface SourceContext {
  name: string;
  router: Router;
  logger: Logger;
  stateDir: string;
  hostname: string;
  /** The agent's counters: a source counts into its own (`of(name)`); others report its records' fates there. */
  counters: SourceCounters;
  /** Told of failed writes under state_dir (the load-shedding gate). */
  diskHealth?: { failed(err: Error, what: string): void };
  /** True while the load-shedding gate is latched: sources that can answer with an error do. */
  shedding?: () => boolean;
}

export interface Source {
  readonly name: string;
  readonly stats: SourceStats;
  /** Starts listening or reading; resolves when ready, rejects when it cannot (port taken...). */
  start(): Promise<void>;
  /** Stops taking input and settles what was taken (checkpoints written). */
  stop(): Promise<void>;
  /** Where it listens or what it follows, for `sluice check` and the log. */
  describe(): string;
}

/** Where the records of one syslog connection (TCP, TLS, RELP) come from: its source and its peer's address. */
export function syslogOrigin(source: string, peer: string, lenient: boolean, counters: SourceCounters): RecordOrigin {
  return { source, from: peer, format: 'syslog', lenient, counters };
}
