import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { portOf, removeDir, startAgent, tempDir, waitFor, stablePort } from '../../helpers/agent.js';

const freePort = stablePort;

describe('agent with a reliable queue', () => {
  it(
    'keeps records on disk while the receiver is down, across an agent restart, and delivers them once it is ' + 'up',
    async () => {
      const dir = tempDir();
      const port = await freePort();
      const yaml = `
state_dir: ${dir}/state
shutdown_timeout: 200ms
sources:
  in: { type: syslog_tcp, address: "127.0.0.1:0" }
destinations:
  central:
    type: syslog
    address: 127.0.0.1:${port}
    framing: lf
    backoff: { initial: 20ms, max: 100ms }
    queue: { mode: reliable, max_size: 8MiB, sync_interval: 10ms }
pipelines:
  p: { from: [in], to: [central] }
`;
      let agent = await startAgent(yaml);
      const s = net.connect(portOf(agent, 'in'), '127.0.0.1');
      for (let i = 0; i < 500; i++) s.write(`<13>1 - h app - - - reliable ${i}\n`);
      s.end();
      await waitFor(
        '500 records on disk',
        () =>
          agent.stats().destinations.central!.queue.records === 500 && agent.stats().destinations.central!.failures > 0,
      );
      await agent.stop();

      const got: string[] = [];
      const receiver = net.createServer((c) => {
        let buf = '';
        c.on('data', (d: Buffer) => {
          buf += d.toString();
          const lines = buf.split('\n');
          buf = lines.pop()!;
          got.push(...lines);
        });
      });
      await new Promise<void>((r) => receiver.listen(port, '127.0.0.1', r));
      try {
        agent = await startAgent(yaml);
        await waitFor('all 500 after the restart', () => got.length >= 500);
        expect(got).toEqual(Array.from({ length: 500 }, (_, i) => `<13>1 - h app - - - reliable ${i}`));
        await waitFor('the queue to empty', () => agent.stats().destinations.central!.queue.records === 0);
        await agent.stop();
        // Delivered records are not sent again on the next start.
        const before = got.length;
        agent = await startAgent(yaml);
        await new Promise((r) => setTimeout(r, 300));
        expect(got.length).toBe(before);
        await agent.stop();
      } finally {
        receiver.close();
        removeDir(dir);
      }
      void path;
    },
  );
});
