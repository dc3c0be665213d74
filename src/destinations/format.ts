import { formatRfc3164, formatRfc5424 } from '../parser/format.js';
import type { SyslogMessage } from '../parser/syslog.js';
import type { LogRecord } from '../record.js';

export type OutputFormat = 'raw' | 'rfc5424' | 'rfc3164';

/** The message with a host filled in: the sender's address when the message names none (as RFC 3164 relays do). */
export function withHost(r: LogRecord): SyslogMessage {
  const m = r.message;
  if (m.hostname !== null) return m;
  return { ...m, hostname: r.origin.hostname ?? r.origin.from };
}

/** Renders a record for the wire or a file, without any framing. */
export function renderRecord(r: LogRecord, format: OutputFormat, localHost: string): Buffer {
  switch (format) {
    case 'raw':
      return r.raw;
    case 'rfc5424':
      return Buffer.from(formatRfc5424(withHost(r), new Date(r.receivedAt)));
    case 'rfc3164':
      return Buffer.from(formatRfc3164(withHost(r), new Date(r.receivedAt), localHost));
  }
}
