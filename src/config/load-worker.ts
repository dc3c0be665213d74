// The worker of load-isolated.ts: loads and validates one config file, posts the result, exits.
import { parentPort, workerData } from 'node:worker_threads';
import { ConfigError, loadConfigFile } from './load.js';

const { file, env } = workerData as { file: string; env: NodeJS.ProcessEnv };
try {
  parentPort?.postMessage({ loaded: loadConfigFile(file, env) });
} catch (err) {
  if (err instanceof ConfigError) parentPort?.postMessage({ problems: err.problems });
  else parentPort?.postMessage({ error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
}
