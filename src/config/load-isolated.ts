import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { deserialize } from 'node:v8';
import { ConfigError, type ConfigProblem, type LoadedConfig } from './problems.js';

/** What load-child.ts writes to its stdout, serialized with v8.serialize. */
export type ChildAnswer = { loaded?: LoadedConfig; problems?: ConfigProblem[]; error?: string };

/**
 * loadConfigFile in a child process. The schema (zod) and the YAML parser take about 18 MB once
 * loaded, which a process never gives back, and a worker thread would leave about 6 MB behind
 * when it exits (its isolate's start-up pages and its malloc arena); a child process gives all of
 * it back. A long-running agent needs them only at start and at each reload.
 */
export function loadConfigIsolated(file: string, env: NodeJS.ProcessEnv = process.env): Promise<LoadedConfig> {
  return new Promise((resolve, reject) => {
    const script = fileURLToPath(new URL('./load-child.js', import.meta.url));
    // Node's own options as sluice was started with them, but not a debugger's (its port is taken)
    // nor a profiler's (the profile is the agent's).
    const nodeArgs = process.execArgv.filter((a) => !/^--(inspect|debug|cpu-prof|heap-prof|prof)/.test(a));
    const child = spawn(process.execPath, [...nodeArgs, script, file], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.once('error', reject);
    child.once('close', (code, signal) => {
      let m: ChildAnswer | undefined;
      try {
        if (out.length > 0) m = deserialize(Buffer.concat(out)) as ChildAnswer;
      } catch {
        m = undefined;
      }
      if (m?.loaded) resolve(m.loaded);
      else if (m?.problems) reject(new ConfigError(m.problems));
      else {
        const why = m?.error ?? (Buffer.concat(err).toString('utf8').trim() || `exit code ${code ?? signal}`);
        reject(new Error(`loading ${file} failed: ${why}`));
      }
    });
  });
}
