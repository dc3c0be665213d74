import { parseArgs } from 'node:util';
import { createLogger } from '../log.js';
import { version } from '../version.js';
import { DEFAULT_CONFIG, loadConfig } from './config.js';

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

const OPTIONS = {
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
} as const;

/** Parses the arguments and runs one command; resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parseArgs<{ args: string[]; allowPositionals: true; options: typeof OPTIONS }>>;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: OPTIONS,
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
  // Each command's module is imported when it runs: a running agent does not carry the code (and
  // the Node modules) of the offline tools.
  switch (command) {
    case 'run':
      return (await import('./run.js')).run(file);
    case 'check':
      return (await import('./check.js')).checkCommand(file);
    case 'stats':
      return (await import('./stats.js')).statsCommand(file, values, positionals[1]);
    case 'reload':
      return (await import('./reload.js')).reloadCommand(file, values.pid);
    case 'queue': {
      const { QUEUE_HELP, queueCommand } = await import('./queue.js');
      if (positionals[1] === undefined || positionals[1] === 'help') {
        process.stdout.write(`${QUEUE_HELP}\n`);
        return positionals[1] === 'help' ? 0 : 2;
      }
      return queueCommand({
        args: positionals.slice(1),
        values: { ...values, config: file },
        configGiven: values.config !== undefined,
        loadConfig: async () => (await loadConfig(file))?.config ?? null,
        logger: () => createLogger({ level: 'info', format: 'auto' }),
        out: (t) => process.stdout.write(`${t}\n`),
        err: (t) => process.stderr.write(`${t}\n`),
      });
    }
    default:
      process.stderr.write(`sluice: unknown command "${command}"\n\n${HELP}\n`);
      return 2;
  }
}
