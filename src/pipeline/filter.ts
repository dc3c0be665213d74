import type { WhereConfig } from '../config/schema.js';
import { FACILITY_NAMES, SEVERITY_NAMES } from '../parser/names.js';
import type { LogRecord } from '../record.js';
import { sdParam } from '../template/macros.js';

export type RecordFilter = (r: LogRecord) => boolean;

/** Builds the predicate of a `where:` block; every condition given must hold. */
export function compileWhere(where: WhereConfig): RecordFilter {
  const checks: RecordFilter[] = [];
  if (where.facility) {
    const allowed = new Set(where.facility.map((f) => FACILITY_NAMES.indexOf(f)));
    checks.push((r) => allowed.has(r.message.facility));
  }
  if (where.severity) {
    const allowed = new Set(where.severity.map((s) => SEVERITY_NAMES.indexOf(s)));
    checks.push((r) => allowed.has(r.message.severity));
  }
  if (where.min_severity) {
    const max = SEVERITY_NAMES.indexOf(where.min_severity);
    checks.push((r) => r.message.severity <= max);
  }
  const { host, app, message } = where;
  if (host) checks.push((r) => host.test(r.message.hostname ?? r.origin.from));
  if (app) checks.push((r) => app.test(r.message.appName ?? ''));
  if (message) checks.push((r) => message.test(r.message.message));
  for (const [key, re] of Object.entries(where.sd ?? {})) {
    const { id, param } = sdParam(key);
    checks.push((r) => {
      const v = r.message.structuredData?.[id]?.[param];
      if (v === undefined) return false;
      return Array.isArray(v) ? v.some((x) => re.test(x)) : re.test(v);
    });
  }
  return (r) => {
    for (const c of checks) if (!c(r)) return false;
    return true;
  };
}
