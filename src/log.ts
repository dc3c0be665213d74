import { createRequire } from 'node:module';
import { pino, type Logger } from 'pino';
import type PinoPretty from 'pino-pretty';

export type { Logger };

export interface LogOptions {
  level: string;
  format: 'auto' | 'json' | 'pretty';
}

/**
 * Fields that may hold a secret, at any of the first levels of a log object: their values are
 * replaced before a line is written, whatever logged them.
 */
export const SECRET_FIELDS = [
  'token',
  'tokens',
  'password',
  'secret',
  'authorization',
  'bearer',
  'private_key',
  'passphrase',
];
const REDACT = SECRET_FIELDS.flatMap((f) => [f, `*.${f}`, `*.*.${f}`, `headers.authorization`]);

/** sluice's own log on stderr: JSON lines, or readable text when stderr is a terminal. */
export function createLogger(options: LogOptions, destination: pino.DestinationStream | null = null): Logger {
  const usePretty = options.format === 'pretty' || (options.format === 'auto' && process.stderr.isTTY === true);
  const base = {
    level: options.level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: [...new Set(REDACT)], censor: '[redacted]' },
  };
  if (destination) return pino(base, destination);
  if (usePretty) {
    // Loaded only for a terminal: a service logging JSON never pays for it.
    const pretty = createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty;
    return pino(base, pretty({ destination: 2, sync: true, colorize: process.stderr.isTTY === true, ignore: 'pid' }));
  }
  return pino(base, pino.destination({ dest: 2, sync: true }));
}

/**
 * Lets a repeating message through at most once per `intervalMs` per key; the next line that is
 * let through carries `repeats_suppressed`, the number left out meanwhile.
 */
export class RateLimitedLog {
  private readonly last = new Map<string, { at: number; suppressed: number }>();

  constructor(private readonly intervalMs = 1000) {}

  /** Logs through `write` unless this key logged within the interval. */
  log(key: string, write: (extra: { repeats_suppressed?: number }) => void): void {
    const now = Date.now();
    const entry = this.last.get(key);
    if (entry && now - entry.at < this.intervalMs) {
      entry.suppressed++;
      return;
    }
    const suppressed = entry?.suppressed ?? 0;
    if (this.last.size > 1000) this.last.clear();
    this.last.set(key, { at: now, suppressed: 0 });
    write(suppressed > 0 ? { repeats_suppressed: suppressed } : {});
  }
}

/** A logger that drops everything, for tools and tests. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
