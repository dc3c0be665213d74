import type { DestinationConfig, QueueConfig, SluiceConfig, SourceConfig } from './config/schema.js';
import type { Destination, DestinationContext } from './destinations/types.js';
import { queueDir } from './queue/layout.js';
import type { Logger } from './log.js';
import { NormalQueue } from './queue/disk/normal-queue.js';
import { ReliableQueue, type ReliableQueueOptions } from './queue/disk/reliable-queue.js';
import { memBufLength } from './config/defaults.js';
import { MemoryQueue } from './queue/memory-queue.js';
import type { SourceCounters } from './stats.js';
import type { DestinationQueue } from './queue/types.js';
import type { Source, SourceContext } from './sources/types.js';

/**
 * The component registry: one build function per `type:`, each in a module imported only when a
 * config uses that type (loadComponents), so that an agent does not carry the code, and the Node
 * modules (tls, http, crypto, child_process...), of sources and destinations it does not run.
 */

type SourceBuilder<K extends SourceConfig['type']> = (
  config: Extract<SourceConfig, { type: K }>,
  ctx: SourceContext,
) => Source;
type DestinationBuilder<K extends DestinationConfig['type']> = (
  config: Extract<DestinationConfig, { type: K }>,
  ctx: DestinationContext,
) => Destination;
type SourceLoaders = { [K in SourceConfig['type']]: () => Promise<SourceBuilder<K>> };
type DestinationLoaders = { [K in DestinationConfig['type']]: () => Promise<DestinationBuilder<K>> };

const SOURCES: SourceLoaders = {
  syslog_udp: async () => {
    const { SyslogUdpSource } = await import('./sources/syslog-udp/index.js');
    return (c, ctx) => new SyslogUdpSource(c, ctx);
  },
  syslog_tcp: async () => {
    const { SyslogTcpSource } = await import('./sources/syslog-tcp/index.js');
    return (c, ctx) => new SyslogTcpSource(c, ctx);
  },
  file: async () => {
    const { FileSource } = await import('./sources/file/index.js');
    return (c, ctx) => new FileSource(c, ctx);
  },
  sluice: async () => {
    const { SluiceSource } = await import('./sources/sluice/index.js');
    return (c, ctx) => new SluiceSource(c, ctx);
  },
  relp: async () => {
    const { RelpSource } = await import('./sources/relp/index.js');
    return (c, ctx) => new RelpSource(c, ctx);
  },
  journald: async () => {
    const { JournaldSource } = await import('./sources/journald/index.js');
    return (c, ctx) => new JournaldSource(c, ctx);
  },
  unix: async () => {
    const { UnixSource } = await import('./sources/unix/index.js');
    return (c, ctx) => new UnixSource(c, ctx);
  },
  kernel: async () => {
    const { KernelSource } = await import('./sources/kernel/index.js');
    return (c, ctx) => new KernelSource(c, ctx);
  },
  nats: async () => {
    const { NatsSource } = await import('./sources/nats/index.js');
    return (c, ctx) => new NatsSource(c, ctx);
  },
};

const DESTINATIONS: DestinationLoaders = {
  syslog: async () => {
    const { SyslogDestination } = await import('./destinations/syslog/index.js');
    return (c, ctx) => new SyslogDestination(c, ctx);
  },
  file: async () => {
    const { FileDestination } = await import('./destinations/file/index.js');
    return (c, ctx) => new FileDestination(c, ctx);
  },
  sluice: async () => {
    const { SluiceDestination } = await import('./destinations/sluice/index.js');
    return (c, ctx) => new SluiceDestination(c, ctx);
  },
  relp: async () => {
    const { RelpDestination } = await import('./destinations/relp/index.js');
    return (c, ctx) => new RelpDestination(c, ctx);
  },
  nats: async () => {
    const { NatsDestination } = await import('./destinations/nats/index.js');
    return (c, ctx) => new NatsDestination(c, ctx);
  },
};

/** Every `type:` a source may have, from the registry. */
export const SOURCE_TYPES = Object.keys(SOURCES) as SourceConfig['type'][];
/** Every `type:` a destination may have, from the registry. */
export const DESTINATION_TYPES = Object.keys(DESTINATIONS) as DestinationConfig['type'][];

type AnySourceBuilder = (c: SourceConfig, ctx: SourceContext) => Source;
type AnyDestinationBuilder = (c: DestinationConfig, ctx: DestinationContext) => Destination;
const loadedSources = new Map<string, AnySourceBuilder>();
const loadedDestinations = new Map<string, AnyDestinationBuilder>();

/** Imports the modules of every source and destination type `config` uses (once each). */
export async function loadComponents(config: Pick<SluiceConfig, 'sources' | 'destinations'>): Promise<void> {
  const sources = new Set(Object.values(config.sources).map((c) => c.type));
  const destinations = new Set(Object.values(config.destinations).map((c) => c.type));
  await Promise.all([
    ...[...sources]
      .filter((t) => !loadedSources.has(t))
      .map(async (t) => loadedSources.set(t, (await SOURCES[t]()) as AnySourceBuilder)),
    ...[...destinations]
      .filter((t) => !loadedDestinations.has(t))
      .map(async (t) => loadedDestinations.set(t, (await DESTINATIONS[t]()) as AnyDestinationBuilder)),
  ]);
}

function loaded<T>(map: Map<string, T>, kind: string, type: string): T {
  const build = map.get(type);
  if (!build) throw new Error(`${kind} type ${type} was not loaded (loadComponents first)`);
  return build;
}

export function buildSource(config: SourceConfig, ctx: SourceContext): Source {
  return loaded(loadedSources, 'source', config.type)(config, ctx);
}

export function buildDestination(config: DestinationConfig, ctx: DestinationContext): Destination {
  return loaded(loadedDestinations, 'destination', config.type)(config, ctx);
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
