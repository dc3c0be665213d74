/** Facility and severity names as syslog-ng, rsyslog and logger spell them. */
export const FACILITY_NAMES = [
  'kern',
  'user',
  'mail',
  'daemon',
  'auth',
  'syslog',
  'lpr',
  'news',
  'uucp',
  'cron',
  'authpriv',
  'ftp',
  'ntp',
  'security',
  'console',
  'solaris-cron',
  'local0',
  'local1',
  'local2',
  'local3',
  'local4',
  'local5',
  'local6',
  'local7',
] as const;

export const SEVERITY_NAMES = ['emerg', 'alert', 'crit', 'err', 'warning', 'notice', 'info', 'debug'] as const;

export type FacilityName = (typeof FACILITY_NAMES)[number];
export type SeverityName = (typeof SEVERITY_NAMES)[number];

export function facilityName(code: number): string {
  return FACILITY_NAMES[code] ?? String(code);
}

export function severityName(code: number): string {
  return SEVERITY_NAMES[code] ?? String(code);
}
