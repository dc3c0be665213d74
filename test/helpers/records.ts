import { newSourceStats, type RecordOrigin } from '../../src/record.js';

/** The origin of records in unit tests: a syslog TCP source unless `over` says otherwise. */
export function testOrigin(over: Partial<RecordOrigin> = {}): RecordOrigin {
  return { source: 'tcp_in', from: '192.0.2.9', format: 'syslog', lenient: true, stats: newSourceStats(), ...over };
}
