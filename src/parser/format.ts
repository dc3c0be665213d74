import type { StructuredData, SyslogMessage } from './syslog.js';

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

function escapeParamValue(v: string): string {
  return v.replace(/["\\\]]/g, (c) => `\\${c}`);
}

export function formatStructuredData(sd: StructuredData | null): string {
  if (!sd) return '-';
  let out = '';
  for (const id of Object.keys(sd)) {
    out += `[${id}`;
    const params = sd[id]!;
    for (const name of Object.keys(params)) {
      const v = params[name]!;
      for (const one of typeof v === 'string' ? [v] : v) out += ` ${name}="${escapeParamValue(one)}"`;
    }
    out += ']';
  }
  return out.length === 0 ? '-' : out;
}

/** A header field: NILVALUE when absent, and never a space inside (it would shift every later field). */
function headerField(v: string | null, max: number): string {
  if (v === null || v.length === 0) return '-';
  const clean = v.replace(/[^\x21-\x7e]/g, '_');
  return clean.length > max ? clean.slice(0, max) : clean;
}

/** Serialises to RFC 5424. `fallbackTime` stands in for a missing or offset-less timestamp. */
export function formatRfc5424(m: SyslogMessage, fallbackTime?: Date): string {
  let ts = m.timestamp;
  if (ts !== null && !/(Z|[+-]\d{2}:\d{2})$/.test(ts)) {
    // An RFC 3164 time has no offset: like syslog-ng, take it as this host's local time.
    const local = new Date(ts);
    ts = Number.isNaN(local.getTime()) ? null : localIso(local, ts.includes('.') ? ts.slice(ts.indexOf('.')) : '');
  }
  if (ts === null && fallbackTime) ts = fallbackTime.toISOString();
  const bom = m.bom === true ? '\ufeff' : '';
  const msg = m.message.length > 0 || bom ? ` ${bom}${m.message}` : '';
  return (
    `<${m.facility * 8 + m.severity}>1 ${ts ?? '-'} ${headerField(m.hostname, 255)} ` +
    `${headerField(m.appName, 48)} ${headerField(m.procId, 128)} ${headerField(m.msgId, 32)} ` +
    `${formatStructuredData(m.structuredData)}${msg}`
  );
}

const p2 = (n: number) => (n < 10 ? `0${n}` : String(n));

/** `YYYY-MM-DDThh:mm:ss[frac]±hh:mm` in this host's time zone. */
function localIso(d: Date, frac: string): string {
  const off = -d.getTimezoneOffset();
  const sign = off < 0 ? '-' : '+';
  const abs = Math.abs(off);
  return (
    `${d.getFullYear()}-${p2(d.getMonth() + 1)}-${p2(d.getDate())}` +
    `T${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())}` +
    `${frac}${sign}${p2(Math.floor(abs / 60))}:${p2(abs % 60)}`
  );
}

function bsdTime(d: Date): string {
  const day = d.getDate();
  const p = (n: number) => (n < 10 ? `0${n}` : String(n));
  return (
    `${MONTHS[d.getMonth()]} ${day < 10 ? ` ${day}` : day} ` +
    `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`
  );
}

/** Serialises to RFC 3164 (`<PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG`), in the agent's local time. */
export function formatRfc3164(m: SyslogMessage, fallbackTime: Date, localHost: string): string {
  let when = fallbackTime;
  if (m.timestamp !== null) {
    const parsed = new Date(m.timestamp);
    if (!Number.isNaN(parsed.getTime())) when = parsed;
  }
  const host = headerField(m.hostname ?? localHost, 255);
  let tag = '';
  if (m.appName !== null) {
    tag = m.appName.replace(/[\s[\]:]/g, '_').slice(0, 32);
    if (m.procId !== null) tag += `[${m.procId.replace(/[\s\]]/g, '_')}]`;
    tag += ': ';
  }
  return `<${m.facility * 8 + m.severity}>${bsdTime(when)} ${host} ${tag}${m.message}`;
}
