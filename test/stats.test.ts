import { describe, expect, it } from 'vitest';
import { SourceCounters } from '../src/stats.js';

describe('SourceCounters', () => {
  it('keeps one set of counters per source name, made on first use, that every report adds to', () => {
    const c = new SourceCounters();
    const tcp = c.of('tcp');
    tcp.received += 3;
    c.dropped('tcp', 'queue_full', 2);
    c.dropped('tcp', 'queue_full');
    c.repaired('udp', 'invalid_time');
    c.parseError('tcp');
    expect(c.of('tcp')).toBe(tcp);
    expect(tcp).toMatchObject({ received: 3, parseErrors: 1, dropped: { queue_full: 3 }, repaired: {} });
    expect(c.of('udp').repaired).toEqual({ invalid_time: 1 });
    expect(c.names().sort()).toEqual(['tcp', 'udp']);
  });

  it('seen through one name (as), counts every source a record names under that one', () => {
    const c = new SourceCounters();
    const central = c.as('from_agents');
    central.dropped('an_agents_tcp_source', 'queue_full');
    central.repaired('another', 'invalid_priority');
    central.parseError('x');
    expect(c.of('from_agents')).toMatchObject({
      parseErrors: 1,
      dropped: { queue_full: 1 },
      repaired: { invalid_priority: 1 },
    });
    expect(c.names()).toEqual(['from_agents']);
  });
});
