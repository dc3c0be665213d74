import { existsSync, readdirSync, renameSync, statSync } from 'node:fs';
import { queuesRoot } from '../queue/layout.js';
import os from 'node:os';
import path from 'node:path';
import type { SluiceConfig } from '../config/schema.js';
import { formatSize } from '../config/units.js';
import type { Logger } from '../log.js';
import {
  inspectQueueFile,
  listQueueDirs,
  queueFilePath,
  salvageQueueFile,
  unackedRecords,
  type QueueFileInfo,
} from '../queue/disk/inspect.js';
import { startDrain } from '../queue/orphans.js';
import { buildDestination, buildMemoryQueue, loadComponents } from '../components.js';
import { FileDeadLetters, fromLine, readDeadLetters } from '../destinations/dead-letters.js';

/** `sluice queue ls|info|cat|salvage|drain`: offline tools for queue directories, like syslog-ng's dqtool. */

export const QUEUE_HELP = `Queue tools (they never change a queue they only read):
  sluice queue ls [STATE_DIR]           every queue under STATE_DIR/queues (default: state_dir of -c FILE)
  sluice queue info FILE|DIR            heads, records, bytes, oldest record, damage, lock holder
  sluice queue cat FILE|DIR [--json]    print the unacknowledged records, oldest first
  sluice queue salvage FILE|DIR --into DIR
                                        copy every valid unacknowledged record into a fresh queue in DIR
  sluice queue drain DIR --to DESTINATION -c FILE
                                        send an orphan queue through DESTINATION of FILE, then remove its files
  sluice queue dead-letters FILE|STATE_DIR [--json]
                                        the records destinations set aside, with reason, attempts and time
  sluice queue dead-letters FILE --resend --to DESTINATION -c FILE
                                        send them again through DESTINATION (once the cause is fixed); the file
                                        is kept as FILE.resent-<time>, and what fails again is set aside anew`;

const time = (ms: number | null) => (ms === null ? '-' : new Date(ms).toISOString());

function describeInfo(i: QueueFileInfo): string {
  const fill = i.capacity > 0 ? ` (${((100 * i.bytes) / i.capacity).toFixed(1)}% of ${formatSize(i.capacity)})` : '';
  return [
    `file:        ${i.file}`,
    `destination: ${i.destination ?? 'unknown (no queue.json)'}`,
    `mode:        ${i.mode ?? 'unknown (no queue.json)'}`,
    `status:      ` +
      `${i.corrupt ? `CORRUPT: ${i.corrupt} (the next start rotates it and salvages every valid record)` : 'ok'}`,
    `lock:        ${i.lockedBy ? `held by PID ${i.lockedBy}` : 'free'}`,
    `capacity:    ${formatSize(i.capacity)} (file ${i.fileBytes} bytes)`,
    `head:        position ${i.head}, sequence ${i.headSeq}`,
    `tail:        position ${i.tail}, sequence ${i.tailSeq}`,
    `records:     ${i.records} ` +
      `unacknowledged${i.memoryRecords ? `, plus ${i.memoryRecords} saved from memory (memory.sq)` : ''}`,
    `bytes:       ${i.bytes}${fill}`,
    `oldest:      ${time(i.oldestReceivedAt)}`,
    `newest:      ${time(i.newestReceivedAt)}`,
    `recovery:    ${i.recoveredRecords} record(s) past the last header, ${i.tornRecords} torn`,
  ].join('\n');
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows
    .map((r) =>
      r
        .map((cell, c) => cell.padEnd(widths[c]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export interface QueueCommandContext {
  args: string[];
  values: { into?: string; to?: string; json?: boolean; config?: string; resend?: boolean };
  /** Loads -c FILE (printing its problems); null when it is invalid. */
  loadConfig: () => Promise<SluiceConfig | null>;
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
        const config = await ctx.loadConfig();
        if (!config) return 1;
        stateDir ??= config.state_dir;
        configured = new Set(Object.keys(config.destinations));
      }
      const entries = await listQueueDirs(path.resolve(stateDir));
      if (entries.length === 0) {
        ctx.out(`no queues under ${queuesRoot(path.resolve(stateDir))}`);
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
          ctx.out(
            JSON.stringify({
              seq,
              received_at: time(record.receivedAt),
              source: o.source,
              from: o.from,
              raw: record.raw.toString('utf8'),
            }),
          );
        } else {
          ctx.out(record.raw.toString('utf8'));
        }
      }
      if (damaged)
        ctx.err(
          `sluice queue cat: the file is damaged (${damaged as string}); printed every record a salvage would keep`,
        );
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
      ctx.out(
        `salvaged ${r.records} record(s) into ` +
          `${r.into}${r.corrupt ? ` (the source was damaged: ${r.corrupt})` : ''}; ${file} was not changed`,
      );
      return 0;
    }
    case 'drain': {
      const dir = need('DIR');
      if (!dir) return 2;
      if (!ctx.values.to) {
        ctx.err(`sluice queue drain: --to DESTINATION is missing\n\n${QUEUE_HELP}`);
        return 2;
      }
      const config = await ctx.loadConfig();
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
      await loadComponents(config);
      const drain = await startDrain(
        { name: path.basename(abs), dir: abs },
        ctx.values.to,
        (name, queue, logger) =>
          buildDestination(destConfig, { name, queue, logger, hostname: config.hostname ?? os.hostname() }),
        ctx.logger(),
      );
      ctx.out(
        `draining ${drain.initial} record(s) from ${abs} into ${ctx.values.to} (${drain.destination.describe()})`,
      );
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
    case 'dead-letters':
      return deadLettersCommand(ctx, need);
    default:
      ctx.err(`sluice queue: unknown or missing subcommand${sub ? ` "${sub}"` : ''}\n\n${QUEUE_HELP}`);
      return 2;
  }
}

/** `sluice queue dead-letters`: lists a dead-letter file (or every one under a state directory), or sends one again. */
async function deadLettersCommand(ctx: QueueCommandContext, need: (what: string) => string | null): Promise<number> {
  const target = need('FILE or STATE_DIR');
  if (!target) return 2;
  const abs = path.resolve(target);
  if (!existsSync(abs)) {
    ctx.err(`sluice queue dead-letters: ${abs} does not exist`);
    return 2;
  }
  // A state directory (its dead-letters/ inside), the dead-letters directory itself, or one file.
  const dir = statSync(abs).isDirectory()
    ? existsSync(path.join(abs, 'dead-letters'))
      ? path.join(abs, 'dead-letters')
      : abs
    : null;
  const files = dir
    ? readdirSync(dir)
        .filter((f) => f.endsWith('.jsonl'))
        .map((f) => path.join(dir, f))
    : [abs];
  if (ctx.values.resend) {
    if (files.length !== 1 || files[0] !== abs) {
      ctx.err('sluice queue dead-letters --resend: name one dead-letter file');
      return 2;
    }
    return resendDeadLetters(ctx, abs);
  }
  for (const file of files) {
    const { letters, unreadable } = await readDeadLetters(file);
    if (ctx.values.json) {
      for (const l of letters) ctx.out(JSON.stringify(l));
      continue;
    }
    const reasons = new Map<string, number>();
    for (const l of letters) reasons.set(l.reason, (reasons.get(l.reason) ?? 0) + 1);
    ctx.out(
      `${file}: ${letters.length} ` +
        `record(s)${reasons.size ? ` (${[...reasons].map(([r, n]) => `${r} ${n}`).join(', ')})` : ''}` +
        `${unreadable ? `, ${unreadable} unreadable line(s)` : ''}`,
    );
    if (letters.length === 0) continue;
    const rows = [['TIME', 'DESTINATION', 'REASON', 'ATTEMPTS', 'SOURCE', 'MESSAGE']];
    for (const l of letters)
      rows.push([
        l.time,
        l.destination,
        l.reason,
        String(l.attempts),
        l.source,
        (l.message ?? `(base64) ${l.message_base64 ?? ''}`).slice(0, 80),
      ]);
    ctx.out(table(rows));
  }
  return 0;
}

async function resendDeadLetters(ctx: QueueCommandContext, file: string): Promise<number> {
  if (!ctx.values.to) {
    ctx.err(`sluice queue dead-letters --resend: --to DESTINATION is missing\n\n${QUEUE_HELP}`);
    return 2;
  }
  const config = await ctx.loadConfig();
  if (!config) return 1;
  const destConfig = config.destinations[ctx.values.to];
  if (!destConfig) {
    ctx.err(`sluice queue dead-letters: no destination "${ctx.values.to}" in ${ctx.values.config}`);
    return 2;
  }
  await loadComponents(config);
  const { letters, unreadable } = await readDeadLetters(file);
  // The file is kept, renamed: what fails again is set aside anew under the original name.
  const kept = `${file}.resent-${new Date().toISOString().replace(/[:.]/g, '-')}`;
  renameSync(file, kept);
  const logger = ctx.logger();
  const queue = buildMemoryQueue(`${ctx.values.to}<-dead-letters`, {
    ...destConfig.queue,
    mem_buf_length: Math.max(letters.length, 1),
    mem_buf_size: 1 << 30,
  });
  const name = path.basename(file, '.jsonl');
  const destination = buildDestination(destConfig, {
    name: `${ctx.values.to}<-dead-letters`,
    queue,
    logger,
    hostname: config.hostname ?? os.hostname(),
    setAside: {
      sink: new FileDeadLetters(file, name, logger),
      maxAge: 0,
      maxRecordAttempts: destConfig.queue.max_record_attempts,
    },
  });
  queue.push(letters.map((l) => fromLine(l)));
  ctx.out(
    `sending ${letters.length} dead letter(s) from ${file} through ${ctx.values.to} ` +
      `(${destination.describe()})${unreadable ? `; ${unreadable} unreadable line(s) skipped` : ''}`,
  );
  destination.start();
  let interrupted = false;
  const stop = () => {
    interrupted = true;
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  while (!interrupted && queue.stats().records > 0) await new Promise((r) => setTimeout(r, 100));
  process.off('SIGINT', stop);
  process.off('SIGTERM', stop);
  const left = await destination.stop(config.shutdown_timeout);
  const again = Object.values(destination.stats.deadLettered).reduce((a, b) => a + b, 0);
  ctx.out(
    `delivered ${destination.stats.delivered}, set aside again ${again}${again ? ` (in ${file})` : ''}, left ${left}${
      left ? ' (they are still in the kept file)' : ''
    }; the original is kept as ${kept}`,
  );
  return left === 0 ? 0 : 1;
}
