import { onTestFinished } from 'vitest';
import { parseConfigText } from '../../src/config/load.js';
import type { SluiceConfig } from '../../src/config/schema.js';
import { silentLogger } from '../../src/log.js';
import { Router } from '../../src/pipeline/router.js';
import { ReliableQueue } from '../../src/queue/disk/reliable-queue.js';
import type { SourceContext } from '../../src/sources/types.js';
import { SourceCounters } from '../../src/stats.js';
import { testQueueOptions } from './records.js';
import { FaultyDisk } from './simulated-disk.js';

/**
 * For a test of one source alone: the source `name`, configured by `sourceYaml`, routed into one
 * reliable queue (`sync: always`) on a FaultyDisk, with everything a SourceContext needs. The queue
 * is disposed of when the test finishes.
 */
export async function sourceIntoQueue(dir: string, name: string, sourceYaml: string) {
  const { config } = parseConfigText(
    `state_dir: ${dir}/state
sources:
  ${name}: ${sourceYaml}
destinations:
  d: { type: file, path: ${dir}/out.log }
pipelines:
  p: { from: [${name}], to: [d] }
`,
    't.yaml',
    {},
  );
  const disk = new FaultyDisk();
  const queue = await ReliableQueue.open('d', `${dir}/q`, testQueueOptions({ sync: 'always', openFile: disk.open }));
  onTestFinished(() => queue.dispose());
  const counters = new SourceCounters();
  const router = new Router(config.pipelines, new Map([['d', queue]]), { counters });
  const ctx: SourceContext = {
    name,
    router,
    logger: silentLogger(),
    stateDir: `${dir}/state`,
    hostname: 'web01',
    counters,
  };
  return {
    config: config.sources[name] as SluiceConfig['sources'][string],
    queue,
    disk,
    ctx,
    stats: counters.of(name),
  };
}
