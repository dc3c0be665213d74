import { openSync, readFileSync, writeSync, closeSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { QUEUE_FILE } from '../../src/queue/layout.js';
import { centralYaml, portOf, readLines, scratchDir, stablePort, testAgent, waitFor } from '../helpers/agent.js';

// A reliable queue rotated for corruption while its sluice-protocol session to the central is open:
// the salvaged records are numbered anew under a new ring id, and must reach the central under that
// id. Sent under the old one, the central took them for replays of what it already had and dropped
// them, or the agent freed them itself as below the central's resume mark.

const TOKEN = 'rotation-test-token-0123456789';
const N = 20_000;

describe('a queue rotated while its destination is connected', () => {
  let dir: string;

  it('delivers every salvaged record to the central; the only loss is the damaged record, and it is ' +
    'counted', async () => {
    dir = scratchDir();
    const port = await stablePort();
    const out = path.join(dir, 'central.log');
    const central = centralYaml({ stateDir: `${dir}/central`, port, token: TOKEN, out });
    // A read cache of 4 KiB: the queue reads its backlog from the file as the session sends it,
    // so damage far in the file is found while the session is open.
    const agentYaml = `state_dir: ${dir}/agent
admin: { enabled: false }
sources:
  tcp: { type: syslog_tcp, address: "127.0.0.1:0" }
destinations:
  central:
    type: sluice
    urls: ["ws://127.0.0.1:${port}"]
    token: "${TOKEN}"
    batch_size: 100
    backoff: { initial: 20ms, max: 100ms }
    queue: { mode: reliable, max_size: 64MiB, mem_buf_size: 4KiB, sync_interval: 5ms }
pipelines:
  p: { from: [tcp], to: [central] }
`;
    const agent = await testAgent(agentYaml);
    // The first 2,000 reach the central (its resume mark for the old id is then 1,999).
    const c1 = await testAgent(central);
    const s = net.connect(portOf(agent, 'tcp'), '127.0.0.1');
    await new Promise((r) => s.once('connect', r));
    const line = (i: number) => `<13>1 - h app - - - line ${i} ${'x'.repeat(i % 97)}\n`;
    s.write(Array.from({ length: 2000 }, (_, i) => line(i)).join(''));
    await waitFor('2000 lines at the central', () => readLines(out).length === 2000, 20_000);
    await c1.stop();
    // The rest wait in the agent's queue while the central is down.
    s.write(Array.from({ length: N - 2000 }, (_, i) => line(2000 + i)).join(''));
    s.end();
    // At least the rest: records of the first 2,000 whose acks had not arrived before the central
    // stopped are still queued too (sent again later, and taken by the central as replays).
    await waitFor(
      'the backlog queued',
      () => agent.stats().sources.tcp!.received === N && agent.stats().destinations.central!.queue.records >= N - 2000,
      20_000,
    );
    await new Promise((r) => setTimeout(r, 50)); // and synced
    // Damage one record far in the backlog, behind the queue's back.
    const file = path.join(dir, 'agent/queues/central', QUEUE_FILE);
    const at = readFileSync(file).indexOf(Buffer.from(`line ${N - 3000} `));
    expect(at).toBeGreaterThan(0);
    const fd = openSync(file, 'r+');
    writeSync(fd, Buffer.from('#'), 0, 1, at + 2);
    closeSync(fd);
    // The central comes back; the session opens under the old id, then the damage is found.
    const c2 = await testAgent(central);
    const q = () => agent.stats().destinations.central!.queue;
    await waitFor('the rotation', () => q().corruption.rotated === 1, 20_000);
    await waitFor('the queue to drain', () => q().records === 0, 30_000);
    // Everything the central took is written (its own queue drained); under load that can take a while.
    await waitFor(
      'the central to write what it took',
      () => c2.destinations.get('store')!.queue.stats().records === 0 && readLines(out).length >= N - 1,
      30_000,
    ).catch(() => undefined);
    const seen = new Map<number, number>();
    for (const l of readLines(out)) {
      const i = Number(/ line (\d+) /.exec(l)![1]);
      seen.set(i, (seen.get(i) ?? 0) + 1);
    }
    const missing = Array.from({ length: N }, (_, i) => i).filter((i) => !seen.has(i));
    // The damaged record, and only it, is lost, and the queue says so.
    expect(missing).toEqual([N - 3000]);
    expect(q().corruption.lostRecords).toBe(1);
    // Records the central had before the rotation are not written twice; salvaged ones that it had
    // taken under the old id may be (a new id is a new stream), but every one arrives.
    expect([...seen.entries()].filter(([i, n]) => i < 2000 && n > 1)).toEqual([]);
  }, 90_000);
});
