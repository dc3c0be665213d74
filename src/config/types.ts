import { z } from 'zod';
import { FACILITY_NAMES, SEVERITY_NAMES } from '../parser/names.js';
import { parseDuration, parseSize } from './units.js';

/** A byte size: a whole number of bytes, or text such as `64KiB`, `10MB`. */
export const size = () =>
  z
    .union([z.string(), z.number()])
    .transform((v, ctx) => {
      const n = parseSize(v);
      if (n === null) {
        ctx.addIssue({ code: 'custom', message: `expected a size such as 64KiB or 10MB, got ${JSON.stringify(v)}` });
        return z.NEVER;
      }
      return n;
    })
    .meta({ format: 'size' });

/** A duration with its unit: `50ms`, `10s`, `5m`, `1h`, `1d`; `0` turns the feature off where the key says so. */
export const duration = () =>
  z
    .union([z.string(), z.number()])
    .transform((v, ctx) => {
      const n = parseDuration(v);
      if (n === null) {
        ctx.addIssue({
          code: 'custom',
          message: `expected a duration with a unit such as 50ms, 10s or 5m, got ${JSON.stringify(v)}`,
        });
        return z.NEVER;
      }
      return n;
    })
    .meta({ format: 'duration' });

export interface HostPort {
  host: string;
  port: number;
}

/** `host:port`, `[v6]:port`; a host is required so that nothing listens on every interface by accident. */
export function parseHostPort(v: string): HostPort | null {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+)):(\d{1,5})$/.exec(v);
  if (!m) return null;
  const port = Number(m[3]);
  if (port > 65535) return null;
  return { host: (m[1] ?? m[2])!, port };
}

export const address = () =>
  z
    .string()
    .transform((v, ctx) => {
      const hp = parseHostPort(v);
      if (!hp) {
        ctx.addIssue({
          code: 'custom',
          message: `expected host:port (such as 127.0.0.1:5514 or [::1]:5514), got ${JSON.stringify(v)}`,
        });
        return z.NEVER;
      }
      return hp;
    })
    .meta({ format: 'host:port' });

export const regex = () =>
  z
    .string()
    .transform((v, ctx) => {
      try {
        return new RegExp(v);
      } catch (e) {
        ctx.addIssue({ code: 'custom', message: `invalid regular expression: ${(e as Error).message}` });
        return z.NEVER;
      }
    })
    .meta({ format: 'regex' });

export const facilityName = z.enum(FACILITY_NAMES);
export const severityName = z.enum(SEVERITY_NAMES);

export const tlsServerSchema = z
  .strictObject({
    cert: z.string().describe('PEM file with the server certificate chain.'),
    key: z.string().describe('PEM file with the private key of `cert`.'),
    client_ca: z
      .string()
      .optional()
      .describe(
        'PEM file of CAs. When set, every client must present a certificate signed by one of them (mutual TLS).',
      ),
    min_version: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2').describe('Oldest TLS version accepted.'),
  })
  .describe('TLS for this listener (RFC 5425 for syslog). Absent: plain TCP.');

export const tlsClientSchema = z
  .strictObject({
    ca: z
      .string()
      .optional()
      .describe('PEM file of CAs that the server certificate must chain to. Absent: the system store.'),
    cert: z.string().optional().describe('PEM client certificate, for servers that require mutual TLS.'),
    key: z.string().optional().describe('PEM private key of `cert`.'),
    server_name: z
      .string()
      .optional()
      .describe('Name to verify the server certificate against (SNI). Default: the host of `address`.'),
    verify: z.boolean().default(true).describe('Verify the server certificate. Turning this off is for tests only.'),
  })
  .describe('TLS towards the server. Absent: plain TCP.');

export const queueSchema = z
  .strictObject({
    mode: z
      .enum(['memory', 'normal', 'reliable'])
      .default('memory')
      .describe(
        '`memory`: records wait in RAM, bounded by `mem_buf_length` and `mem_buf_size`; a crash or a shutdown ' +
          'timeout loses them. ' +
          '`normal`: records wait in RAM (`qout_size` + `mem_buf_length` records) and go to ' +
          '`<state_dir>/queues/<destination>/queue.sq` only when that is full; ' +
          'a clean shutdown saves the RAM part to the disk, a crash loses at most `qout_size + mem_buf_length` ' +
          'records. Fast, and it rides out long outages. ' +
          '`reliable`: every record is written to the queue file and fsynced before its source is told it is ' +
          'committed; ' +
          'it leaves the file only when the destination confirms it. A crash loses nothing committed. ' +
          'Default `memory`, because it needs no disk; choose `reliable` for anything you cannot lose.',
      ),
    max_size: size()
      .prefault('1GiB')
      .describe(
        'normal, reliable: size of the queue file, header included (about 4.5 million records of 200 bytes). ' +
          'Size it as ingest rate x the longest outage to ride out; see docs/operations.md.',
      ),
    qout_size: z
      .int()
      .positive()
      .default(1000)
      .describe(
        'normal: records in the output buffer, ready for the destination. A thousand covers several batches in flight.',
      ),
    mem_buf_length: z
      .int()
      .positive()
      .optional()
      .describe(
        'memory: most records the queue holds (default 100000: about 20 MB of 200-byte records, several seconds of a ' +
          'busy host). ' +
          'normal: records in the in-memory overflow behind the output buffer (default 10000); with `qout_size` it ' +
          'bounds what a crash can lose.',
      ),
    mem_buf_size: size()
      .prefault('64MiB')
      .describe(
        'memory, normal: most message bytes held in memory, whichever of the two limits comes first. ' +
          'reliable, normal: also caps the records read ahead from the file for the destination (the read cache) and ' +
          'the bytes waiting to be written, each at most 4 MiB: enough to keep a fast destination fed and the disk ' +
          'busy, small enough to spare the garbage collector. Sources that can wait slow down while the writes ' +
          'are behind.',
      ),
    sync: z
      .enum(['always', 'interval', 'never'])
      .default('interval')
      .describe(
        'normal, reliable: when to fsync the queue file. `interval`: every `sync_interval`, committing every batch ' +
          'written since (group commit); a batch whose source waits to acknowledge it (RELP, sluice, files) is ' +
          'fsynced at once, with whatever else arrived meanwhile. ' +
          '`always`: as soon as possible, still one fsync for all batches that arrived meanwhile. `never`: leave it ' +
          'to the kernel (a power cut can lose records; a process crash cannot). ' +
          'Default `interval`: durable within tens of milliseconds at a fraction of the cost of `always`.',
      ),
    sync_interval: duration()
      .prefault('50ms')
      .describe(
        'With `sync: interval`: the longest a committed batch waits for its fsync. Sources wait this long at most ' +
          'for their acknowledgement.',
      ),
    full: z
      .enum(['block', 'drop_newest', 'drop_oldest'])
      .default('block')
      .describe(
        'What happens when the queue is full. `block`: flow control, TCP and file sources stop reading until there ' +
          'is room (in the memory mode, until a sixteenth of the queue is free, so that they read on in large ' +
          'steps), for at most `block_timeout` (UDP, which cannot wait, drops and counts). ' +
          '`drop_newest`: the incoming records are dropped. `drop_oldest`: the oldest records not yet handed to the ' +
          'destination make room (in the disk modes they are removed from the file, durably, before the new ones ' +
          'are written; while the destination has the oldest in flight, the newest are dropped instead). ' +
          'Every drop is counted by reason. Default `block`: nothing is dropped while the senders can wait.',
      ),
    block_timeout: duration()
      .prefault('30s')
      .describe(
        'With `full: block`: the longest a source waits for room. After it, a TCP source drops the batch (counted as ' +
          '`block_timeout`) and reads on, so that a stuck destination cannot hang the applications logging to it; ' +
          'a file source keeps waiting, since its lines are safe in the file, and logs that it is stalled. `0s` ' +
          'waits forever.',
      ),
    max_age: duration()
      .prefault('0s')
      .describe(
        'Records older than this (since they were received) are not sent: they are set aside as dead letters with ' +
          'reason `expired`, for logs that are worthless after a while. ' +
          '`0s` (the default): records wait as long as it takes.',
      ),
    max_record_attempts: z
      .int()
      .positive()
      .default(5)
      .describe(
        'A record whose delivery fails in a way that may be its own doing (a name the file system refuses, an ' +
          'encoding error, a receiver that closes the session each time it is sent) is retried alone; ' +
          'after this many failures in a row it is set aside as a dead letter and the queue goes on. Failures of the ' +
          'destination as a whole (network, disk full, permissions) are retried for ever and never counted here.',
      ),
    dead_letter: z
      .string()
      .regex(/^(file|drop|[A-Za-z0-9][A-Za-z0-9_.-]*)$/, 'expected file, drop or the name of a destination')
      .default('file')
      .describe(
        'Where records set aside go. `file`: JSON lines in `<state_dir>/dead-letters/<destination>.jsonl`, fsynced ' +
          'before the records leave the queue (at most 256 MiB; beyond, dropped and counted). ' +
          '`drop`: dropped, counted as `dead_letter_dropped` and logged once a reason every 10 s. The name of ' +
          'another destination: each record goes there as its dead-letter JSON line. ' +
          'See docs/operations.md for the format and `sluice queue dead-letters`.',
      ),
    prealloc: z
      .boolean()
      .default(false)
      .describe(
        'normal, reliable: write the whole queue file when creating it, so that a full disk shows at start instead ' +
          'of during an outage. ' +
          'Default off: creating a 1 GiB file then takes a few seconds of disk writes; without it the file is sparse ' +
          'and grows as it fills.',
      ),
  })
  .describe('The queue in front of this destination.');

export { memBufLength } from './defaults.js';

export const backoffSchema = z
  .strictObject({
    initial: duration().prefault('200ms').describe('First wait after a failed connection.'),
    max: duration().prefault('30s').describe('Longest wait between attempts.'),
  })
  .describe(
    'Reconnection: the wait doubles after each failure up to `max`, with full jitter so that many agents do not ' +
      'reconnect in step.',
  );
