/**
 * Writes docs/configuration.md from the config schema, so that the reference cannot drift from
 * the validation: `npm run docs:config`. A test checks the committed file is current.
 */
import { z } from 'zod';
import { configSchema } from '../config/schema.js';
import { formatSize } from '../config/units.js';
import { TEMPLATE_MACROS } from '../template/macros.js';

interface JsonSchema {
  type?: string | string[];
  description?: string;
  default?: unknown;
  enum?: unknown[];
  const?: unknown;
  format?: string;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  additionalProperties?: JsonSchema | boolean;
  oneOf?: JsonSchema[];
  anyOf?: JsonSchema[];
  minimum?: number;
  exclusiveMinimum?: number;
  minItems?: number;
}

const schema = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;

function typeOf(s: JsonSchema): string {
  if (s.format === 'size') return 'size';
  if (s.format === 'duration') return 'duration';
  if (s.format === 'host:port') return 'host:port';
  if (s.format === 'regex') return 'regex';
  if (s.const !== undefined) return `\`${String(s.const)}\``;
  if (s.enum) return s.enum.map((e) => `\`${String(e)}\``).join(' | ');
  if (s.type === 'array') return `list of ${s.items ? typeOf(s.items) : 'values'}`;
  if (s.type === 'integer') return 'integer';
  if (s.type === 'object') return 'mapping';
  if (Array.isArray(s.type)) return s.type.join(' or ');
  if (s.anyOf) return s.anyOf.map(typeOf).join(' or ');
  return s.type ?? 'any';
}

function defaultOf(s: JsonSchema): string {
  if (s.default === undefined) return '';
  const d = s.default;
  if (Array.isArray(d)) return `\`${JSON.stringify(d)}\``;
  if (typeof d === 'object' && d !== null)
    return Object.keys(d).length === 0 ? '(see below)' : `\`${JSON.stringify(d)}\``;
  if (s.format === 'size' && typeof d === 'number') return `\`${formatSize(d)}\``;
  return `\`${String(d)}\``;
}

function escapeCell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

/** A table of the keys of an object schema; nested objects get their own section, named `prefix.key`. */
function table(obj: JsonSchema, prefix: string, nested: [string, JsonSchema][]): string[] {
  const out = ['| key | type | default | description |', '|---|---|---|---|'];
  const required = new Set(obj.required ?? []);
  for (const [key, raw] of Object.entries(obj.properties ?? {})) {
    const prop = raw.anyOf?.find((a) => a.type === 'object') ?? raw;
    if (prop.type === 'object' && prop.properties)
      nested.push([`${prefix}.${key}`, { ...prop, description: raw.description ?? prop.description }]);
    const req = required.has(key) && raw.default === undefined ? ' **(required)**' : '';
    const desc = raw.description ?? prop.description ?? '';
    out.push(`| \`${key}\` | ${escapeCell(typeOf(prop))} | ${defaultOf(raw)} | ${escapeCell(desc)}${req} |`);
  }
  return out;
}

function section(title: string, level: number, obj: JsonSchema, prefix: string): string[] {
  const nested: [string, JsonSchema][] = [];
  const lines = [`${'#'.repeat(level)} ${title}`, ''];
  if (obj.description) lines.push(obj.description, '');
  lines.push(...table(obj, prefix, nested), '');
  for (const [name, sub] of nested) lines.push(...section(`\`${name}\``, level + 1, sub, name));
  return lines;
}

function components(kind: 'sources' | 'destinations'): string[] {
  const map = schema.properties![kind]!;
  const variants = (map.additionalProperties as JsonSchema).oneOf ?? [];
  const out: string[] = [];
  for (const v of variants) {
    const type = String(v.properties!.type!.const);
    out.push(...section(`\`type: ${type}\``, 3, v, `${kind}.NAME`));
  }
  return out;
}

const top: JsonSchema = {
  ...schema,
  properties: Object.fromEntries(
    Object.entries(schema.properties!).filter(([k]) => !['sources', 'destinations', 'pipelines', 'log'].includes(k)),
  ),
};
const pipeline = schema.properties!.pipelines!.additionalProperties as JsonSchema;

const doc = [
  '# Configuration reference',
  '',
  '<!-- Generated from src/config/schema.ts by `npm run docs:config`. Do not edit by hand: a test compares this file ' +
    'with the schema. -->',
  '',
  'sluice reads one YAML file (`sluice run -c FILE`, `sluice check -c FILE`). It has named **sources**, named ' +
    '**destinations**,',
  'each with its own queue, and named **pipelines** that connect them. Every key is checked: an unknown key, a wrong ' +
    'type, a',
  'name that points nowhere is an error that names the file, line, column and key path, and nothing starts. A source ' +
    'or',
  'destination that no pipeline uses is a warning.',
  '',
  '```yaml',
  'state_dir: /var/lib/sluice',
  'sources:',
  '  local_udp: { type: syslog_udp, address: "127.0.0.1:514" }',
  '  local_tcp: { type: syslog_tcp, address: "127.0.0.1:514" }',
  '  app:       { type: file, paths: ["/var/log/app/*.log"] }',
  'destinations:',
  '  central:',
  '    type: syslog',
  '    address: logs.example.com:6514',
  '    tls: { ca: /etc/sluice/ca.pem }',
  '  local_file: { type: file, path: "/var/log/sluice/${HOST}/${PROGRAM}.log" }',
  'pipelines:',
  '  everything: { from: [local_udp, local_tcp, app], to: [central] }',
  '  auth:       { from: [local_udp, local_tcp], where: { facility: [auth, authpriv] }, to: [local_file] }',
  '```',
  '',
  '## Values',
  '',
  '- **size**: a number of bytes, or a number with a unit: `B`, `KB`/`MB`/`GB` (powers of 1000), `KiB`/`MiB`/`GiB` ' +
    '(powers of 1024). `64KiB`, `10MB`.',
  '- **duration**: a number with a unit: `ms`, `s`, `m`, `h`, `d`. `50ms`, `10s`, `1h`. A bare `0` is allowed where ' +
    'it turns a feature off.',
  '- **host:port**: `127.0.0.1:5514`, `[::1]:5514`, `logs.example.com:6514`. Port `0` asks the system for a free ' +
    'port (tests).',
  '- **Environment variables**: `${VAR}` anywhere in a value is replaced by the variable; `${VAR:-default}` gives a ' +
    'default when it is unset or empty.',
  '  A variable that is not set and has no default is an error. `$${` writes a literal `${`. In a file destination ' +
    '`path` and a nats destination `subject`, the template',
  '  macros below (`${HOST}` ...) are left for the template; any other `${NAME}` there is an environment variable.',
  '- Relative paths are taken from the working directory of the sluice process.',
  '',
  ...section('Top level', 2, top, ''),
  ...section('`log`', 2, schema.properties!.log!, 'log'),
  '## Sources',
  '',
  'Under `sources:`, each key is a name of your choice (letters, digits, `_`, `.`, `-`) and each value has a `type:`.',
  '',
  ...components('sources'),
  '## Destinations',
  '',
  'Under `destinations:`, each key is a name and each value has a `type:`. Every destination has its own queue ' +
    '(`queue:`).',
  '',
  ...components('destinations'),
  ...section('Pipelines', 2, pipeline, 'pipelines.NAME'),
  '## Path template macros',
  '',
  'A file destination `path` may use these macros. Each value is made safe to be one path component: `/`, `\\`, NUL ' +
    'and',
  'control characters become `_`, and an empty value, `.` or `..` becomes `_`. The path can never leave the ' +
    'directory that',
  'comes before the first macro.',
  '',
  '| macro | value |',
  '|---|---|',
  ...Object.entries(TEMPLATE_MACROS).map(([k, v]) => `| \`\${${k}}\` | ${escapeCell(v)} |`),
  '| `${.SDATA.<SD-ID>.<PARAM>}` | A structured-data parameter, as syslog-ng names it: ' +
    '`${.SDATA.journal@32473._SYSTEMD_UNIT}` (a field a `journald` source carries); `-` when the message has none. |',
  '',
  '## Parsing',
  '',
  'sluice forwards the bytes it received and parses a message only when a filter, a template or an output format ' +
    'needs its',
  'fields. The parser is strict RFC 5424 and RFC 3164:',
  '',
  '- A message that starts like RFC 5424 (`<PRI>1 `) must be valid RFC 5424; it is never reread as RFC 3164.',
  '- An RFC 3164 message whose header does not parse keeps everything after the PRI as its message (RFC 3164 4.3.2).',
  '- A message that does not parse at all is still delivered unchanged; for filters and templates it counts as ' +
    '`user.notice` with',
  "  no host (the sender address stands in) and no program, and the source's parse error counter goes up.",
  '',
  '`lenient: true` on a source accepts common real-world deviations: a missing PRI (taken as `user.notice`), an RFC ' +
    '3339 timestamp',
  "in a BSD header (as loggen and rsyslog's forward format send), a zero-padded or unpadded day, lower-case month " +
    'names, an',
  'unescaped `]` inside a structured-data value, over-long RFC 5424 header fields, and more than six fraction digits ' +
    '(cut to',
  'microseconds).',
  '',
  'RFC 3164 carries no year: sluice takes the current year unless that puts the message more than a month in the ' +
    'future (then',
  "it is last year's). Its time has no offset; written as RFC 5424 it is taken as this host's local time.",
  '',
];

process.stdout.write(doc.join('\n'));
