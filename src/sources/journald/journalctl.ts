import { spawn } from 'node:child_process';
import { ExportReader, type JournalEntry } from './export-format.js';
import type { MatchGroup } from './journal-file.js';

/** Which journal, and which of its entries: the arguments every journalctl run of a source shares. */
export interface JournalSelection {
  directory?: string;
  namespace?: string;
  units: readonly string[];
  identifiers: readonly string[];
  matches: readonly string[];
}

/** The journal to open (`--directory`, `--namespace`), without the entry filters. */
export function journalArgs(s: JournalSelection): string[] {
  const args: string[] = [];
  if (s.directory) args.push(`--directory=${s.directory}`);
  if (s.namespace) args.push(`--namespace=${s.namespace}`);
  return args;
}

/** The journal and the filters: units, identifiers, then raw matches (positional, last). */
export function selectionArgs(s: JournalSelection): string[] {
  return [
    ...journalArgs(s),
    ...s.units.map((u) => `--unit=${u}`),
    ...s.identifiers.map((i) => `--identifier=${i}`),
    ...s.matches,
  ];
}

/**
 * The entry filters journalctl's identifiers and matches make, for reading the files directly:
 * groups that must all hold, each a field and the values it may have. As journalctl builds them:
 * the identifiers are one group (SYSLOG_IDENTIFIER), and the matches one group per field, apart
 * from the identifiers' even for SYSLOG_IDENTIFIER (journalctl puts a conjunction between the two).
 * Undefined with none.
 */
export function selectionMatch(s: JournalSelection): MatchGroup[] | undefined {
  const groups: MatchGroup[] = [];
  if (s.identifiers.length > 0)
    groups.push({ field: 'SYSLOG_IDENTIFIER', values: s.identifiers.map((i) => Buffer.from(i)) });
  const byField = new Map<string, Buffer[]>();
  for (const m of s.matches) {
    const eq = m.indexOf('=');
    const field = m.slice(0, eq);
    byField.set(field, [...(byField.get(field) ?? []), Buffer.from(m.slice(eq + 1))]);
  }
  for (const [field, values] of byField) groups.push({ field, values });
  return groups.length > 0 ? groups : undefined;
}

export interface OneShot {
  /** The entries read, at most `max`. */
  entries: JournalEntry[];
  /** journalctl's exit code; null when it was stopped after `max` entries. */
  code: number | null;
  stderr: string;
}

/**
 * Runs journalctl without following and reads at most `max` entries of its export output, then
 * stops it. For a look at the journal (its last entry, whether a cursor is still there).
 */
export function journalctlOnce(program: string, args: string[], max: number, timeoutMs = 15_000): Promise<OneShot> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, ['--output=export', '--no-pager', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const reader = new ExportReader(1 << 20);
    const entries: JournalEntry[] = [];
    let stderr = '';
    let enough = false;
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.on('data', (chunk: Buffer) => {
      if (enough) return;
      try {
        reader.push(chunk, entries);
      } catch {
        enough = true; // not the format: what was read so far stands
      }
      if (entries.length >= max) {
        enough = true;
        child.kill('SIGTERM');
      }
    });
    child.stderr.on('data', (d: Buffer) => {
      if (stderr.length < 4096) stderr += d.toString();
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ entries: entries.slice(0, max), code: enough ? null : code, stderr: stderr.trim() });
    });
  });
}
