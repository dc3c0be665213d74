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
 * The component registry: one class per `type:`, each in a module imported only when a config
 * uses that type (loadComponents), so that an agent does not carry the code, and the Node
 * modules (tls, http, crypto, child_process...), of sources and destinations it does not run.
 */

type SourceClass<K extends SourceConfig['type']> = new (
  config: Extract<SourceConfig, { type: K }>,
  ctx: SourceContext,
) => Source;
type DestinationClass<K extends DestinationConfig['type']> = new (
  config: Extract<DestinationConfig, { type: K }>,
  ctx: DestinationContext,
) => Destination;
type SourceLoaders = { [K in SourceConfig['type']]: () => Promise<SourceClass<K>> };
type DestinationLoaders = { [K in DestinationConfig['type']]: () => Promise<DestinationClass<K>> };

const SOURCES: SourceLoaders = {
  syslog_udp: () => import('./sources/syslog-udp/index.js').then((m) => m.SyslogUdpSource),
  syslog_tcp: () => import('./sources/syslog-tcp/index.js').then((m) => m.SyslogTcpSource),
  file: () => import('./sources/file/index.js').then((m) => m.FileSource),
  sluice: () => import('./sources/sluice/index.js').then((m) => m.SluiceSource),
  relp: () => import('./sources/relp/index.js').then((m) => m.RelpSource),
  journald: () => import('./sources/journald/index.js').then((m) => m.JournaldSource),
  unix: () => import('./sources/unix/index.js').then((m) => m.UnixSource),
  kernel: () => import('./sources/kernel/index.js').then((m) => m.KernelSource),
  nats: () => import('./sources/nats/index.js').then((m) => m.NatsSource),
};

const DESTINATIONS: DestinationLoaders = {
  syslog: () => import('./destinations/syslog/index.js').then((m) => m.SyslogDestination),
  file: () => import('./destinations/file/index.js').then((m) => m.FileDestination),
  sluice: () => import('./destinations/sluice/index.js').then((m) => m.SluiceDestination),
  relp: () => import('./destinations/relp/index.js').then((m) => m.RelpDestination),
  nats: () => import('./destinations/nats/index.js').then((m) => m.NatsDestination),
};

/** Every `type:` a source may have, from the registry. */
export const SOURCE_TYPES = Object.keys(SOURCES) as SourceConfig['type'][];
/** Every `type:` a destination may have, from the registry. */
export const DESTINATION_TYPES = Object.keys(DESTINATIONS) as DestinationConfig['type'][];

type AnySourceClass = new (c: SourceConfig, ctx: SourceContext) => Source;
type AnyDestinationClass = new (c: DestinationConfig, ctx: DestinationContext) => Destination;
const loadedSources = new Map<string, AnySourceClass>();
const loadedDestinations = new Map<string, AnyDestinationClass>();

/** Imports the modules of every source and destination type `config` uses (once each). */
export async function loadComponents(config: Pick<SluiceConfig, 'sources' | 'destinations'>): Promise<void> {
  await Promise.all([
    ...loadTypes(Object.values(config.sources), SOURCES, loadedSources),
    ...loadTypes(Object.values(config.destinations), DESTINATIONS, loadedDestinations),
  ]);
}

/** The imports of the types of `configs` not loaded yet, each putting its class in `into`. */
function loadTypes<T>(
  configs: { type: string }[],
  loaders: Record<string, () => Promise<unknown>>,
  into: Map<string, T>,
): Promise<unknown>[] {
  const types = new Set(configs.map((c) => c.type));
  return [...types].filter((t) => !into.has(t)).map(async (t) => into.set(t, (await loaders[t]!()) as T));
}

function loaded<T>(map: Map<string, T>, kind: string, type: string): T {
  const build = map.get(type);
  if (!build) throw new Error(`${kind} type ${type} was not loaded (loadComponents first)`);
  return build;
}

export function buildSource(config: SourceConfig, ctx: SourceContext): Source {
  const Class = loaded(loadedSources, 'source', config.type);
  return new Class(config, ctx);
}

export function buildDestination(config: DestinationConfig, ctx: DestinationContext): Destination {
  const Class = loaded(loadedDestinations, 'destination', config.type);
  return new Class(config, ctx);
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
