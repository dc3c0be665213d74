/**
 * Macros a path template may use, as `${NAME}`. Kept apart so that the config loader can tell them from environment
 * variables.
 */
export const TEMPLATE_MACROS = {
  HOST: 'HOSTNAME of the message; the sender address when it has none.',
  HOST_FROM: 'Address the message came from (IP of the sender; this host for files).',
  PROGRAM: 'APP-NAME (RFC 5424) or tag (RFC 3164); `unknown` when absent.',
  PID: 'PROCID; `-` when absent.',
  MSGID: 'MSGID; `-` when absent.',
  FACILITY: 'Facility name, such as `auth` or `local0`.',
  SEVERITY: 'Severity name, such as `err` or `info`.',
  LEVEL: 'Same as SEVERITY.',
  SOURCE: 'Name of the sluice source that received the message.',
  YEAR: 'Year the message was received (UTC), four digits.',
  MONTH: 'Month received (UTC), 01 to 12.',
  DAY: 'Day of the month received (UTC), 01 to 31.',
  HOUR: 'Hour received (UTC), 00 to 23.',
  R_DATE: 'Date received (UTC), YYYY-MM-DD.',
} as const;

export type TemplateMacro = keyof typeof TEMPLATE_MACROS;

/**
 * `${.SDATA.<SD-ID>.<PARAM>}`: a parameter of the message's structured data, as syslog-ng names it
 * (`${.SDATA.journal@32473._SYSTEMD_UNIT}`); `-` when the message has none. The parameter is what
 * follows the last `.`.
 */
export const SD_MACRO = /^\.SDATA\.(.+)\.([^.]+)$/;

/** The SD-ID and parameter a `.SDATA.` name refers to; null for any other name. */
export function sdMacro(name: string): { id: string; param: string } | null {
  return SD_MACRO.test(name) ? sdParam(name.slice('.SDATA.'.length)) : null;
}

/** `<SD-ID>.<PARAM>` (a `where: sd:` key, or a macro's name without `.SDATA.`): the parameter follows the last `.`. */
export function sdParam(key: string): { id: string; param: string } {
  const dot = key.lastIndexOf('.');
  return { id: key.slice(0, dot), param: key.slice(dot + 1) };
}

/** A name sluice's templates know: one of TEMPLATE_MACROS, or a `.SDATA.` reference. */
export function isTemplateMacro(name: string): boolean {
  return Object.hasOwn(TEMPLATE_MACROS, name) || SD_MACRO.test(name);
}

/** The value of structured-data parameter `param` of element `id`; the first where it is given twice. */
export function sdValue(
  sd: Record<string, Record<string, string | string[]>> | null,
  id: string,
  param: string,
): string | undefined {
  const v = sd?.[id]?.[param];
  return Array.isArray(v) ? v[0] : v;
}
