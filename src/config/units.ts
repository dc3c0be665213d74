/** Human sizes and durations in config files: `64KiB`, `10MB`, `50ms`, `5m`. */

const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
};

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/** Bytes from `123`, `64KiB`, `1.5 GB`; null when the text is not a size. */
export function parseSize(input: string | number): number | null {
  if (typeof input === 'number') return Number.isSafeInteger(input) && input >= 0 ? input : null;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(input);
  if (!m) return null;
  const unit = (m[2] ?? '').toLowerCase();
  const factor = unit === '' ? 1 : SIZE_UNITS[unit];
  if (factor === undefined) return null;
  const value = Math.round(Number(m[1]) * factor);
  return Number.isSafeInteger(value) ? value : null;
}

/**
 * Milliseconds from `50ms`, `10s`, `1.5h`, `0`; null when the text is not a duration. A bare number other than 0 has no
 * unit and is refused.
 */
export function parseDuration(input: string | number): number | null {
  if (input === 0 || input === '0') return 0;
  if (typeof input === 'number') return null;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/.exec(input);
  if (!m) return null;
  return Math.round(Number(m[1]) * DURATION_UNITS[m[2]!]!);
}

const SIZE_STEPS = [
  ['TiB', 1024 ** 4],
  ['GiB', 1024 ** 3],
  ['MiB', 1024 ** 2],
  ['KiB', 1024],
] as const;

/**
 * A size for people, in the largest unit it reaches: `64MiB`, `1.5MiB`; rounded down to two
 * decimals when that unit does not hold it exactly, so that it never overstates (`1023.99MiB` for
 * a 1 GiB queue file less its header, not `1048572KiB`).
 */
export function formatSize(bytes: number): string {
  for (const [unit, f] of SIZE_STEPS) {
    if (bytes >= f) return `${Math.floor((bytes / f) * 100) / 100}${unit}`;
  }
  return `${bytes}B`;
}

export function formatDuration(ms: number): string {
  for (const [unit, f] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const) {
    if (ms >= f && ms % f === 0) return `${ms / f}${unit}`;
  }
  return `${ms}ms`;
}
