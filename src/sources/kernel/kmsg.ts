/**
 * The records of /dev/kmsg (the kernel's "Documentation/ABI/testing/dev-kmsg"): one per read,
 * `PRI,SEQ,TIMESTAMP,FLAGS[,…];MESSAGE\n`, then any number of ` KEY=VALUE\n` lines (the device a
 * message is about: SUBSYSTEM=, DEVICE=). TIMESTAMP is microseconds since boot; the message has its
 * non-printable bytes escaped as `\xNN` by the kernel. Pure: text in, records out.
 */
export interface KmsgRecord {
  /** Facility and severity, as syslog's PRI (the kernel's own are facility 0). */
  pri: number;
  seq: number;
  /** Microseconds since boot (CLOCK_MONOTONIC). */
  micros: number;
  /** `c` continuation of an earlier record, `+` continued by the next, `-` neither. */
  flags: string;
  message: string;
  /** The ` KEY=VALUE` lines after the message. */
  dict: [string, string][];
}

/** Splits `text` (one read of /dev/kmsg, or several records of a file) into records; skips lines that are not records. */
export function parseKmsg(text: string): { records: KmsgRecord[]; bad: number } {
  const records: KmsgRecord[] = [];
  let bad = 0;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith(' ')) {
      const last = records[records.length - 1];
      const eq = line.indexOf('=');
      if (last && eq > 1) last.dict.push([line.slice(1, eq), line.slice(eq + 1)]);
      continue;
    }
    const semi = line.indexOf(';');
    const head = semi < 0 ? [] : line.slice(0, semi).split(',');
    const pri = Number(head[0]);
    const seq = Number(head[1]);
    const micros = Number(head[2]);
    if (
      head.length < 4 ||
      !Number.isSafeInteger(pri) ||
      pri < 0 ||
      pri > 191 ||
      !Number.isSafeInteger(seq) ||
      !Number.isSafeInteger(micros)
    ) {
      bad++;
      continue;
    }
    records.push({ pri, seq, micros, flags: head[3]!, message: line.slice(semi + 1), dict: [] });
  }
  return { records, bad };
}

/** An SD-PARAM value: `"`, `\` and `]` escaped. */
const sdValue = (v: string) => v.replace(/["\\\]]/g, (c) => `\\${c}`);

/** SD-NAME: printable US-ASCII, no `=`, space, `]` or `"`, at most 32. */
const sdName = (k: string) => k.replace(/[^!-~]|[=\]"]/g, '_').slice(0, 32);

/**
 * A kernel record as an RFC 5424 message: APP-NAME `kernel`, the time it was logged (boot time
 * plus its timestamp), its dictionary as `[kmsg@32473 KEY="value" …]`.
 */
export function kmsgToSyslog(r: KmsgRecord, bootMs: number, hostname: string): Buffer {
  const when = new Date(bootMs + Math.floor(r.micros / 1000)).toISOString();
  const sd = r.dict.length ? `[kmsg@32473${r.dict.map(([k, v]) => ` ${sdName(k)}="${sdValue(v)}"`).join('')}]` : '-';
  return Buffer.from(`<${r.pri}>1 ${when} ${hostname} kernel - - ${sd} ${r.message}`);
}
