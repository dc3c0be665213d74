import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

export interface LogOptions {
  level: string;
  format: 'auto' | 'json' | 'pretty';
}

/** sluice's own log on stderr: JSON lines, or readable text when stderr is a terminal. */
export function createLogger(options: LogOptions): Logger {
  const usePretty = options.format === 'pretty' || (options.format === 'auto' && process.stderr.isTTY === true);
  const base = { level: options.level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime };
  if (usePretty) {
    return pino(base, pretty({ destination: 2, sync: true, colorize: process.stderr.isTTY === true, ignore: 'pid' }));
  }
  return pino(base, pino.destination({ dest: 2, sync: true }));
}

/** A logger that drops everything, for tools and tests. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
