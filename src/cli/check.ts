import { existsSync } from 'node:fs';
import { userInfo } from 'node:os';
import path from 'node:path';
import { memBufLength } from '../config/defaults.js';
import type { SluiceConfig } from '../config/schema.js';
import { formatDuration, formatSize } from '../config/units.js';
import { Agent } from '../agent.js';
import { loadComponents } from '../components.js';
import { createLogger } from '../log.js';
import { inspectQueueFile } from '../queue/disk/inspect.js';
import { DATA_START } from '../queue/disk/ring-file.js';
import { QueueLayout, queueDir } from '../queue/layout.js';
import { findOrphans } from '../queue/orphans.js';
import { journalctlOnce, selectionArgs } from '../sources/journald/journalctl.js';
import { loadConfig } from './config.js';

function describeWhere(w: NonNullable<SluiceConfig['pipelines'][string]['where']>): string {
  const parts: string[] = [];
  if (w.facility) parts.push(`facility in [${w.facility.join(', ')}]`);
  if (w.severity) parts.push(`severity in [${w.severity.join(', ')}]`);
  if (w.min_severity) parts.push(`severity >= ${w.min_severity}`);
  if (w.host) parts.push(`host =~ ${w.host}`);
  if (w.app) parts.push(`app =~ ${w.app}`);
  if (w.message) parts.push(`message =~ ${w.message}`);
  for (const [k, re] of Object.entries(w.sd ?? {})) parts.push(`${k} =~ ${re}`);
  return parts.join(' and ');
}

/** What `check` prints: every pipeline with its endpoints, without touching the network. */
export async function describeConfig(config: SluiceConfig): Promise<string> {
  await loadComponents(config);
  const agent = new Agent(config, createLogger({ level: 'silent', format: 'json' }), { planOnly: true });
  const lines: string[] = [`state_dir: ${agent.stateDir}`];
  for (const [name, p] of Object.entries(config.pipelines)) {
    lines.push(`pipeline ${name}:`);
    for (const s of p.from) lines.push(`  from ${s}: ${agent.sources.get(s)!.describe()}`);
    if (p.where) lines.push(`  where ${describeWhere(p.where)}`);
    for (const d of p.to) {
      const dc = config.destinations[d]!;
      const q = dc.queue;
      lines.push(`  to   ${d}: ${agent.destinations.get(d)!.describe()}`);
      const full = `when full: ${q.full}${q.full === 'block' ? ` (up to ${formatDuration(q.block_timeout)})` : ''}`;
      const file =
        `${formatSize(q.max_size)} file in ${queueDir(agent.stateDir, d)}, sync ` +
        `${q.sync}${q.sync === 'interval' ? ` every ${formatDuration(q.sync_interval)}` : ''}`;
      lines.push(
        q.mode === 'memory'
          ? `       queue memory, up to ${memBufLength(q)} records / ${formatSize(q.mem_buf_size)}, ${full}`
          : q.mode === 'normal'
            ? `       queue normal, ${q.qout_size} + ${memBufLength(q)} records in memory (lost by a crash), then a ` +
              `${file}, ${full}`
            : `       queue reliable, ${file}, ${full}`,
      );
    }
  }
  lines.push(`shutdown_timeout: ${formatDuration(config.shutdown_timeout)}`);
  return lines.join('\n');
}

/**
 * The integrity part of `check`: every disk queue of the config is read through (checksums,
 * heads), and queue directories no destination owns are reported.
 */
async function checkQueues(config: SluiceConfig): Promise<{ lines: string[]; errors: number; warnings: number }> {
  const stateDir = path.resolve(config.state_dir);
  const lines: string[] = [];
  let errors = 0;
  let warnings = 0;
  for (const [name, dc] of Object.entries(config.destinations)) {
    if (dc.queue.mode === 'memory') continue;
    const file = QueueLayout.of(stateDir, name).ring;
    if (!existsSync(file)) {
      lines.push(`queue ${name}: no file yet (created at start)`);
      continue;
    }
    const info = await inspectQueueFile(file).catch((err: Error) => ({ error: err.message }));
    if ('error' in info) {
      errors++;
      lines.push(`queue ${name}: ERROR cannot read ${file}: ${info.error}`);
    } else if (info.corrupt) {
      errors++;
      lines.push(
        `queue ${name}: CORRUPT ${file}: ${info.corrupt}; at start it is renamed to .corrupted-<time> and ` +
          `${info.records} valid record(s) are salvaged`,
      );
    } else {
      const mismatch =
        info.capacity + DATA_START !== dc.queue.max_size
          ? `; the file is ${formatSize(info.fileBytes)}, max_size ${formatSize(dc.queue.max_size)}: resized at start`
          : '';
      lines.push(
        `queue ${name}: ok, ${info.records + info.memoryRecords} record(s) ` +
          `waiting${info.lockedBy ? `, in use by PID ${info.lockedBy}` : ''}${mismatch}`,
      );
    }
  }
  for (const o of findOrphans(stateDir, Object.keys(config.destinations))) {
    warnings++;
    const target = config.drain_orphans[o.name];
    lines.push(
      `queue ${o.name}: ORPHAN (no destination of that name) in ${o.dir}${
        target ? `; drained into ${target} at start` : '; drain it with `sluice queue drain` or drain_orphans'
      }`,
    );
  }
  return { lines, errors, warnings };
}

/**
 * Each journald source: journalctl is run as this check runs (its user and groups), for the last
 * entry it selects. Run the check as the service's user (`runuser -u sluice -- sluice check …`) to
 * know what the service will see: a journal it cannot read, or cannot read whole, is a warning.
 */
async function checkJournals(config: SluiceConfig): Promise<{ lines: string[]; warnings: number }> {
  const lines: string[] = [];
  let warnings = 0;
  for (const [name, sc] of Object.entries(config.sources)) {
    if (sc.type !== 'journald') continue;
    const who = `${userInfo().username} (uid ${process.getuid?.() ?? '?'})`;
    let r: Awaited<ReturnType<typeof journalctlOnce>>;
    try {
      r = await journalctlOnce(sc.journalctl, [...selectionArgs(sc), '--lines=1'], 1);
    } catch (err) {
      warnings++;
      lines.push(`journal ${name}: WARNING cannot run ${sc.journalctl}: ${(err as Error).message}`);
      continue;
    }
    const partial = /insufficient permissions|not seeing messages from other users/i.test(r.stderr);
    if (r.code !== null && r.code !== 0) {
      warnings++;
      lines.push(`journal ${name}: WARNING journalctl failed as ${who}: ${r.stderr.split('\n')[0]}`);
    } else if (partial) {
      warnings++;
      lines.push(
        `journal ${name}: WARNING ${who} cannot read the whole journal: add it to the systemd-journal group ` +
          '(the packaged unit has SupplementaryGroups=systemd-journal)',
      );
    } else {
      lines.push(`journal ${name}: ok, readable as ${who}${r.entries.length === 0 ? ' (no entry selected yet)' : ''}`);
    }
  }
  return { lines, warnings };
}

/** TLS listeners in a process whose OpenSSL sends session tickets: say what that risks. */

/** `sluice check`: validates the config, describes what it would run, and reads every disk queue through. */
export async function checkCommand(file: string): Promise<number> {
  const loaded = await loadConfig(file);
  if (!loaded) return 1;
  process.stdout.write(`${await describeConfig(loaded.config)}\n`);
  const queues = await checkQueues(loaded.config);
  const journals = await checkJournals(loaded.config);
  process.stdout.write([...queues.lines, ...journals.lines].map((l) => `${l}\n`).join(''));
  if (queues.errors > 0) {
    process.stdout.write(`${file}: config OK, but ${queues.errors} queue problem(s)\n`);
    return 1;
  }
  const warnings = loaded.warnings.length + queues.warnings + journals.warnings;
  process.stdout.write(`${file}: OK${warnings ? ` (${warnings} warning(s))` : ''}\n`);
  return 0;
}
