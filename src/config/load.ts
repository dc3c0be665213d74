import { readFileSync } from 'node:fs';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import type { z } from 'zod';
import { isTemplateMacro } from '../template/macros.js';
import { ConfigError, type ConfigProblem, type LoadedConfig } from './problems.js';
import { configSchema, TEMPLATE_KEYS } from './schema.js';

export { ConfigError, formatProblem, type ConfigProblem, type LoadedConfig } from './problems.js';

type Path = (string | number)[];

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const k of path) {
    if (typeof k === 'number') out += `[${k}]`;
    else out += out ? `.${String(k)}` : String(k);
  }
  return out;
}

class ProblemCollector {
  readonly problems: ConfigProblem[] = [];
  constructor(
    private readonly file: string,
    private readonly doc: Document,
    private readonly lines: LineCounter,
  ) {}

  at(severity: ConfigProblem['severity'], path: Path, message: string, keyOf = false): void {
    const node = this.nodeAt(path, keyOf);
    const offset = node?.range?.[0] ?? 0;
    const pos = this.lines.linePos(offset);
    this.problems.push({ severity, file: this.file, line: pos.line, column: pos.col, path: formatPath(path), message });
  }

  atOffset(severity: ConfigProblem['severity'], offset: number, message: string): void {
    const pos = this.lines.linePos(offset);
    this.problems.push({ severity, file: this.file, line: pos.line, column: pos.col, path: '', message });
  }

  /** The deepest node on `path` (the key node itself when `keyOf`), so that missing keys point at their parent. */
  private nodeAt(path: Path, keyOf: boolean): Node | null {
    let node: unknown = this.doc.contents;
    let found: Node | null = (node as Node | null) ?? null;
    for (let i = 0; i < path.length; i++) {
      const k = path[i];
      if (isMap(node)) {
        const pair = node.items.find((p) => isScalar(p.key) && p.key.value === k);
        if (!pair) break;
        if (keyOf && i === path.length - 1) return pair.key as Node;
        node = pair.value;
      } else if (isSeq(node) && typeof k === 'number') {
        node = node.items[k];
      } else {
        break;
      }
      if (node && typeof node === 'object' && 'range' in node) found = node as Node;
      else break;
    }
    return found;
  }

  get hasErrors(): boolean {
    return this.problems.some((p) => p.severity === 'error');
  }
}

const ENV_REF = /\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*|\.SDATA\.[^}\s:]+)(?::-([^}]*))?\}|\$\{/g;

function matchesKeyPattern(path: Path, pattern: readonly string[]): boolean {
  return path.length === pattern.length && pattern.every((p, i) => p === '*' || p === path[i]);
}

/** Replaces `${VAR}` and `${VAR:-default}` in every string value; `$${` stands for a literal `${`. */
function interpolateEnv(node: unknown, path: Path, env: NodeJS.ProcessEnv, problems: ProblemCollector): void {
  if (isMap(node)) {
    for (const pair of node.items) {
      const key = isScalar(pair.key) ? pair.key.value : undefined;
      interpolateEnv(pair.value, [...path, String(key)], env, problems);
    }
  } else if (isSeq(node)) {
    node.items.forEach((item, i) => {
      interpolateEnv(item, [...path, i], env, problems);
    });
  } else if (isScalar(node) && typeof node.value === 'string' && node.value.includes('${')) {
    const template = TEMPLATE_KEYS.some((p) => matchesKeyPattern(path, p));
    node.value = node.value.replace(
      ENV_REF,
      (whole: string, name: string | undefined, fallback: string | undefined) => {
        if (whole === '$${') return '${';
        if (name === undefined) {
          problems.at('error', path, `unterminated or malformed "\${" (write "$\${" for a literal "\${")`);
          return whole;
        }
        if (template && fallback === undefined && isTemplateMacro(name)) return whole;
        const value = env[name];
        if (value !== undefined && (value !== '' || fallback === undefined)) return value;
        if (fallback !== undefined) return fallback;
        problems.at(
          'error',
          path,
          `environment variable ${name} is not set (use \${${name}:-default} to give a default)`,
        );
        return whole;
      },
    );
  }
}

function describeIssue(issue: z.core.$ZodIssue, input: unknown): string {
  if (issue.code === 'invalid_union' && 'discriminator' in issue && issue.discriminator) {
    const options = (issue as { options?: unknown[] }).options ?? [];
    return `unknown type ${JSON.stringify(input)}; known types: ${options.join(', ')}`;
  }
  if (issue.code === 'invalid_type' && input === undefined) return 'is required';
  if (issue.code === 'invalid_type') return `${issue.message.replace(/^Invalid input: /, '')}`;
  return issue.message;
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let v: unknown = root;
  for (const k of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[k];
  }
  return v;
}

export function parseConfigText(text: string, file: string, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const problems = new ProblemCollector(file, doc, lines);
  for (const e of doc.errors) problems.atOffset('error', e.pos[0], e.message.split('\n')[0]!);
  if (problems.hasErrors) throw new ConfigError(problems.problems);

  interpolateEnv(doc.contents, [], env, problems);
  const raw: unknown = doc.toJS();
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    problems.atOffset('error', 0, 'the file must hold a mapping with sources, destinations and pipelines');
    throw new ConfigError(problems.problems);
  }
  if (problems.hasErrors) throw new ConfigError(problems.problems);

  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const path = issue.path as Path;
      if (issue.code === 'unrecognized_keys') {
        for (const key of issue.keys) problems.at('error', [...path, key], 'unknown key', true);
      } else {
        problems.at('error', path, describeIssue(issue, valueAt(raw, path)));
      }
    }
    throw new ConfigError(problems.problems);
  }
  const config = parsed.data;

  const used = { sources: new Set<string>(), destinations: new Set<string>() };
  for (const [name, pipeline] of Object.entries(config.pipelines)) {
    pipeline.from.forEach((s, i) => {
      if (!(s in config.sources))
        problems.at('error', ['pipelines', name, 'from', i], `no source named "${s}"${suggest(s, config.sources)}`);
      used.sources.add(s);
    });
    pipeline.to.forEach((d, i) => {
      if (!(d in config.destinations)) {
        problems.at(
          'error',
          ['pipelines', name, 'to', i],
          `no destination named "${d}"${suggest(d, config.destinations)}`,
        );
      }
      used.destinations.add(d);
    });
  }
  // DESIGN: a reliable queue fed by a source that cannot acknowledge protects records only from the moment they are
  // queued.
  for (const [name, pipeline] of Object.entries(config.pipelines)) {
    for (const d of pipeline.to) {
      if (config.destinations[d]?.queue.mode !== 'reliable') continue;
      for (const s of pipeline.from) {
        const type = config.sources[s]?.type;
        if (type === 'syslog_udp' || type === 'syslog_tcp') {
          problems.at(
            'warning',
            ['pipelines', name, 'from', pipeline.from.indexOf(s)],
            `source "${s}" (${type}) cannot acknowledge its senders: the reliable queue of "${d}" keeps what it ` +
              `received, but a sender never learns what was lost before it (a crash, a full socket buffer)`,
          );
        }
      }
    }
  }
  for (const [orphan, target] of Object.entries(config.drain_orphans)) {
    if (orphan in config.destinations) {
      problems.at(
        'error',
        ['drain_orphans', orphan],
        `"${orphan}" is a configured destination, not an orphan: its queue is in use`,
        true,
      );
    }
    if (!(target in config.destinations)) {
      problems.at(
        'error',
        ['drain_orphans', orphan],
        `no destination named "${target}"${suggest(target, config.destinations)}`,
      );
    } else {
      used.destinations.add(target);
    }
  }
  for (const [name, d] of Object.entries(config.destinations)) {
    const to = d.queue.dead_letter;
    if (to === 'file' || to === 'drop') continue;
    if (to === name)
      problems.at(
        'error',
        ['destinations', name, 'queue', 'dead_letter'],
        'a destination cannot be its own dead-letter target',
      );
    else if (!(to in config.destinations))
      problems.at(
        'error',
        ['destinations', name, 'queue', 'dead_letter'],
        `no destination named "${to}"${suggest(to, config.destinations)}`,
      );
    else used.destinations.add(to);
  }
  for (const kind of ['sources', 'destinations'] as const) {
    for (const name of Object.keys(config[kind])) {
      if (!used[kind].has(name)) problems.at('warning', [kind, name], `is not used by any pipeline`, true);
    }
  }
  if (problems.hasErrors) throw new ConfigError(problems.problems);
  return { file, config, warnings: problems.problems };
}

function suggest(_name: string, known: Record<string, unknown>): string {
  const names = Object.keys(known);
  return names.length ? ` (known: ${names.join(', ')})` : '';
}

export function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === 'ENOENT' ? 'file not found' : err.code === 'EACCES' ? 'permission denied' : err.message;
    throw new ConfigError([
      { severity: 'error', file, line: 0, column: 0, path: '', message: `cannot read config: ${why}` },
    ]);
  }
  return parseConfigText(text, file, env);
}
