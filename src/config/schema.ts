import { z } from 'zod';
import { fileDestinationSchema } from '../destinations/file/config.js';
import { syslogDestinationSchema } from '../destinations/syslog/config.js';
import { fileSourceSchema } from '../sources/file/config.js';
import { syslogTcpSourceSchema } from '../sources/syslog-tcp/config.js';
import { syslogUdpSourceSchema } from '../sources/syslog-udp/config.js';
import { sluiceSourceSchema } from '../sources/sluice/config.js';
import { sluiceDestinationSchema } from '../destinations/sluice/config.js';
import { relpSourceSchema } from '../sources/relp/config.js';
import { journaldSourceSchema } from '../sources/journald/config.js';
import { unixSourceSchema } from '../sources/unix/config.js';
import { kernelSourceSchema } from '../sources/kernel/config.js';
import { natsSourceSchema } from '../sources/nats/config.js';
import { relpDestinationSchema } from '../destinations/relp/config.js';
import { natsDestinationSchema } from '../destinations/nats/config.js';
import { address, duration, facilityName, regex, severityName } from './types.js';

/** The one schema: TypeScript types, validation and docs/configuration.md all come from it. */

export const SOURCE_SCHEMAS = [
  syslogUdpSourceSchema,
  syslogTcpSourceSchema,
  fileSourceSchema,
  sluiceSourceSchema,
  relpSourceSchema,
  journaldSourceSchema,
  unixSourceSchema,
  kernelSourceSchema,
  natsSourceSchema,
] as const;
export const DESTINATION_SCHEMAS = [
  syslogDestinationSchema,
  fileDestinationSchema,
  sluiceDestinationSchema,
  relpDestinationSchema,
  natsDestinationSchema,
] as const;

const componentName = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9_.-]*$/,
    'names start with a letter or digit and use only letters, digits, "_", "." and "-"',
  );

export const sourceSchema = z.discriminatedUnion('type', SOURCE_SCHEMAS);
export const destinationSchema = z.discriminatedUnion('type', DESTINATION_SCHEMAS);

export const whereSchema = z
  .strictObject({
    facility: z.array(facilityName).min(1).optional().describe('Keep messages of these facilities.'),
    severity: z.array(severityName).min(1).optional().describe('Keep messages of exactly these severities.'),
    min_severity: severityName
      .optional()
      .describe('Keep messages of this severity or a more urgent one (`warning` keeps emerg to warning).'),
    host: regex()
      .optional()
      .describe('Regular expression the HOSTNAME must match (the sender address when the message has none).'),
    app: regex().optional().describe('Regular expression the APP-NAME (RFC 3164 tag) must match.'),
    message: regex().optional().describe('Regular expression the MSG part must match.'),
    sd: z
      .record(z.string().regex(/^[^.]+(\.[^.]+)*\.[^.]+$/, 'a key is <SD-ID>.<PARAM>'), regex())
      .optional()
      .describe(
        'Regular expressions structured-data parameters must match, by `<SD-ID>.<PARAM>` ' +
          '(`journal@32473._SYSTEMD_UNIT: "^nginx"`); a message without the parameter does not pass.',
      ),
  })
  .describe(
    'A filter: a message passes when it meets every condition given. Messages that do not parse count as user.notice ' +
      'with no host or app.',
  );

export const pipelineSchema = z
  .strictObject({
    from: z.array(z.string()).min(1).describe('Names of the sources feeding this pipeline.'),
    where: whereSchema.optional(),
    to: z
      .array(z.string())
      .min(1)
      .describe('Names of the destinations; each gets its own copy of every message (fan-out).'),
  })
  .describe('Connects sources to destinations.');

export const configSchema = z
  .strictObject({
    state_dir: z
      .string()
      .default('var/state')
      .describe(
        'Where sluice keeps its state: file checkpoints (`checkpoints/`) and disk queues (`queues/<destination>/`). ' +
          'Relative paths are taken from the working directory.',
      ),
    hostname: z
      .string()
      .optional()
      .describe('Name this host gives its own records (file lines). Default: the system host name.'),
    log: z
      .strictObject({
        level: z
          .enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal'])
          .default('info')
          .describe('Least severe level logged.'),
        format: z
          .enum(['auto', 'json', 'pretty'])
          .default('auto')
          .describe(
            '`json` lines (for journald and log collectors), `pretty` text, or `auto`: pretty when stderr is a ' +
              'terminal.',
          ),
      })
      .prefault({})
      .describe("sluice's own log, on stderr."),
    shutdown_timeout: duration()
      .prefault('10s')
      .describe('On SIGTERM or SIGINT, how long in-flight records may take to drain before sluice exits.'),
    sources: z.record(componentName, sourceSchema).describe('Named inputs; the key is the name pipelines use.'),
    destinations: z.record(componentName, destinationSchema).describe('Named outputs, each with its own queue.'),
    pipelines: z.record(componentName, pipelineSchema).describe('Named routes from sources to destinations.'),
    admin: z
      .strictObject({
        enabled: z.boolean().default(true).describe('Serve the admin HTTP listener.'),
        address: address()
          .prefault('127.0.0.1:9601')
          .describe(
            'Where it listens: `/metrics` (Prometheus), `/healthz`, `/readyz`, `/api/v1/stats` and the status page ' +
              'at `/`. ' +
              'Default loopback only: it has no authentication, so expose it only behind something that has.',
          ),
        allowed_hosts: z
          .array(z.string().min(1))
          .default([])
          .describe(
            'Host names the listener answers besides IP addresses, `localhost` and `*.localhost` (matched against ' +
              "the request's Host header, without port). " +
              'Any other name is refused with 421, so that a web page cannot read the listener through DNS ' +
              'rebinding. Add the names Prometheus or a browser use to reach it.',
          ),
      })
      .prefault({})
      .describe('The admin HTTP listener. If its address cannot be bound, sluice logs an error and runs without it.'),
    load_shedding: z
      .strictObject({
        debounce: duration()
          .prefault('5s')
          .describe(
            'ENOSPC and other write failures under state_dir latch the gate when they go on this long (EIO and EROFS ' +
              'latch at once). Short disk-full blips do not stop intake.',
          ),
        quiet_window: duration()
          .prefault('30s')
          .describe(
            'A latched gate opens again after this long without a write failure. `0s`: only a restart opens it.',
          ),
      })
      .prefault({})
      .describe(
        'When the disk under state_dir fails, sluice stops accepting instead of taking records it cannot keep: TCP ' +
          'and file sources pause, UDP drops and counts (`load_shedding`), `/readyz` fails.',
      ),
    drain_orphans: z
      .record(componentName, z.string())
      .default({})
      .describe(
        'Orphan queues to empty: `<old destination name>: <configured destination>`. An orphan is a queue directory ' +
          'under `state_dir/queues/` whose destination is no longer configured; ' +
          'sluice reports every orphan at start and never deletes one. Listed here, its records are sent through a ' +
          'separate instance of the named destination, and once all are delivered its queue files are removed (and ' +
          'logged).',
      ),
  })
  .describe('The sluice configuration file.');

export type SluiceConfig = z.output<typeof configSchema>;
export type SourceConfig = z.output<typeof sourceSchema>;
export type DestinationConfig = z.output<typeof destinationSchema>;
export type PipelineConfig = z.output<typeof pipelineSchema>;
export type WhereConfig = z.output<typeof whereSchema>;
export type QueueConfig = DestinationConfig['queue'];

/** Keys whose values are templates: `${MACRO}` there is a template macro, not an environment variable. */
export const TEMPLATE_KEYS: ReadonlyArray<readonly string[]> = [
  ['destinations', '*', 'path'],
  ['destinations', '*', 'subject'],
];
