import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { onTestFinished } from 'vitest';
import os from 'node:os';
import path from 'node:path';
import { Agent } from '../../src/agent.js';
import { parseConfigText } from '../../src/config/load.js';
import type { SluiceConfig } from '../../src/config/schema.js';
import { createLogger, silentLogger, type Logger } from '../../src/log.js';

export function tempDir(prefix = 'sluice-test-'): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** Builds and starts an agent from YAML text (or a parsed config). */
export async function startAgent(yaml: string | SluiceConfig, logger: Logger = silentLogger()): Promise<Agent> {
  const config = typeof yaml === 'string' ? parseConfigText(yaml, 'test.yaml', process.env).config : yaml;
  const agent = new Agent(config, logger);
  await agent.start();
  return agent;
}

/**
 * The test fixture: what a test makes with these is undone when it finishes, passed or failed
 * (vitest's onTestFinished, which runs the last registered first: agents stop before their
 * directories go).
 */

/** A directory of this test's own, removed when the test finishes. */
export function scratchDir(prefix?: string): string {
  const dir = tempDir(prefix);
  onTestFinished(() => removeDir(dir));
  return dir;
}

/** Starts an agent (as startAgent) that is stopped when the test finishes, if it still runs. */
export async function testAgent(yaml: string | SluiceConfig, logger?: Logger): Promise<Agent> {
  const agent = await startAgent(yaml, logger);
  onTestFinished(async () => {
    if (agent.running) await agent.stop();
  });
  return agent;
}

/**
 * For tests that each start one agent in a directory of their own: `fresh()` makes the directory,
 * `start(yaml)` the agent; both go when the test finishes.
 */
export function agentPerTest(): { fresh(): string; start(yaml: string): Promise<Agent>; readonly agent: Agent } {
  let agent: Agent | null = null;
  return {
    fresh: () => {
      agent = null;
      return scratchDir();
    },
    start: async (yaml) => (agent = await testAgent(yaml)),
    get agent() {
      if (!agent) throw new Error('no agent started in this test');
      return agent;
    },
  };
}

/** Polls `check` every 20 ms until it returns true, failing after `timeoutMs`. */
export async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
): Promise<void> {
  // The monotonic clock: a test may freeze or move Date.
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** Where the file source `source` of the agent with state under `<dir>/state` has checkpointed its first file (0: none yet). */
export function checkpointOffset(dir: string, source = 'app'): number {
  try {
    const cp = JSON.parse(readFileSync(path.join(dir, 'state/checkpoints', `${source}.json`), 'utf8')) as {
      files: { offset: number }[];
    };
    return cp.files[0]?.offset ?? 0;
  } catch {
    return 0;
  }
}

export function readLines(file: string): string[] {
  if (!existsSync(file)) return [];
  const text = readFileSync(file, 'utf8');
  return text.length === 0 ? [] : text.replace(/\n$/, '').split('\n');
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The port a source of a started agent listens on. */
export function portOf(agent: Agent, source: string): number {
  const s = agent.sources.get(source) as unknown as { port: number };
  return s.port;
}

/**
 * A free port below the kernel's ephemeral range (which starts at 32768), for servers a test kills
 * and starts again on the same port: meanwhile another test's listen(0) cannot be handed it.
 */
export async function stablePort(): Promise<number> {
  const net = await import('node:net');
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 10_000);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (ok) return port;
  }
  throw new Error('no free port in 20000-29999');
}

/**
 * A central sluice's config: the sluice protocol on 127.0.0.1:`port` into a file written exactly
 * once (`out`, raw), through a reliable queue.
 */
export function centralYaml(o: { stateDir: string; port: number; token: string; out: string; log?: string }): string {
  return `state_dir: ${o.stateDir}
${o.log ? `log: ${o.log}\n` : ''}admin: { enabled: false }
sources:
  agents: { type: sluice, address: "127.0.0.1:${o.port}", tokens: ["${o.token}"] }
destinations:
  store: { type: file, path: ${o.out}, format: raw, exactly_once: true, queue: { mode: reliable, max_size: 256MiB,
      sync_interval: 10ms } }
pipelines:
  p: { from: [agents], to: [store] }
`;
}

/** A logger that keeps every line it logs, parsed, for tests that check what sluice says. */
export function memoryLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger(
    { level: 'info', format: 'json' },
    {
      write: (chunk: string) => {
        for (const l of chunk.split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      },
    },
  );
  return { logger, lines };
}
