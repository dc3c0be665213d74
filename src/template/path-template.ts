import { createHash } from 'node:crypto';
import path from 'node:path';
import { facilityName, severityName } from '../parser/names.js';
import type { LogRecord } from '../record.js';
import { isTemplateMacro, sdMacro, sdValue, type TemplateMacro } from './macros.js';

type Part = { literal: string } | { macro: TemplateMacro } | { sd: { id: string; param: string } };

const MACRO = /\$\{([A-Za-z_][A-Za-z0-9_]*|\.SDATA\.[^}\s]+)\}/g;
// Macros that need the message parsed; the others come from the record itself.
const PARSED: ReadonlySet<TemplateMacro> = new Set([
  'HOST',
  'PROGRAM',
  'PID',
  'MSGID',
  'FACILITY',
  'SEVERITY',
  'LEVEL',
]);

export class TemplateError extends Error {
  override readonly name = 'TemplateError';
}

/** Names in `template` that look like macros but are not ones sluice knows. */
export function unknownMacros(template: string): string[] {
  return [...template.matchAll(MACRO)].map((m) => m[1]!).filter((n) => !isTemplateMacro(n));
}

/** A value made safe to be one path component: no separators, no NUL or control bytes, never `.` or `..`. */
export function safeComponent(value: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this replaces
  const v = value.replace(/[/\\\x00-\x1f\x7f]/g, '_');
  if (v === '' || v === '.' || v === '..') return '_';
  return v;
}

/** The longest file name (one path component) Linux file systems take, in bytes (NAME_MAX). */
export const NAME_MAX = 255;

/**
 * One path component cut to NAME_MAX bytes: the head (whole characters) and a short extension are
 * kept, with a hash of the whole name between them, so two long names that share their first 240
 * bytes still land in two files. Names that fit are returned as they are.
 */
export function capComponent(name: string): string {
  if (Buffer.byteLength(name) <= NAME_MAX) return name;
  const hash = `~${createHash('sha256').update(name).digest('hex').slice(0, 12)}`;
  const ext = /\.[A-Za-z0-9_-]{1,10}$/.exec(name)?.[0] ?? '';
  let head = Buffer.from(name.slice(0, name.length - ext.length))
    .subarray(0, NAME_MAX - hash.length - Buffer.byteLength(ext))
    .toString();
  // A multi-byte character cut in two decodes as U+FFFD: drop it.
  if (head.endsWith('\ufffd')) head = head.slice(0, -1);
  while (Buffer.byteLength(head) + hash.length + Buffer.byteLength(ext) > NAME_MAX) head = head.slice(0, -1);
  return head + hash + ext;
}

const pad = (n: number) => (n < 10 ? `0${n}` : String(n));

/**
 * A template of literal text and macros (`logs.${HOST}.${PROGRAM}`), expanded for a record with
 * every macro value passed through `safe` (what makes it safe where it goes: a path component,
 * a subject token).
 */
export class RecordTemplate {
  private readonly parts: Part[] = [];
  private readonly needsParse: boolean;
  /** The template has no macro: every record gets the same text. */
  readonly isStatic: boolean;

  constructor(
    readonly template: string,
    private readonly safe: (value: string) => string,
  ) {
    const unknown = unknownMacros(template);
    if (unknown.length)
      throw new TemplateError(`unknown macro ${unknown.map((n) => `\${${n}}`).join(', ')} in "${template}"`);
    let last = 0;
    for (const m of template.matchAll(MACRO)) {
      if (m.index > last) this.parts.push({ literal: template.slice(last, m.index) });
      const sd = sdMacro(m[1]!);
      this.parts.push(sd ? { sd } : { macro: m[1] as TemplateMacro });
      last = m.index + m[0].length;
    }
    if (last < template.length) this.parts.push({ literal: template.slice(last) });
    this.isStatic = this.parts.every((p) => 'literal' in p);
    this.needsParse = this.parts.some((p) => 'sd' in p || ('macro' in p && PARSED.has(p.macro)));
  }

  /** The template with every macro replaced by `value` (escaped), for checks made before any record. */
  sample(value: string): string {
    return this.parts.map((p) => ('literal' in p ? p.literal : this.safe(value))).join('');
  }

  expand(r: LogRecord): string {
    const m = this.needsParse ? r.message : null;
    const when = new Date(r.receivedAt);
    let out = '';
    for (const p of this.parts) {
      if ('literal' in p) out += p.literal;
      else if ('sd' in p) out += this.safe(sdValue(m!.structuredData, p.sd.id, p.sd.param) ?? '-');
      else out += this.safe(macroValue(p.macro, r, m, when));
    }
    return out;
  }
}

/**
 * A file path built from a record: `var/log/${HOST}/${PROGRAM}.log`. Every macro value is a safe
 * path component, and the result must stay under the directory that precedes the first macro.
 */
export class PathTemplate {
  private readonly text: RecordTemplate;
  readonly baseDir: string;
  private readonly staticPath: string | null;

  constructor(template: string) {
    this.text = new RecordTemplate(template, safeComponent);
    const firstMacro = template.search(MACRO);
    const literalHead = firstMacro < 0 ? template : template.slice(0, firstMacro);
    const slash = literalHead.lastIndexOf('/');
    this.baseDir = path.resolve(slash < 0 ? '.' : literalHead.slice(0, slash) || '/');
    this.staticPath = firstMacro < 0 ? path.resolve(template) : null;
    if (this.staticPath !== null && this.staticPath === this.baseDir)
      throw new TemplateError(`"${template}" names a directory, not a file`);
  }

  /** The absolute path for `r`, guaranteed to lie under `baseDir`. */
  render(r: LogRecord): string {
    if (this.staticPath !== null) return this.staticPath;
    const out = this.text.expand(r);
    // A component over the file system's limit would fail the write with ENAMETOOLONG, for this
    // record every time: cut it (the literal parts of the template were checked when it was loaded).
    const full = path.resolve(out.split('/').map(capComponent).join('/'));
    if (!full.startsWith(this.baseDir + path.sep)) {
      // Unreachable with safe components; kept so that a future macro cannot open a hole.
      return path.join(this.baseDir, '_unsafe_path');
    }
    return full;
  }
}

/** The value of macro `name` for record `r` (`m`: its parsed message, when the macro needs it). */
function macroValue(name: TemplateMacro, r: LogRecord, m: LogRecord['message'] | null, when: Date): string {
  switch (name) {
    case 'HOST':
      return m?.hostname ?? r.origin.hostname ?? r.origin.from;
    case 'HOST_FROM':
      return r.origin.format === 'text' ? (r.origin.hostname ?? 'localhost') : r.origin.from;
    case 'PROGRAM':
      return m?.appName ?? 'unknown';
    case 'PID':
      return m?.procId ?? '-';
    case 'MSGID':
      return m?.msgId ?? '-';
    case 'FACILITY':
      return facilityName(m!.facility);
    case 'SEVERITY':
    case 'LEVEL':
      return severityName(m!.severity);
    case 'SOURCE':
      return r.origin.source;
    case 'YEAR':
      return String(when.getUTCFullYear());
    case 'MONTH':
      return pad(when.getUTCMonth() + 1);
    case 'DAY':
      return pad(when.getUTCDate());
    case 'HOUR':
      return pad(when.getUTCHours());
    case 'R_DATE':
      return `${when.getUTCFullYear()}-${pad(when.getUTCMonth() + 1)}-${pad(when.getUTCDate())}`;
  }
}
