// What loading a config reports, without the schema: the CLI and the agent use these without
// loading zod (see load-isolated.ts).
import type { SluiceConfig } from './schema.js';

export interface ConfigProblem {
  severity: 'error' | 'warning';
  file: string;
  line: number;
  column: number;
  /** Key path such as `sources.local_tcp.max_message_size`; empty for the whole file. */
  path: string;
  message: string;
}

export function formatProblem(p: ConfigProblem): string {
  return `${p.file}:${p.line}:${p.column}: ${p.severity}: ${p.path ? `${p.path}: ` : ''}${p.message}`;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(readonly problems: ConfigProblem[]) {
    super(problems.map(formatProblem).join('\n'));
  }
}

export interface LoadedConfig {
  file: string;
  config: SluiceConfig;
  warnings: ConfigProblem[];
}
