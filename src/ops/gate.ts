import type { Logger } from '../log.js';

export interface GateOptions {
  /** ENOSPC and other write failures latch only when they go on failing this long. */
  debounce: number;
  /** Latched, unlatch once no write has failed for this long; 0: only a restart unlatches. */
  quietWindow: number;
}

export interface GateState {
  latched: boolean;
  reason: string | null;
  /** When it latched (ms since the epoch). */
  since: number | null;
  latches: number;
  writeFailures: number;
}

/** Errors that say the disk itself is gone or read-only: no point waiting to be sure. */
const AT_ONCE = new Set(['EIO', 'EROFS']);

/**
 * Load shedding, after KumoMTA's spool: when the disk under the queues fails, sluice stops
 * accepting (TCP reads pause, UDP drops and counts, readiness fails) instead of taking records it
 * cannot keep. EIO and EROFS latch at once; ENOSPC and other write failures latch when they go on
 * for `debounce`. It unlatches after `quietWindow` without a failure, or only at a restart.
 */
export class LoadGate {
  private state: GateState = { latched: false, reason: null, since: null, latches: 0, writeFailures: 0 };
  private failingSince = 0;
  private lastFailure = 0;
  private waiters: (() => void)[] = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private options: GateOptions,
    private readonly logger: Logger,
  ) {}

  configure(options: GateOptions): void {
    this.options = options;
  }

  get latched(): boolean {
    return this.state.latched;
  }

  snapshot(): GateState {
    return { ...this.state };
  }

  /** A write or fsync under state_dir failed. */
  failed(err: Error, what: string): void {
    const code = (err as NodeJS.ErrnoException).code ?? 'unknown';
    const now = Date.now();
    this.state.writeFailures++;
    this.lastFailure = now;
    if (this.failingSince === 0) this.failingSince = now;
    if (this.state.latched) return;
    if (AT_ONCE.has(code)) this.latch(`${code} writing ${what}: ${err.message}`);
    else if (now - this.failingSince >= this.options.debounce)
      this.latch(`${code} writing ${what} for ${now - this.failingSince} ms: ${err.message}`);
  }

  /** A write or fsync worked: a failure streak is over. */
  ok(): void {
    if (!this.state.latched) this.failingSince = 0;
  }

  /** Resolves when the gate is open. */
  waitOpen(): Promise<void> {
    if (!this.state.latched) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private latch(reason: string): void {
    this.state = { ...this.state, latched: true, reason, since: Date.now(), latches: this.state.latches + 1 };
    this.logger.error(
      {
        reason,
        unlatch:
          this.options.quietWindow > 0
            ? `after ${this.options.quietWindow} ms without a write failure`
            : 'at restart only',
      },
      'load shedding: the state disk is failing; sources stop accepting until it works again',
    );
    if (this.options.quietWindow > 0) this.scheduleCheck(this.options.quietWindow);
  }

  private scheduleCheck(ms: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      const quiet = Date.now() - this.lastFailure;
      if (quiet >= this.options.quietWindow) this.unlatch(quiet);
      else this.scheduleCheck(this.options.quietWindow - quiet);
    }, ms);
    this.timer.unref();
  }

  private unlatch(quietMs: number): void {
    this.logger.warn(
      { latched_for_ms: Date.now() - (this.state.since ?? Date.now()), quiet_ms: quietMs },
      'load shedding over: no write failure for the quiet window; accepting again',
    );
    this.state = { ...this.state, latched: false, reason: null, since: null };
    this.failingSince = 0;
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
