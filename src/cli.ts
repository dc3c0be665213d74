#!/usr/bin/env node
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Agent, ReloadNeedsRestart } from './agent.js';
import { loadConfigIsolated } from './config/load-isolated.js';
import { ConfigError, formatProblem, type LoadedConfig } from './config/problems.js';
import type { SluiceConfig } from './config/schema.js';
import { formatDuration, formatSize } from './config/units.js';
import { memBufLength } from './config/defaults.js';
import { createLogger } from './log.js';
import { version } from './version.js';
import { QUEUE_HELP, queueCommand } from './cli-queue.js';
import { statsCommand } from './cli-stats.js';
import { inspectQueueFile } from './queue/disk/inspect.js';
import { QueueLayout, queueDir } from './queue/layout.js';
import { DATA_START } from './queue/disk/ring-file.js';
import { findOrphans } from './queue/orphans.js';
import { OPENSSL_CONFIG, relaunchWithoutTickets, ticketsOff, tlsListeners } from './net/tls-tickets.js';

const HELP = `sluice — a syslog shipper that does not lose logs

Usage:
  sluice run -c FILE      run in the foreground with FILE (JSON logs on stderr; readable on a terminal)
  sluice check -c FILE    validate FILE and print the pipelines it would run; exit 1 on any error
  sluice reload -c FILE --pid PID
                          validate FILE, then tell the sluice with PID to reload it (SIGHUP);
                          exit 1 without signalling when FILE has errors
  sluice stats [-c FILE | --url URL] [--watch [SECONDS]]
                          the counters of a running sluice, as a table (from its admin listener)
  sluice queue ...        inspect, salvage and drain queue files (sluice queue help)
  sluice --version        print the version
  sluice --help           print this help

Options:
  -c, --config FILE       the configuration file (default: /etc/sluice/sluice.yaml)

Signals (run): SIGTERM or SIGINT drain in-flight records, up to shutdown_timeout, then exit 0.
               SIGHUP reloads FILE: a config with errors is rejected and the running one kept.
Docs: docs/configuration.md, docs/operations.md`;

const DEFAULT_CONFIG = '/etc/sluice/sluice.yaml';


async function load(file: string): Promise<LoadedConfig | null> {
  try {
    const loaded = await loadConfigIsolated(file);
    for (const w of loaded.warnings) process.stderr.write(`${formatProblem(w)}\n`);
    return loaded;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const p of err.problems) process.stderr.write(`${formatProblem(p)}\n`);
    process.stderr.write(`${file}: ${err.problems.filter((p) => p.severity === 'error').length} error(s); nothing was started\n`);
    return null;
  }
}

function describeWhere(w: NonNullable<SluiceConfig['pipelines'][string]['where']>): string {
  const parts: string[] = [];
  if (w.facility) parts.push(`facility in [${w.facility.join(', ')}]`);
  if (w.severity) parts.push(`severity in [${w.severity.join(', ')}]`);
  if (w.min_severity) parts.push(`severity >= ${w.min_severity}`);
  if (w.host) parts.push(`host =~ ${w.host}`);
  if (w.app) parts.push(`app =~ ${w.app}`);
  if (w.message) parts.push(`message =~ ${w.message}`);
  return parts.join(' and ');
}

/** What `check` prints: every pipeline with its endpoints, without touching the network. */
export function describeConfig(config: SluiceConfig): string {
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
      const file = `${formatSize(q.max_size)} file in ${queueDir(agent.stateDir, d)}, sync ${q.sync}${q.sync === 'interval' ? ` every ${formatDuration(q.sync_interval)}` : ''}`;
      lines.push(
        q.mode === 'memory'
          ? `       queue memory, up to ${memBufLength(q)} records / ${formatSize(q.mem_buf_size)}, ${full}`
          : q.mode === 'normal'
            ? `       queue normal, ${q.qout_size} + ${memBufLength(q)} records in memory (lost by a crash), then a ${file}, ${full}`
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
      lines.push(`queue ${name}: CORRUPT ${file}: ${info.corrupt}; at start it is renamed to .corrupted-<time> and ${info.records} valid record(s) are salvaged`);
    } else {
      const mismatch = info.capacity + DATA_START !== dc.queue.max_size ? `; the file is ${formatSize(info.fileBytes)}, max_size ${formatSize(dc.queue.max_size)}: resized at start` : '';
      lines.push(`queue ${name}: ok, ${info.records + info.memoryRecords} record(s) waiting${info.lockedBy ? `, in use by PID ${info.lockedBy}` : ''}${mismatch}`);
    }
  }
  for (const o of findOrphans(stateDir, Object.keys(config.destinations))) {
    warnings++;
    const target = config.drain_orphans[o.name];
    lines.push(`queue ${o.name}: ORPHAN (no destination of that name) in ${o.dir}${target ? `; drained into ${target} at start` : '; drain it with `sluice queue drain` or drain_orphans'}`);
  }
  return { lines, errors, warnings };
}

/** TLS listeners in a process whose OpenSSL sends session tickets: say what that risks. */
function warnTickets(logger: ReturnType<typeof createLogger>, config: SluiceConfig): void {
  const sources = tlsListeners(config);
  if (sources.length === 0) return;
  logger.warn(
    { sources, openssl_config: OPENSSL_CONFIG },
    'TLS 1.3 session tickets are on: a client that never reads (loggen, many appliances) can lose what it sent last when it closes; start sluice with bin/sluice, or node --openssl-config=<that file>',
  );
}

async function run(file: string): Promise<number> {
  const loaded = await load(file);
  if (!loaded) return 2;
  const { config } = loaded;
  const logger = createLogger(config.log);
  const listeners = tlsListeners(config);
  if (listeners.length > 0 && !ticketsOff()) {
    if (!process.env.SLUICE_RELAUNCHED) {
      // Started without bin/sluice (node dist/cli.js): OpenSSL reads its settings only at start.
      logger.info({ sources: listeners, openssl_config: OPENSSL_CONFIG }, 'TLS listeners: starting node again with TLS 1.3 session tickets off (use bin/sluice to start in one process)');
      process.env.SLUICE_RELAUNCHED = '1';
      return relaunchWithoutTickets();
    }
    warnTickets(logger, config);
  }
  if (process.env.SLUICE_RELAUNCHED && process.channel) {
    // Started by relaunchWithoutTickets: stop cleanly when that process dies.
    process.channel.unref();
    process.on('disconnect', () => process.kill(process.pid, 'SIGTERM'));
  }
  process.on('uncaughtException', (err) => logger.error({ err }, 'unexpected error; sluice keeps running'));
  process.on('unhandledRejection', (err) => logger.error({ err }, 'unexpected rejection; sluice keeps running'));
  let agent: Agent;
  try {
    agent = new Agent(config, logger);
    await agent.start();
  } catch (err) {
    logger.fatal({ err: (err as Error).message }, 'sluice cannot start');
    return 1;
  }
  logger.info({ version: version(), config: path.resolve(file) }, 'sluice is running');
  let running = config;
  return new Promise((resolve) => {
    let stopping = false;
    let work: Promise<void> = Promise.resolve();

    /**
     * SIGHUP: the file is validated first; with errors, the running configuration stays. Otherwise
     * the agent is stopped as for SIGTERM (sources closed, queues drained up to shutdown_timeout;
     * disk queues keep the rest) and started again on the new configuration. If that cannot start,
     * the previous configuration is started again.
     */
    const reload = async (): Promise<void> => {
      let next: LoadedConfig;
      try {
        next = await loadConfigIsolated(file);
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        for (const p of err.problems) logger.error({ problem: formatProblem(p) }, 'config problem');
        logger.error({ config: path.resolve(file) }, 'reload rejected: the config has errors; the running configuration is kept');
        return;
      }
      for (const w of next.warnings) logger.warn({ problem: formatProblem(w) }, 'config warning');
      if (!ticketsOff()) warnTickets(logger, next.config);
      try {
        const r = await agent.reload(next.config);
        running = next.config;
        const summary = { kept: r.kept, restarted: r.restarted, started: r.started, stopped: r.stopped };
        if (r.errors.length > 0) logger.error({ ...summary, errors: r.errors }, 'reloaded, with errors: the components named in errors are not running');
        else logger.info(summary, 'reloaded');
        return;
      } catch (err) {
        if (!(err instanceof ReloadNeedsRestart)) throw err;
      }
      logger.info({ config: path.resolve(file) }, 'reloading: state_dir changed, so every pipeline is stopped and started again');
      await agent.stop();
      try {
        const fresh = new Agent(next.config, logger);
        await fresh.start();
        agent = fresh;
        running = next.config;
        logger.info('reloaded');
      } catch (err) {
        logger.error({ err: (err as Error).message }, 'the new configuration cannot start; starting the previous one again');
        const previous = new Agent(running, logger);
        await previous.start();
        agent = previous;
      }
    };

    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        logger.warn({ signal }, 'second signal: exiting without waiting for the drain');
        resolve(1);
        return;
      }
      stopping = true;
      logger.info({ signal, shutdown_timeout_ms: running.shutdown_timeout }, 'stopping: draining in-flight records');
      void work
        .then(() => agent.stop())
        .then(
          () => {
            logger.info('stopped');
            resolve(0);
          },
          (err: Error) => {
            logger.error({ err }, 'error while stopping');
            resolve(0);
          },
        );
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    process.on('SIGHUP', () => {
      if (stopping) return;
      work = work.then(reload).catch((err: Error) => {
        logger.fatal({ err: err.message }, 'reload failed and the previous configuration cannot start again');
        resolve(1);
      });
    });
  });
}

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        into: { type: 'string' },
        to: { type: 'string' },
        json: { type: 'boolean' },
        resend: { type: 'boolean' },
        pid: { type: 'string' },
        url: { type: 'string' },
        watch: { type: 'boolean' },
        version: { type: 'boolean', short: 'V' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    process.stderr.write(`sluice: ${(err as Error).message}\n\n${HELP}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.version) {
    process.stdout.write(`sluice ${version()}\n`);
    return 0;
  }
  const command = positionals[0];
  if (values.help || command === undefined || command === 'help') {
    process.stdout.write(`${HELP}\n`);
    return values.help || command === 'help' ? 0 : 2;
  }
  const file = values.config ?? DEFAULT_CONFIG;
  switch (command) {
    case 'run':
      return run(file);
    case 'check': {
      const loaded = await load(file);
      if (!loaded) return 1;
      process.stdout.write(`${describeConfig(loaded.config)}\n`);
      const queues = await checkQueues(loaded.config);
      process.stdout.write(queues.lines.map((l) => `${l}\n`).join(''));
      if (queues.errors > 0) {
        process.stdout.write(`${file}: config OK, but ${queues.errors} queue problem(s)\n`);
        return 1;
      }
      const warnings = loaded.warnings.length + queues.warnings;
      process.stdout.write(`${file}: OK${warnings ? ` (${warnings} warning(s))` : ''}\n`);
      return 0;
    }
    case 'stats': {
      let url = values.url;
      if (!url) {
        const loaded = await load(file);
        if (!loaded) return 1;
        const a = loaded.config.admin;
        if (!a.enabled) {
          process.stderr.write(`sluice stats: the admin listener is off in ${file} (admin.enabled)\n`);
          return 2;
        }
        const host = a.address.host === '0.0.0.0' ? '127.0.0.1' : a.address.host === '::' ? '[::1]' : a.address.host.includes(':') ? `[${a.address.host}]` : a.address.host;
        url = `http://${host}:${a.address.port}`;
      }
      const seconds = positionals[1] !== undefined ? Number(positionals[1]) : 2;
      if (values.watch && !(seconds > 0)) {
        process.stderr.write(`sluice stats: --watch takes a number of seconds, got ${positionals[1]}\n`);
        return 2;
      }
      return statsCommand(url, values.watch ? seconds * 1000 : null, (t) => process.stdout.write(`${t}\n`), (t) => process.stderr.write(`${t}\n`));
    }
    case 'reload': {
      const pid = Number(values.pid);
      if (!Number.isInteger(pid) || pid <= 0) {
        process.stderr.write(`sluice reload: --pid PID is missing or not a process id\n`);
        return 2;
      }
      const loaded = await load(file);
      if (!loaded) {
        process.stderr.write(`sluice reload: not signalled; PID ${pid} keeps its running configuration\n`);
        return 1;
      }
      try {
        process.kill(pid, 'SIGHUP');
      } catch (err) {
        process.stderr.write(`sluice reload: cannot signal PID ${pid}: ${(err as Error).message}\n`);
        return 1;
      }
      process.stdout.write(`${file}: OK; asked PID ${pid} to reload it\n`);
      return 0;
    }
    case 'queue':
      if (positionals[1] === undefined || positionals[1] === 'help') {
        process.stdout.write(`${QUEUE_HELP}\n`);
        return positionals[1] === 'help' ? 0 : 2;
      }
      return queueCommand({
        args: positionals.slice(1),
        values: { ...values, config: file },
        configGiven: values.config !== undefined,
        loadConfig: async () => (await load(file))?.config ?? null,
        logger: () => createLogger({ level: 'info', format: 'auto' }),
        out: (t) => process.stdout.write(`${t}\n`),
        err: (t) => process.stderr.write(`${t}\n`),
      });
    default:
      process.stderr.write(`sluice: unknown command "${command}"\n\n${HELP}\n`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Timers and sockets of a stopped agent must not keep the process alive.
    setTimeout(() => process.exit(code), 50).unref();
  },
  (err: Error) => {
    process.stderr.write(`sluice: ${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
