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
    case 'rfc3164': {
      const m = withHost(r);
      const when = new Date(r.receivedAt);
      const bytes = m.messageBytes;
      if (!bytes) return Buffer.from(format === 'rfc5424' ? formatRfc5424(m, when) : formatRfc3164(m, when, localHost));
      // MSG that is not UTF-8 goes out as the bytes that came in, after a header of its own.
      const empty = { ...m, message: '', bom: false };
      if (format === 'rfc3164') return Buffer.concat([Buffer.from(formatRfc3164(empty, when, localHost)), bytes]);
      return Buffer.concat([
        Buffer.from(formatRfc5424(empty, when)),
        Buffer.from(m.bom === true ? ' \ufeff' : ' '),
        bytes,
      ]);
    }
  }
}
