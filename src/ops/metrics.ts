import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { AgentStats } from '../stats.js';
import type { GateState } from './gate.js';

export interface MetricsSource {
  stats(): AgentStats;
  gate(): GateState;
  ready(): boolean;
}

type Labels = Record<string, string>;
type SourceRow = AgentStats['sources'][string];
type DestinationRow = AgentStats['destinations'][string];
type QueueRow = DestinationRow['queue'];
/** A metric read from one row of the stats (a source, a queue, a destination): name, help, value. */
type Metric<Row> = [name: string, help: string, value: (row: Row) => number];
type Rows = [Labels, number][];

/**
 * The Prometheus registry: process metrics from prom-client (CPU, RSS, event-loop lag, heap), and
 * sluice's counters read from `stats()` at scrape time, so the hot path keeps plain numbers.
 */
export function createMetrics(src: MetricsSource): Registry {
  const register = new Registry();
  collectDefaultMetrics({ register, eventLoopMonitoringPrecision: 20 });
  // One stats() per scrape, whatever the number of metrics: a snapshot lives 100 ms.
  let snapshot: { at: number; stats: AgentStats } | null = null;
  const stats = (): AgentStats => {
    const now = Date.now();
    if (!snapshot || now - snapshot.at > 100) snapshot = { at: now, stats: src.stats() };
    return snapshot.stats;
  };

  const counter = (name: string, help: string, labelNames: string[], rows: (s: AgentStats) => Rows) =>
    new Counter({
      name,
      help,
      labelNames,
      registers: [register],
      collect() {
        this.reset();
        for (const [labels, v] of rows(stats())) this.inc(labels, v);
      },
    });
  const gauge = (name: string, help: string, labelNames: string[], rows: (s: AgentStats) => Rows) =>
    new Gauge({
      name,
      help,
      labelNames,
      registers: [register],
      collect() {
        this.reset();
        for (const [labels, v] of rows(stats())) this.set(labels, v);
      },
    });
  const sources =
    (f: (s: SourceRow) => number) =>
    (s: AgentStats): Rows =>
      Object.entries(s.sources).map(([source, x]) => [{ source }, f(x)]);
  const dests =
    (f: (d: DestinationRow) => number) =>
    (s: AgentStats): Rows =>
      Object.entries(s.destinations).map(([destination, x]) => [{ destination }, f(x)]);
  const queues =
    (f: (q: QueueRow) => number) =>
    (s: AgentStats): Rows =>
      Object.entries(s.destinations).map(([destination, x]) => [{ destination, mode: x.queue.mode }, f(x.queue)]);
  const byReason =
    (pick: (s: AgentStats) => [Labels, Record<string, number>][]) =>
    (s: AgentStats): Rows =>
      pick(s).flatMap(([labels, dropped]) =>
        Object.entries(dropped).map(([reason, n]) => [{ ...labels, reason }, n] as [Labels, number]),
      );

  // Sources.
  const sourceCounters: Metric<SourceRow>[] = [
    ['sluice_source_received_records_total', 'Messages (lines) a source took in.', (x) => x.received],
    ['sluice_source_received_bytes_total', 'Message bytes a source took in.', (x) => x.receivedBytes],
    [
      'sluice_source_parse_errors_total',
      'Messages that a filter or template needed parsed and that did not parse (still delivered).',
      (x) => x.parseErrors,
    ],
    [
      'sluice_source_oversize_total',
      'Messages cut to max_message_size, or lines cut to max_line_length.',
      (x) => x.truncated,
    ],
  ];
  for (const [name, help, value] of sourceCounters) counter(name, help, ['source'], sources(value));
  counter(
    'sluice_source_dropped_records_total',
    'Messages a source threw away, by reason (oversize, queue_full, block_timeout, load_shedding, kernel_buffer, journal_vacuumed, kernel_overwritten).',
    ['source', 'reason'],
    byReason((s) => Object.entries(s.sources).map(([source, x]) => [{ source }, x.dropped])),
  );
  counter(
    'sluice_source_repaired_records_total',
    'Records taken in with a field sluice cannot use (a receive time that is not a time, a stream position that is ' +
      'not one), set right and kept, by reason.',
    ['source', 'reason'],
    byReason((s) => Object.entries(s.sources).map(([source, x]) => [{ source }, x.repaired ?? {}])),
  );
  counter(
    'sluice_source_connections_total',
    'TCP/TLS connections, by result (accepted, rejected over max_connections, error).',
    ['source', 'result'],
    (s) =>
      Object.entries(s.sources).flatMap(
        ([source, x]) =>
          [
            [{ source, result: 'accepted' }, x.connectionsAccepted],
            [{ source, result: 'rejected' }, x.connectionsRejected],
            [{ source, result: 'error' }, x.connectionErrors],
          ] as Rows,
      ),
  );

  // Queues.
  const queueGauges: Metric<QueueRow>[] = [
    ['sluice_queue_records', 'Records waiting in the queue, handed out or not.', (q) => q.records],
    [
      'sluice_queue_memory_records',
      'Of those, records only in memory (lost by a crash in memory and normal modes).',
      (q) => q.memoryRecords,
    ],
    ['sluice_queue_memory_bytes', 'Bytes the queue holds in memory (records or read cache).', (q) => q.memoryBytes],
    ['sluice_queue_disk_bytes', 'Bytes of records in the queue file.', (q) => q.diskBytes],
    [
      'sluice_queue_capacity_bytes',
      'Size of the queue: the ring of the file, or the memory limit.',
      (q) => q.capacityBytes,
    ],
    [
      'sluice_queue_oldest_record_age_seconds',
      'Age of the oldest unacknowledged record (0 when empty or not in memory).',
      (q) => (q.oldestReceivedAt === null ? 0 : Math.max(0, (Date.now() - q.oldestReceivedAt) / 1000)),
    ],
  ];
  for (const [name, help, value] of queueGauges) gauge(name, help, ['destination', 'mode'], queues(value));
  const queueCounters: Metric<QueueRow>[] = [
    ['sluice_queue_pushed_records_total', 'Records appended to the queue.', (q) => q.pushed],
    ['sluice_queue_acked_records_total', 'Records the destination confirmed and the queue freed.', (q) => q.acked],
    [
      'sluice_queue_backpressure_stalls_total',
      'Times a source found the queue full (or its disk writes behind, or the gate latched) and waited.',
      (q) => q.stalls,
    ],
    [
      'sluice_queue_corrupt_files_rotated_total',
      'Damaged queue files renamed to .corrupted-<time>.',
      (q) => q.corruption.rotated,
    ],
    ['sluice_queue_salvaged_records_total', 'Records copied out of damaged queue files.', (q) => q.corruption.salvaged],
    [
      'sluice_queue_lost_records_total',
      'Unacknowledged records of damaged queue files that could not be salvaged.',
      (q) => q.corruption.lostRecords,
    ],
    [
      'sluice_queue_lost_bytes_total',
      'Bytes of those records (when no header could be read: bytes that held no valid record).',
      (q) => q.corruption.lostBytes,
    ],
    [
      'sluice_queue_torn_records_total',
      'Torn writes of a crash discarded when a queue file was opened.',
      (q) => q.corruption.tornRecords,
    ],
  ];
  for (const [name, help, value] of queueCounters) counter(name, help, ['destination', 'mode'], queues(value));
  counter(
    'sluice_queue_dropped_records_total',
    'Records the queue did not keep, by reason.',
    ['destination', 'reason'],
    byReason((s) => Object.entries(s.destinations).map(([destination, x]) => [{ destination }, x.queue.dropped])),
  );

  // Destinations.
  const destinationCounters: Metric<DestinationRow>[] = [
    ['sluice_destination_sent_records_total', 'Records handed to the network or the file system.', (x) => x.sent],
    [
      'sluice_destination_acked_records_total',
      'Records confirmed delivered and freed from the queue.',
      (x) => x.delivered,
    ],
    ['sluice_destination_replayed_records_total', 'Records sent again after a failed delivery.', (x) => x.replayed],
    [
      'sluice_destination_server_errors_total',
      'Errors the receiver reported: protocol error frames, refused upgrades, RELP answers other than 200.',
      (x) => x.serverErrors ?? 0,
    ],
    [
      'sluice_destination_duplicates_skipped_total',
      'exactly_once file destinations: records not written because their stream position already was (resends, lines ' +
        'read again).',
      (x) => x.duplicatesSkipped ?? 0,
    ],
    [
      'sluice_destination_streams_forgotten_total',
      'exactly_once file destinations: streams dropped from the state after exactly_once_retention without a write.',
      (x) => x.streamsForgotten ?? 0,
    ],
    [
      'sluice_destination_dead_letter_dropped_total',
      'Of the records set aside, those dropped because no dead-letter target took them (dead_letter: drop, or a full ' +
        'dead-letter file).',
      (x) => x.deadLetterDropped ?? 0,
    ],
    [
      'sluice_destination_failures_total',
      'Failed deliveries (errors from the server or the connection); the records stay queued.',
      (x) => x.failures,
    ],
    ['sluice_destination_reconnect_attempts_total', 'Connection attempts after a failure.', (x) => x.reconnectAttempts],
    ['sluice_destination_reconnects_total', 'Connections that succeeded.', (x) => x.reconnects],
  ];
  for (const [name, help, value] of destinationCounters) counter(name, help, ['destination'], dests(value));
  counter(
    'sluice_destination_dead_letters_total',
    'Records set aside instead of delivered, by reason: a path the file system refuses (ENAMETOOLONG, EISDIR, ...), ' +
      'encoding, attempts, receiver_closed_session, expired (max_age).',
    ['destination', 'reason'],
    byReason((s) => Object.entries(s.destinations).map(([destination, x]) => [{ destination }, x.deadLettered ?? {}])),
  );
  const destinationGauges: Metric<DestinationRow>[] = [
    ['sluice_destination_connected', '1 while the destination has a working connection.', (x) => (x.connected ? 1 : 0)],
  ];
  for (const [name, help, value] of destinationGauges) gauge(name, help, ['destination'], dests(value));

  // Orphans, the gate, readiness.
  gauge('sluice_orphan_queues', 'Queue directories with no configured destination.', [], (s) => [
    [{}, Object.keys(s.orphans).length],
  ]);
  gauge('sluice_orphan_records', 'Records in an orphan queue.', ['orphan'], (s) =>
    Object.entries(s.orphans).map(([orphan, o]) => [{ orphan }, o.records]),
  );
  new Gauge({
    name: 'sluice_load_shedding_latched',
    help: '1 while the load-shedding gate is latched (the state disk fails; intake stopped).',
    registers: [register],
    collect() {
      this.set(src.gate().latched ? 1 : 0);
    },
  });
  new Counter({
    name: 'sluice_load_shedding_latches_total',
    help: 'Times the gate latched.',
    registers: [register],
    collect() {
      this.reset();
      this.inc(src.gate().latches);
    },
  });
  new Counter({
    name: 'sluice_state_write_failures_total',
    help: 'Failed writes or fsyncs under state_dir.',
    registers: [register],
    collect() {
      this.reset();
      this.inc(src.gate().writeFailures);
    },
  });
  new Gauge({
    name: 'sluice_ready',
    help: '1 when every source listens and the gate is open (what /readyz says).',
    registers: [register],
    collect() {
      this.set(src.ready() ? 1 : 0);
    },
  });
  return register;
}
