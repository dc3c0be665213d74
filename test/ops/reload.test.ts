import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Agent } from '../../src/agent.js';
import { parseConfigText } from '../../src/config/load.js';
import { portOf, readLines, scratchDir, sleep, testAgent, waitFor } from '../helpers/agent.js';

const config = (dir: string, body: string) =>
  parseConfigText(
    `state_dir: ${dir}/state\nshutdown_timeout: 2s\nadmin: { enabled: false }\n${body}`,
    'reload.yaml',
    process.env,
  ).config;

/** The config these tests start from: TCP into `<dir>/a.log`. */
const tcpToFile = (dir: string) =>
  config(
    dir,
    `sources:
  in: { type: syslog_tcp, address: "127.0.0.1:0" }
destinations:
  out: { type: file, path: ${dir}/a.log }
pipelines:
  p: { from: [in], to: [out] }
`,
  );

describe('hot reload (Agent.reload)', () => {
  let dir: string;
  let agent: Agent | undefined;

  it('keeps an unchanged source and its connections, swaps a changed destination, starts a new one, and loses ' +
    'nothing while traffic flows', async () => {
    dir = scratchDir();
    const first = tcpToFile(dir);
    agent = await testAgent(first);
    const port = portOf(agent, 'in');
    const s = net.connect(port, '127.0.0.1');
    let closed = false;
    s.on('close', () => (closed = true));
    await new Promise<void>((r) => s.once('connect', () => r()));
    // One connection sends numbered messages the whole time.
    let sent = 0;
    const timer = setInterval(() => {
      for (let i = 0; i < 20 && sent < 3000; i++) s.write(`<13>1 - h app - - - n ${sent++}\n`);
    }, 2);
    try {
      await waitFor('traffic to flow', () => readLines(`${dir}/a.log`).length > 200);
      const next = config(
        dir,
        `sources:
  in: { type: syslog_tcp, address: "127.0.0.1:${port}" }
destinations:
  out: { type: file, path: ${dir}/b.log }
  copy: { type: file, path: ${dir}/copy.log }
pipelines:
  p: { from: [in], to: [out, copy] }
`,
      );
      next.sources.in = first.sources.in!; // the same source settings as before (port 0 was resolved at start)
      const r = await agent.reload(next);
      expect(r.errors).toEqual([]);
      expect(r.kept).toEqual(['source in']);
      expect(r.restarted).toEqual(['destination out']);
      expect(r.started).toEqual(['destination copy']);
      await waitFor('all 3000 sent', () => sent === 3000, 20_000);
      await waitFor(
        'every message in a.log or b.log',
        () => readLines(`${dir}/a.log`).length + readLines(`${dir}/b.log`).length >= 3000,
        20_000,
      );
      await sleep(100);
      expect(closed).toBe(false); // the sender's connection survived the reload
      const all = [...readLines(`${dir}/a.log`), ...readLines(`${dir}/b.log`)].map((l) =>
        Number(/ n (\d+)$/.exec(l)![1]),
      );
      expect(all).toHaveLength(3000);
      expect(new Set(all).size).toBe(3000);
      expect(all).toEqual([...all].sort((x, y) => x - y)); // in order across the switch
      expect(readLines(`${dir}/b.log`).length).toBeGreaterThan(0);
      // The new destination gets what arrived after the reload.
      const copy = readLines(`${dir}/copy.log`).map((l) => Number(/ n (\d+)$/.exec(l)![1]));
      expect(copy.length).toBeGreaterThan(0);
      expect(copy.at(-1)).toBe(2999);
    } finally {
      clearInterval(timer);
      s.destroy();
    }
  }, 60_000);

  it('a removed destination leaves its disk queue behind as a reported orphan', async () => {
    dir = scratchDir();
    agent = await testAgent(
      config(
        dir,
        `sources:
  in: { type: syslog_tcp, address: "127.0.0.1:0" }
destinations:
  out: { type: file, path: ${dir}/a.log }
  central: { type: syslog, address: "127.0.0.1:9", queue: { mode: reliable, max_size: 1MiB } }
pipelines:
  p: { from: [in], to: [out, central] }
`,
      ),
    );
    const s = net.connect(portOf(agent, 'in'), '127.0.0.1');
    s.end(Array.from({ length: 10 }, (_, i) => `<13>1 - h app - - - kept ${i}\n`).join(''));
    await waitFor('10 queued for central', () => agent!.stats().destinations.central?.queue.records === 10);
    const r = await agent.reload(tcpToFile(dir));
    expect(r.stopped).toEqual(['destination central']);
    expect(agent.stats().orphans.central).toMatchObject({ records: 10, drainingInto: null });
    expect(existsSync(path.join(dir, 'state/queues/central/queue.sq'))).toBe(true);
  });
});
