import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { procAddress } from '../../src/net/udp-drops.js';
import { SourceCounters } from '../../src/stats.js';
import { agentPerTest, portOf, readLines, waitFor } from '../helpers/agent.js';

const N = 4000;

// What the kernel drops never reaches sluice, so sluice cannot count it as it comes: it reads the
// socket's own drop counter. The flood comes while this process (the agent's) is blocked, so the
// smallest receive buffer overflows; then every datagram sent is either received or counted.
describe('UDP: datagrams the kernel drops are counted', () => {
  const t = agentPerTest();

  it('received plus dropped{kernel_buffer} equals what was sent, and /metrics shows it', async () => {
    const dir = t.fresh();
    const out = path.join(dir, 'out.log');
    const agent = await t.start(`
state_dir: ${dir}/state
admin: { address: "127.0.0.1:0" }
sources:
  udp: { type: syslog_udp, address: "127.0.0.1:0", receive_buffer_size: 4KiB }
destinations:
  f: { type: file, path: ${out} }
pipelines:
  p: { from: [udp], to: [f] }
`);
    const port = portOf(agent, 'udp');
    // spawnSync blocks this event loop while the child sends: nothing is read meanwhile.
    const sender = `
      const s = require('dgram').createSocket('udp4');
      let sent = 0;
      const body = Buffer.from('<13>Jan  1 00:00:00 h flood: ' + 'x'.repeat(170));
      const next = () => {
        if (sent === ${N}) return s.close();
        s.send(body, ${port}, '127.0.0.1', () => { sent++; next(); });
      };
      next();`;
    const r = spawnSync(process.execPath, ['-e', sender], { timeout: 30_000 });
    expect(r.status).toBe(0);
    const stats = () => agent.stats().sources.udp!;
    await waitFor(
      'every datagram received or counted',
      () => stats().received + (stats().dropped.kernel_buffer ?? 0) >= N,
      10_000,
    );
    const dropped = stats().dropped.kernel_buffer ?? 0;
    expect(dropped).toBeGreaterThan(0);
    expect(stats().received + dropped).toBe(N);
    await waitFor('the received ones written', () => readLines(out).length === stats().received, 10_000);
    const metrics = await (await fetch(`http://${agent.adminAddress()}/metrics`)).text();
    expect(metrics).toContain(`sluice_source_dropped_records_total{source="udp",reason="kernel_buffer"} ${dropped}`);
  });

  it('finds the socket in /proc/net/udp by its address as the kernel prints it', () => {
    expect(procAddress('127.0.0.1')).toBe('0100007F');
    expect(procAddress('0.0.0.0')).toBe('00000000');
    expect(procAddress('::1')).toBe('00000000000000000000000001000000');
    expect(procAddress('fe80::1')).toBe('000080FE000000000000000001000000');
  });
});

describe('UDP: a source whose port is taken', () => {
  it('fails to start, and stops without reading a counter for a socket it never bound', async () => {
    const { SyslogUdpSource } = await import('../../src/sources/syslog-udp/index.js');
    const { syslogUdpSourceSchema } = await import('../../src/sources/syslog-udp/config.js');
    const { silentLogger } = await import('../../src/log.js');
    const dgram = await import('node:dgram');
    const taken = dgram.createSocket('udp4');
    await new Promise<void>((r) => taken.bind(0, '127.0.0.1', r));
    try {
      const src = new SyslogUdpSource(
        syslogUdpSourceSchema.parse({ type: 'syslog_udp', address: `127.0.0.1:${taken.address().port}` }),
        {
          name: 'udp',
          router: {} as never,
          logger: silentLogger(),
          stateDir: '/nonexistent',
          hostname: 'test',
          counters: new SourceCounters(),
        },
      );
      await expect(src.start()).rejects.toThrow(/EADDRINUSE/);
      await expect(src.stop()).resolves.toBeUndefined();
    } finally {
      taken.close();
    }
  });
});
