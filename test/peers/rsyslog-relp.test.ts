import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Agent } from '../../src/agent.js';
import { portOf, readLines, removeDir, sleep, stablePort, startAgent, tempDir, waitFor } from '../helpers/agent.js';
import { startRsyslog, type Rsyslog } from '../helpers/peers.js';
import { makePki } from '../helpers/tls.js';
import { sendTcp } from '../helpers/net.js';

// RELP against rsyslog 8.2302 with librelp 1.11, both directions, with restarts mid-stream.

const freePort = stablePort;

const line = (i: number) =>
  `<13>1 2026-01-01T00:00:00.000001Z relphost app 42 ID7 [x@1 k="v \\"q\\""] message ${i} ${'é'.repeat(i % 7)}`;
const lines = (from: number, n: number) => Array.from({ length: n }, (_, i) => line(from + i));

describe('RELP with rsyslog', () => {
  let dir: string;
  const peers: Rsyslog[] = [];
  const agents: Agent[] = [];
  afterEach(async () => {
    for (const a of agents.splice(0)) await a.stop().catch(() => undefined);
    for (const p of peers.splice(0)) await p.stop('SIGKILL');
    removeDir(dir);
  });

  const omrelp = (port: number) => `
module(load="imtcp")
module(load="omrelp")
input(type="imtcp" port="0" listenPortFileName="${dir}/imtcp.port" ruleset="fwd")
template(name="raw" type="string" string="%rawmsg%")
ruleset(name="fwd")
    { action(type="omrelp" target="127.0.0.1" port="${port}" template="raw" action.resumeRetryCount="-1"
      action.resumeInterval="1"
  queue.type="LinkedList" queue.size="100000") }
`;
  const relpSource = (port: number) => `
state_dir: ${dir}/state
shutdown_timeout: 500ms
admin: { enabled: false }
sources:
  relp: { type: relp, address: "127.0.0.1:${port}" }
destinations:
  f: { type: file, path: ${dir}/got.log, queue: { mode: reliable, max_size: 16MiB, sync_interval: 10ms } }
pipelines:
  p: { from: [relp], to: [f] }
`;

  it('rsyslog omrelp to the sluice RELP source: every message arrives, in order, byte for byte', async () => {
    dir = tempDir();
    const port = await freePort();
    agents.push(await startAgent(relpSource(port)));
    const rs = await startRsyslog(dir, omrelp(port));
    peers.push(rs);
    const sent = lines(0, 5000);
    await sendTcp(await rs.imtcpPort(), sent);
    await waitFor('5000 at sluice', () => readLines(`${dir}/got.log`).length >= 5000, 30_000);
    expect(readLines(`${dir}/got.log`)).toEqual(sent);
  }, 60_000);

  it('the sluice RELP source restarting mid-stream loses nothing: unanswered messages come again from ' +
    'rsyslog', async () => {
    dir = tempDir();
    const port = await freePort();
    let agent = await startAgent(relpSource(port));
    const rs = await startRsyslog(dir, omrelp(port));
    peers.push(rs);
    const tcp = await rs.imtcpPort();
    await sendTcp(tcp, lines(0, 3000));
    await waitFor('some delivered', () => readLines(`${dir}/got.log`).length > 500, 30_000);
    await agent.stop();
    await sendTcp(tcp, lines(3000, 2000));
    await sleep(300);
    agent = await startAgent(relpSource(port));
    agents.push(agent);
    await waitFor('all 5000 at sluice', () => new Set(readLines(`${dir}/got.log`)).size === 5000, 30_000);
    const got = readLines(`${dir}/got.log`);
    expect(new Set(got)).toEqual(new Set(lines(0, 5000)));
  }, 60_000);

  // A direct queue: imrelp answers 200 only after omfile has the message (with rsyslog's default
  // in-memory main queue, a SIGKILL loses messages rsyslog itself already acknowledged).
  const imrelp = (port: number) => `
module(load="imrelp")
input(type="imrelp" port="${port}" ruleset="out")
template(name="rawline" type="string" string="%rawmsg%\\n")
ruleset(name="out" queue.type="Direct") { action(type="omfile" file="${dir}/rsyslog-out.log" template="rawline") }
`;
  const relpDest = (port: number) => `
state_dir: ${dir}/state
shutdown_timeout: 500ms
admin: { enabled: false }
sources:
  in: { type: syslog_tcp, address: "127.0.0.1:0" }
destinations:
  r: { type: relp, address: "127.0.0.1:${port}", window: 256, backoff: { initial: 50ms, max: 200ms },
      queue: { mode: reliable, max_size: 16MiB, sync_interval: 10ms } }
pipelines:
  p: { from: [in], to: [r] }
`;

  it('the sluice RELP destination to rsyslog imrelp: every message arrives, in order', async () => {
    dir = tempDir();
    const port = await freePort();
    peers.push(await startRsyslog(dir, imrelp(port)));
    await sleep(300);
    const agent = await startAgent(relpDest(port));
    agents.push(agent);
    const sent = lines(0, 5000);
    await sendTcp(portOf(agent, 'in'), sent);
    await waitFor('5000 at rsyslog', () => readLines(`${dir}/rsyslog-out.log`).length >= 5000, 30_000);
    expect(readLines(`${dir}/rsyslog-out.log`)).toEqual(sent);
    await waitFor('the queue to empty', () => agent.stats().destinations.r!.queue.records === 0);
  }, 60_000);

  it('rsyslog imrelp killed and restarted mid-stream: nothing is lost, the rest is sent again', async () => {
    dir = tempDir();
    const port = await freePort();
    let rs = await startRsyslog(dir, imrelp(port));
    await sleep(300);
    const agent = await startAgent(relpDest(port));
    agents.push(agent);
    await sendTcp(portOf(agent, 'in'), lines(0, 20_000));
    await waitFor('some at rsyslog', () => readLines(`${dir}/rsyslog-out.log`).length > 1000, 30_000);
    await rs.stop('SIGKILL');
    await sleep(300);
    expect(agent.stats().destinations.r!.queue.records).toBeGreaterThan(0);
    rs = await startRsyslog(dir, imrelp(port));
    peers.push(rs);
    await waitFor(
      'all 20000 at rsyslog',
      () => new Set(readLines(`${dir}/rsyslog-out.log`)).size === 20_000,
      60_000,
    ).catch((err: Error) => {
      throw new Error(
        `${err.message}; got ${new Set(readLines(`${dir}/rsyslog-out.log`)).size}; agent ` +
          `${JSON.stringify(agent.stats().destinations.r)}; rsyslog: ${rs.log().slice(-500)}`,
      );
    });
    expect(agent.stats().destinations.r!.failures).toBeGreaterThan(0);
    await waitFor('the queue to empty', () => agent.stats().destinations.r!.queue.records === 0);
  }, 90_000);

  it('over TLS both ways: rsyslog omrelp to sluice (mutual TLS), and sluice to rsyslog imrelp', async () => {
    dir = tempDir();
    mkdirSync(path.join(dir, 'pki'));
    const pki = makePki(path.join(dir, 'pki'));
    // rsyslog (gnutls) -> sluice RELP source with TLS and client certificates.
    const inPort = await freePort();
    agents.push(
      await startAgent(
        relpSource(inPort).replace(
          `relp: { type: relp, address: "127.0.0.1:${inPort}" }`,
          `relp: { type: relp, address: "127.0.0.1:${inPort}", tls: { cert: ${pki.serverCert}, key: ` +
            `${pki.serverKey}, client_ca: ${pki.ca} } }`,
        ),
      ),
    );
    const tlsOut = omrelp(inPort).replace(
      'template="raw"',
      `template="raw" tls="on" tls.cacert="${pki.ca}" tls.mycert="${pki.clientCert}" ` +
        `tls.myprivkey="${pki.clientKey}" tls.authmode="certvalid"`,
    );
    const rs = await startRsyslog(dir, tlsOut);
    peers.push(rs);
    const sent = lines(0, 1000);
    await sendTcp(await rs.imtcpPort(), sent);
    await waitFor('1000 over TLS at sluice', () => readLines(`${dir}/got.log`).length >= 1000, 30_000);
    expect(readLines(`${dir}/got.log`)).toEqual(sent);

    // sluice RELP destination with TLS -> rsyslog imrelp with TLS.
    const outPort = await freePort();
    const tlsIn = imrelp(outPort).replace(
      `input(type="imrelp" port="${outPort}" ruleset="out")`,
      `input(type="imrelp" port="${outPort}" ruleset="out" tls="on" tls.cacert="${pki.ca}" ` +
        `tls.mycert="${pki.serverCert}" tls.myprivkey="${pki.serverKey}" tls.authmode="certvalid")`,
    );
    peers.push(await startRsyslog(path.join(dir, 'rs2'), tlsIn));
    await sleep(300);
    const agent = await startAgent(
      relpDest(outPort)
        .replace(`${dir}/state`, `${dir}/state2`)
        .replace(
          'window: 256,',
          `window: 256, tls: { ca: ${pki.ca}, cert: ${pki.clientCert}, key: ${pki.clientKey}, server_name: localhost ` +
            `},`,
        ),
    );
    agents.push(agent);
    await sendTcp(portOf(agent, 'in'), sent);
    await waitFor('1000 over TLS at rsyslog', () => readLines(`${dir}/rsyslog-out.log`).length >= 1000, 30_000);
    expect(readLines(`${dir}/rsyslog-out.log`)).toEqual(sent);
  }, 60_000);
});
