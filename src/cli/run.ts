import path from 'node:path';
import { Agent, ReloadNeedsRestart } from '../agent.js';
import { loadConfigIsolated } from '../config/load-isolated.js';
import { ConfigError, formatProblem, type LoadedConfig } from '../config/problems.js';
import type { SluiceConfig } from '../config/schema.js';
import { createLogger } from '../log.js';
import { OPENSSL_CONFIG, relaunchWithoutTickets, ticketsOff, tlsListeners } from '../net/tls-tickets.js';
import { version } from '../version.js';
import { loadConfig } from './config.js';

function warnTickets(logger: ReturnType<typeof createLogger>, config: SluiceConfig): void {
  const sources = tlsListeners(config);
  if (sources.length === 0) return;
  logger.warn(
    { sources, openssl_config: OPENSSL_CONFIG },
    'TLS 1.3 session tickets are on: a client that never reads (loggen, many appliances) can lose what it sent last ' +
      'when it closes; start sluice with bin/sluice, or node --openssl-config=<that file>',
  );
}

/** `sluice run`: runs the agent until SIGTERM or SIGINT; SIGHUP reloads the config. */
export async function run(file: string): Promise<number> {
  const loaded = await loadConfig(file);
  if (!loaded) return 2;
  const { config } = loaded;
  const logger = createLogger(config.log);
  const listeners = tlsListeners(config);
  if (listeners.length > 0 && !ticketsOff()) {
    if (!process.env.SLUICE_RELAUNCHED) {
      // Started without bin/sluice (node dist/cli.js): OpenSSL reads its settings only at start.
      logger.info(
        { sources: listeners, openssl_config: OPENSSL_CONFIG },
        'TLS listeners: starting node again with TLS 1.3 session tickets off (use bin/sluice to start in one process)',
      );
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
     * the running agent applies it in place (Agent.reload): components whose config is unchanged
     * keep running, the others are stopped and started. Only a changed state_dir stops the whole
     * agent (as for SIGTERM) and starts a new one; if that cannot start, the previous configuration
     * is started again.
     */
    const reload = async (): Promise<void> => {
      let next: LoadedConfig;
      try {
        next = await loadConfigIsolated(file);
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        for (const p of err.problems) logger.error({ problem: formatProblem(p) }, 'config problem');
        logger.error(
          { config: path.resolve(file) },
          'reload rejected: the config has errors; the running configuration is kept',
        );
        return;
      }
      for (const w of next.warnings) logger.warn({ problem: formatProblem(w) }, 'config warning');
      if (!ticketsOff()) warnTickets(logger, next.config);
      try {
        const r = await agent.reload(next.config);
        running = next.config;
        const summary = { kept: r.kept, restarted: r.restarted, started: r.started, stopped: r.stopped };
        if (r.errors.length > 0)
          logger.error(
            { ...summary, errors: r.errors },
            'reloaded, with errors: the components named in errors are not running',
          );
        else logger.info(summary, 'reloaded');
        return;
      } catch (err) {
        if (!(err instanceof ReloadNeedsRestart)) throw err;
      }
      logger.info(
        { config: path.resolve(file) },
        'reloading: state_dir changed, so every pipeline is stopped and started again',
      );
      await agent.stop();
      try {
        const fresh = new Agent(next.config, logger);
        await fresh.start();
        agent = fresh;
        running = next.config;
        logger.info('reloaded');
      } catch (err) {
        logger.error(
          { err: (err as Error).message },
          'the new configuration cannot start; starting the previous one again',
        );
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
