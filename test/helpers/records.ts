import { silentLogger } from '../../src/log.js';
import type { ReliableQueueOptions } from '../../src/queue/disk/reliable-queue.js';
import type { RecordOrigin } from '../../src/record.js';
import { SourceCounters } from '../../src/stats.js';

/** The origin of records in unit tests: a syslog TCP source unless `over` says otherwise. */
export function testOrigin(over: Partial<RecordOrigin> = {}): RecordOrigin {
  return {
    source: 'tcp_in',
    from: '192.0.2.9',
    format: 'syslog',
    lenient: true,
    counters: new SourceCounters(),
    ...over,
  };
}

/** A small reliable queue for tests: 1 MiB file, 64 KiB read-ahead, a sync every 5 ms, `full: block`, no log. */
export function testQueueOptions(over: Partial<ReliableQueueOptions> = {}): ReliableQueueOptions {
  return {
    maxSize: 1 << 20,
    memBufSize: 1 << 16,
    sync: 'interval',
    syncInterval: 5,
    full: 'block',
    logger: silentLogger(),
    counters: new SourceCounters(),
    ...over,
  };
}
