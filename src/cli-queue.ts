import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { SluiceConfig } from './config/schema.js';
import { formatSize } from './config/units.js';
import type { Logger } from './log.js';
import { inspectQueueFile, listQueueDirs, queueFilePath, salvageQueueFile, unackedRecords, type QueueFileInfo } from './queue/disk/inspect.js';
import { startDrain } from './queue/orphans.js';

/** `sluice queue ls|info|cat|salvage|drain`: offline tools for queue directories, like syslog-ng's dqtool. */

export const QUEUE_HELP = `Queue tools (they never change a queue they only read):
  sluice queue ls [STATE_DIR]           every queue under STATE_DIR/queues (default: state_dir of -c FILE)
  sluice queue info FILE|DIR            heads, records, bytes, oldest record, damage, lock holder
  sluice queue cat FILE|DIR [--json]    print the unacknowledged records, oldest first
  sluice queue salvage FILE|DIR --into DIR
                                        copy every valid unacknowledged record into a fresh queue in DIR
  sluice queue drain DIR --to DESTINATION -c FILE
                                        send an orphan queue through DESTINATION of FILE, then remove its files`;

const time = (ms: number | null) => (ms === null ? '-' : new Date(ms).toISOString());

function describeInfo(i: QueueFileInfo): string {
  const fill = i.capacity > 0 ? ` (${((100 * i.bytes) / i.capacity).toFixed(1)}% of ${formatSize(i.capacity)})` : '';
  return [
    `file:        ${i.file}`,
    `destination: ${i.destination ?? 'unknown (no queue.json)'}`,
    `mode:        ${i.mode ?? 'unknown (no queue.json)'}`,
    `status:      ${i.corrupt ? `CORRUPT: ${i.corrupt} (the next start rotates it and salvages every valid record)` : 'ok'}`,
    `lock:        ${i.lockedBy ? `held by PID ${i.lockedBy}` : 'free'}`,
    `capacity:    ${formatSize(i.capacity)} (file ${i.fileBytes} bytes)`,
    `head:        position ${i.head}, sequence ${i.headSeq}`,
    `tail:        position ${i.tail}, sequence ${i.tailSeq}`,
    `records:     ${i.records} unacknowledged${i.memoryRecords ? `, plus ${i.memoryRecords} saved from memory (memory.sq)` : ''}`,
    `bytes:       ${i.bytes}${fill}`,
    `oldest:      ${time(i.oldestReceivedAt)}`,
    `newest:      ${time(i.newestReceivedAt)}`,
    `recovery:    ${i.recoveredRecords} record(s) past the last header, ${i.tornRecords} torn`,
  ].join('\n');
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c]!)).join('  ').trimEnd()).join('\n');
}

export interface QueueCommandContext {
  args: string[];
  values: { into?: string; to?: string; json?: boolean; config?: string };
  /** Loads -c FILE (printing its problems); null when it is invalid. */
  loadConfig: () => SluiceConfig | null;
  configGiven: boolean;
  logger: () => Logger;
  out: (s: string) => void;
  err: (s: string) => void;
}

export async function queueCommand(ctx: QueueCommandContext): Promise<number> {
  const [sub, target] = ctx.args;
  const need = (what: string): string | null => {
    if (target) return target;
    ctx.err(`sluice queue ${sub}: ${what} is missing\n\n${QUEUE_HELP}`);
    return null;
  };
  switch (sub) {
    case 'ls': {
      let stateDir = target;
      let configured: Set<string> | null = null;
      if (!stateDir || ctx.configGiven) {
        const config = ctx.loadConfig();
        if (!config) return 1;
        stateDir ??= config.state_dir;
        configured = new Set(Object.keys(config.destinations));
      }
      const entries = await listQueueDirs(path.resolve(stateDir));
      if (entries.length === 0) {
        ctx.out(`no queues under ${path.join(path.resolve(stateDir), 'queues')}`);
        return 0;
      }
      const rows = [['QUEUE', 'MODE', 'RECORDS', 'BYTES', 'FILL', 'OLDEST', 'STATUS']];
      for (const e of entries) {
        const i = e.info;
        const status = [
          e.error ? `unreadable: ${e.error}` : i?.corrupt ? `CORRUPT: ${i.corrupt}` : 'ok',
          configured && !configured.has(e.name) ? 'ORPHAN' : '',
          i?.lockedBy ? `in use by PID ${i.lockedBy}` : '',
          e.corruptedFiles.length ? `${e.corruptedFiles.length} rotated corrupt file(s)` : '',
        ]
          .filter(Boolean)
          .join(', ');
        rows.push([
          e.name,
          i?.mode ?? '-',
          i ? String(i.records + i.memoryRecords) : '-',
          i ? formatSize(i.bytes) : '-',
          i && i.capacity > 0 ? `${((100 * i.bytes) / i.capacity).toFixed(1)}%` : '-',
          time(i?.oldestReceivedAt ?? null),
          status,
        ]);
      }
      ctx.out(table(rows));
      return entries.some((e) => e.error || e.info?.corrupt) ? 1 : 0;
    }
    case 'info': {
      const file = need('FILE');
      if (!file) return 2;
      const info = await inspectQueueFile(file);
      ctx.out(ctx.values.json ? JSON.stringify(info, null, 1) : describeInfo(info));
      return info.corrupt ? 1 : 0;
    }
    case 'cat': {
      const file = need('FILE');
      if (!file) return 2;
      let damaged: string | null = null;
      for await (const { seq, record } of unackedRecords(queueFilePath(file), (reason) => (damaged = reason))) {
        if (ctx.values.json) {
          const o = record.origin;
          ctx.out(JSON.stringify({ seq, received_at: time(record.receivedAt), source: o.source, from: o.from, raw: record.raw.toString('utf8') }));
        } else {
          ctx.out(record.raw.toString('utf8'));
        }
      }
      if (damaged) ctx.err(`sluice queue cat: the file is damaged (${damaged as string}); printed every record a salvage would keep`);
      return damaged ? 1 : 0;
    }
    case 'salvage': {
      const file = need('FILE');
      if (!file) return 2;
      if (!ctx.values.into) {
        ctx.err(`sluice queue salvage: --into DIR is missing\n\n${QUEUE_HELP}`);
        return 2;
      }
      const r = await salvageQueueFile(queueFilePath(file), path.resolve(ctx.values.into));
      ctx.out(`salvaged ${r.records} record(s) into ${r.into}${r.corrupt ? ` (the source was damaged: ${r.corrupt})` : ''}; ${file} was not changed`);
      return 0;
    }
    case 'drain': {
      const dir = need('DIR');
      if (!dir) return 2;
      if (!ctx.values.to) {
        ctx.err(`sluice queue drain: --to DESTINATION is missing\n\n${QUEUE_HELP}`);
        return 2;
      }
      const config = ctx.loadConfig();
      if (!config) return 1;
      const destConfig = config.destinations[ctx.values.to];
      if (!destConfig) {
        ctx.err(`sluice queue drain: no destination "${ctx.values.to}" in ${ctx.values.config}`);
        return 2;
      }
      const abs = path.resolve(dir);
      if (!existsSync(abs)) {
        ctx.err(`sluice queue drain: ${abs} does not exist`);
        return 2;
      }
      const drain = await startDrain({ name: path.basename(abs), dir: abs }, ctx.values.to, destConfig, ctx.logger(), config.hostname ?? os.hostname());
      ctx.out(`draining ${drain.initial} record(s) from ${abs} into ${ctx.values.to} (${drain.destination.describe()})`);
      const stop = () => void drain.stop(config.shutdown_timeout);
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      const result = await drain.done;
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      if (result.drained) {
        ctx.out(`drained ${drain.initial} record(s); removed the queue files in ${abs}`);
        return 0;
      }
      ctx.out(`stopped with ${result.left} record(s) left in ${abs}`);
      return 1;
    }
    default:
      ctx.err(`sluice queue: unknown or missing subcommand${sub ? ` "${sub}"` : ''}\n\n${QUEUE_HELP}`);
      return 2;
  }
}
