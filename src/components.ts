import type { DestinationConfig, QueueConfig, SourceConfig } from './config/schema.js';
import { FileDestination } from './destinations/file/index.js';
import { SyslogDestination } from './destinations/syslog/index.js';
import { SluiceDestination } from './destinations/sluice/index.js';
import { SluiceSource } from './sources/sluice/index.js';
import { RelpSource } from './sources/relp/index.js';
import { RelpDestination } from './destinations/relp/index.js';
import { NatsDestination } from './destinations/nats/index.js';
import type { Destination, DestinationContext } from './destinations/types.js';
import { queueDir } from './queue/layout.js';
import type { Logger } from './log.js';
import { NormalQueue } from './queue/disk/normal-queue.js';
import { ReliableQueue, type ReliableQueueOptions } from './queue/disk/reliable-queue.js';
import { memBufLength } from './config/defaults.js';
import { MemoryQueue } from './queue/memory-queue.js';
import type { SourceCounters } from './stats.js';
import type { DestinationQueue } from './queue/types.js';
import { FileSource } from './sources/file/index.js';
import { JournaldSource } from './sources/journald/index.js';
import { UnixSource } from './sources/unix/index.js';
import { KernelSource } from './sources/kernel/index.js';
import { NatsSource } from './sources/nats/index.js';
import { SyslogTcpSource } from './sources/syslog-tcp/index.js';
import { SyslogUdpSource } from './sources/syslog-udp/index.js';
import type { Source, SourceContext } from './sources/types.js';

/** The component registry: one build function per `type:`. */

type SourceBuilders = {
  [K in SourceConfig['type']]: (config: Extract<SourceConfig, { type: K }>, ctx: SourceContext) => Source;
};
type DestinationBuilders = {
  [K in DestinationConfig['type']]: (
    config: Extract<DestinationConfig, { type: K }>,
    ctx: DestinationContext,
  ) => Destination;
};

const SOURCES: SourceBuilders = {
  syslog_udp: (c, ctx) => new SyslogUdpSource(c, ctx),
  syslog_tcp: (c, ctx) => new SyslogTcpSource(c, ctx),
  file: (c, ctx) => new FileSource(c, ctx),
  sluice: (c, ctx) => new SluiceSource(c, ctx),
  relp: (c, ctx) => new RelpSource(c, ctx),
  journald: (c, ctx) => new JournaldSource(c, ctx),
  unix: (c, ctx) => new UnixSource(c, ctx),
  kernel: (c, ctx) => new KernelSource(c, ctx),
  nats: (c, ctx) => new NatsSource(c, ctx),
};

const DESTINATIONS: DestinationBuilders = {
  syslog: (c, ctx) => new SyslogDestination(c, ctx),
  file: (c, ctx) => new FileDestination(c, ctx),
  sluice: (c, ctx) => new SluiceDestination(c, ctx),
  relp: (c, ctx) => new RelpDestination(c, ctx),
  nats: (c, ctx) => new NatsDestination(c, ctx),
};

/** Every `type:` a source may have, from the registry. */
export const SOURCE_TYPES = Object.keys(SOURCES) as SourceConfig['type'][];
/** Every `type:` a destination may have, from the registry. */
export const DESTINATION_TYPES = Object.keys(DESTINATIONS) as DestinationConfig['type'][];

export function buildSource(config: SourceConfig, ctx: SourceContext): Source {
  return (SOURCES[config.type] as (c: SourceConfig, ctx: SourceContext) => Source)(config, ctx);
}

export function buildDestination(config: DestinationConfig, ctx: DestinationContext): Destination {
  return (DESTINATIONS[config.type] as (c: DestinationConfig, ctx: DestinationContext) => Destination)(config, ctx);
}

export function buildMemoryQueue(name: string, config: QueueConfig): MemoryQueue {
  return new MemoryQueue(name, { maxRecords: memBufLength(config), maxBytes: config.mem_buf_size, full: config.full });
}

export async function openQueue(
  name: string,
  config: QueueConfig,
  stateDir: string,
  logger: Logger,
  counters: SourceCounters,
  diskHealth?: ReliableQueueOptions['diskHealth'],
): Promise<DestinationQueue> {
  if (config.mode === 'memory') return buildMemoryQueue(name, config);
  const options = {
    diskHealth,
    maxSize: config.max_size,
    memBufSize: config.mem_buf_size,
    sync: config.sync,
    syncInterval: config.sync_interval,
    full: config.full,
    prealloc: config.prealloc,
    logger,
    counters,
  };
  if (config.mode === 'reliable') return ReliableQueue.open(name, queueDir(stateDir, name), options);
  return NormalQueue.open(name, queueDir(stateDir, name), {
    ...options,
    qoutSize: config.qout_size,
    memBufLength: memBufLength(config),
    memBytes: config.mem_buf_size,
  });
}
