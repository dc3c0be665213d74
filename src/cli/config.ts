import { loadConfigIsolated } from '../config/load-isolated.js';
import { ConfigError, formatProblem, type LoadedConfig } from '../config/problems.js';

/** Where `-c` points when it is not given. */
export const DEFAULT_CONFIG = '/etc/sluice/sluice.yaml';

/** Loads and validates `file` (in a child process), printing its problems to stderr; null when it has errors. */
export async function loadConfig(file: string): Promise<LoadedConfig | null> {
  try {
    const loaded = await loadConfigIsolated(file);
    for (const w of loaded.warnings) process.stderr.write(`${formatProblem(w)}\n`);
    return loaded;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const p of err.problems) process.stderr.write(`${formatProblem(p)}\n`);
    process.stderr.write(
      `${file}: ${err.problems.filter((p) => p.severity === 'error').length} error(s); nothing was started\n`,
    );
    return null;
  }
}
