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

export function isTemplateMacro(name: string): name is TemplateMacro {
  return Object.hasOwn(TEMPLATE_MACROS, name);
}
