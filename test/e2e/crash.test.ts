import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseRsp, RELP_OFFERS, relpFrame, RelpParser, type RelpFrame } from '../../src/protocol/relp.js';
import { removeDir, sleep, stablePort, tempDir, waitFor } from '../helpers/agent.js';
import { Proc } from '../helpers/proc.js';

// The product's promise, end to end: an agent (a followed file and a RELP source, a reliable queue,
// the sluice protocol) and a central sluice (a reliable queue, a file written exactly once) are both
// killed with SIGKILL at random moments, several times, while traffic flows. At the end every line
// of the followed file, and every message RELP acknowledged, is in the central file exactly once.

const FILE_LINES = 100_000;
const RELP_MESSAGES = 100_000;
const TOKEN = 'crash-test-token-0123456789';

const freePort = stablePort;

/**
 * A RELP sender that remembers what was acknowledged: it sends each message once; a message whose
 * answer does not come (the agent died) is not sent again, so it counts as not acknowledged.
 */
async function relpSender(port: number, total: number, acked: Set<number>, running: () => boolean): Promise<void> {
  let next = 0;
  while (next < total && running()) {
    const socket = net.connect(port, '127.0.0.1');
    const ok = await new Promise<boolean>((r) => {
      socket.once('connect', () => r(true));
      socket.once('error', () => r(false));
    });
    if (!ok) {
      await sleep(100);
      continue;
    }
    const parser = new RelpParser(1 << 20);
    const answers = new Map<number, (code: number) => void>();
    let dead = false;
    socket.on('data', (chunk: Buffer) => {
      const frames: RelpFrame[] = [];
      try {
        parser.push(chunk, frames);
      } catch {
        socket.destroy();
        return;
      }
      for (const f of frames) {
        if (f.command === 'rsp') answers.get(f.txnr)?.(parseRsp(f.data).code);
      }
    });
    const fail = () => {
      dead = true;
      for (const a of answers.values()) a(-1);
      answers.clear();
    };
    socket.on('error', fail);
    socket.on('close', fail);
    const ask = (txnr: number) =>
      new Promise<number>((r) =>
        answers.set(txnr, (code) => {
          answers.delete(txnr);
          r(code);
        }),
      );
    let txnr = 1;
    const opened = ask(txnr);
    socket.write(relpFrame(txnr++, 'open', RELP_OFFERS));
    if ((await opened) !== 200) {
      socket.destroy();
      await sleep(100);
      continue;
    }
    while (!dead && next < total && running()) {
      const batch: Promise<void>[] = [];
      for (let k = 0; k < 500 && next < total; k++) {
        const i = next++;
        const t = txnr++;
        batch.push(ask(t).then((code) => void (code === 200 && acked.add(i))));
        socket.write(relpFrame(t, 'syslog', `<13>1 - crashhost relp - - - relp-msg ${i}`));
      }
      await Promise.all(batch);
    }
    socket.destroy();
  }
}

describe('end to end, with both processes killed again and again', () => {
  it('every acknowledged message is in the central file exactly once', async () => {
    const dir = tempDir();
    const centralPort = await freePort();
    const relpPort = await freePort();
    mkdirSync(path.join(dir, 'logs'));
    const app = path.join(dir, 'logs/app.log');
    writeFileSync(app, '');
    const out = path.join(dir, 'central.log');
    writeFileSync(
      path.join(dir, 'central.yaml'),
      `state_dir: ${dir}/central
log: { level: warn, format: json }
admin: { enabled: false }
sources:
  agents: { type: sluice, address: "127.0.0.1:${centralPort}", tokens: ["${TOKEN}"] }
destinations:
  store: { type: file, path: ${out}, format: raw, exactly_once: true, queue: { mode: reliable, max_size: 256MiB,
      sync_interval: 10ms } }
pipelines:
  p: { from: [agents], to: [store] }
`,
    );
    writeFileSync(
      path.join(dir, 'agent.yaml'),
      `state_dir: ${dir}/agent
log: { level: warn, format: json }
admin: { enabled: false }
sources:
  app: { type: file, paths: ["${dir}/logs/*.log"], read_from: beginning, poll_interval: 20ms,
      checkpoint_interval: 100ms }
  relp: { type: relp, address: "127.0.0.1:${relpPort}" }
destinations:
  central: { type: sluice, urls: ["ws://127.0.0.1:${centralPort}"], token: "${TOKEN}", backoff: { initial: 20ms,
      max: 200ms }, queue: { mode: reliable, max_size: 256MiB, sync_interval: 10ms } }
pipelines:
  p: { from: [app, relp], to: [central] }
`,
    );
    const central = new Proc(path.join(dir, 'central.yaml'));
    const agent = new Proc(path.join(dir, 'agent.yaml'));
    central.start();
    agent.start();
    let running = true;
    const acked = new Set<number>();
    try {
      await waitFor('the agent to listen', () => agent.log.length >= 0 && existsSync(path.join(dir, 'agent')), 10_000);
      // Traffic: a writer appends to the followed file, a RELP client sends.
      let written = 0;
      const writer = (async () => {
        while (written < FILE_LINES && running) {
          let text = '';
          for (let k = 0; k < 1000 && written < FILE_LINES; k++) text += `file-line ${written++} ${'p'.repeat(60)}\n`;
          appendFileSync(app, text);
          await sleep(10);
        }
      })();
      const sender = relpSender(relpPort, RELP_MESSAGES, acked, () => running);
      // The killer: five rounds of SIGKILL at random moments, agent, central or both.
      for (let round = 0; round < 5; round++) {
        await sleep(200 + Math.floor(Math.random() * 800));
        const which = round % 3;
        if (which !== 1) await agent.kill();
        if (which !== 0) await central.kill();
        await sleep(Math.floor(Math.random() * 200));
        if (which !== 1) agent.start();
        if (which !== 0) central.start();
      }
      await writer;
      await Promise.race([sender, sleep(60_000)]);
      expect(written).toBe(FILE_LINES);
      // Everything acknowledged must arrive; then nothing more may come.
      const want = FILE_LINES + acked.size;
      await waitFor(
        `${want} lines at the central server`,
        () => existsSync(out) && readFileSync(out, 'utf8').split('\n').length - 1 >= want,
        90_000,
      );
      await sleep(1000);
      const lines = readFileSync(out, 'utf8').split('\n').filter(Boolean);
      const fileSeen = new Map<number, number>();
      const relpSeen = new Map<number, number>();
      for (const l of lines) {
        let m = /^file-line (\d+) /.exec(l);
        if (m) fileSeen.set(Number(m[1]), (fileSeen.get(Number(m[1])) ?? 0) + 1);
        m = / relp-msg (\d+)$/.exec(l);
        if (m) relpSeen.set(Number(m[1]), (relpSeen.get(Number(m[1])) ?? 0) + 1);
      }
      const missingFile = Array.from({ length: FILE_LINES }, (_, i) => i).filter((i) => !fileSeen.has(i));
      const dupFile = [...fileSeen].filter(([, n]) => n > 1).map(([i]) => i);
      const missingRelp = [...acked].filter((i) => !relpSeen.has(i));
      const dupRelp = [...acked].filter((i) => (relpSeen.get(i) ?? 0) > 1);
      expect({
        missingFile: missingFile.length,
        dupFile: dupFile.length,
        missingRelp: missingRelp.length,
        dupRelp: dupRelp.length,
      }).toEqual({
        missingFile: 0,
        dupFile: 0,
        missingRelp: 0,
        dupRelp: 0,
      });
      expect(acked.size).toBeGreaterThan(RELP_MESSAGES / 2);
      expect(agent.kills + central.kills).toBeGreaterThanOrEqual(5);
    } finally {
      running = false;
      await agent.stop();
      await central.stop();
      removeDir(dir);
    }
  }, 240_000);
});
