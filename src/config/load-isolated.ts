import { Worker } from 'node:worker_threads';
import { ConfigError, type ConfigProblem, type LoadedConfig } from './problems.js';

/**
 * loadConfigFile in a worker thread. The schema (zod) and the YAML parser take about 18 MB once
 * loaded, which a process never gives back; loaded in a worker, they go when it exits. A
 * long-running agent needs them only at start and at each reload.
 */
export function loadConfigIsolated(file: string, env: NodeJS.ProcessEnv = process.env): Promise<LoadedConfig> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./load-worker.js', import.meta.url), { workerData: { file, env } });
    let settled = false;
    worker.once('message', (m: { loaded?: LoadedConfig; problems?: ConfigProblem[]; error?: string }) => {
      settled = true;
      if (m.loaded) resolve(m.loaded);
      else if (m.problems) reject(new ConfigError(m.problems));
      else reject(new Error(`loading ${file} failed: ${m.error ?? 'unknown error'}`));
    });
    worker.once('error', (err) => {
      settled = true;
      reject(err);
    });
    worker.once('exit', (code) => {
      if (!settled) reject(new Error(`the config loader exited with code ${code} without an answer`));
    });
  });
}
