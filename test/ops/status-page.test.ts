import { existsSync, mkdirSync, statSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../src/agent.js';
import { portOf, readLines, removeDir, startAgent, tempDir, waitFor } from '../helpers/agent.js';

// The status page in Debian's Chromium, headless, driven by playwright-core. The screenshot is kept
// in test-artifacts/ (CI keeps it).
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CHROMIUM = process.env.SLUICE_CHROMIUM ?? '/usr/bin/chromium';
const artifacts = path.join(repo, 'test-artifacts');

describe('status page', () => {
  let dir: string;
  let agent: Agent;
  let browser: Browser;

  beforeAll(async () => {
    if (!existsSync(CHROMIUM))
      throw new Error(`${CHROMIUM} is missing: scripts/install-peers.sh installs Debian's chromium (npm test runs it)`);
    dir = tempDir();
    agent = await startAgent(`
state_dir: ${dir}/state
shutdown_timeout: 200ms
admin: { address: "127.0.0.1:0" }
sources:
  tcp_in: { type: syslog_tcp, address: "127.0.0.1:0" }
destinations:
  archive: { type: file, path: ${dir}/archive.log }
  central: { type: syslog, address: "127.0.0.1:9", backoff: { initial: 50ms, max: 100ms }, queue: { mode: reliable,
      max_size: 1MiB } }
pipelines:
  everything: { from: [tcp_in], to: [archive, central] }
`);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await agent?.stop();
    removeDir(dir);
  });

  it('shows pipelines, queue fill bars, rates and connection states, refreshed live', async () => {
    const page = await browser.newPage({ viewport: { width: 1400, height: 800 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`http://${agent.adminAddress()}/`);
    await expect.poll(() => page.textContent('[data-testid=state]')).toBe('ready');
    expect(await page.textContent('[data-testid=pipelines]')).toContain('everything: tcp_in → archive, central');

    // Traffic: the page must show it without a reload.
    const s = net.connect(portOf(agent, 'tcp_in'), '127.0.0.1');
    s.end(Array.from({ length: 500 }, (_, i) => `<13>1 - web01 app - - - status ${i} ${'x'.repeat(1000)}\n`).join(''));
    await waitFor('500 archived', () => readLines(`${dir}/archive.log`).length === 500);
    const received = page.locator('[data-source=tcp_in] td:nth-child(4)');
    await expect.poll(() => received.textContent(), { timeout: 10_000 }).toBe('500');

    const central = page.locator('[data-destination=central]');
    await expect.poll(() => central.locator('td:nth-child(3)').textContent(), { timeout: 10_000 }).toBe('down');
    expect(await central.locator('td:nth-child(5)').textContent()).toBe('reliable');
    expect(await central.locator('td:nth-child(7)').textContent()).toBe('500');
    // The fill bar: about 500 KB of a 1 MiB ring.
    const fill = Number(await central.locator('.bar').getAttribute('data-fill'));
    expect(fill).toBeGreaterThan(40);
    expect(fill).toBeLessThan(60);
    expect(await central.locator('.bar').getAttribute('class')).toMatch(/\bbar\b/);
    const archive = page.locator('[data-destination=archive]');
    expect(await archive.locator('td:nth-child(3)').textContent()).toBe('ok');
    expect(await archive.locator('td:nth-child(8)').textContent()).toBe('-'); // nothing waiting
    expect(await archive.locator('td:nth-child(9)').textContent()).toBe('500');
    // Rates are numbers once two samples are in (0 now that the burst is over).
    await expect
      .poll(() => page.locator('[data-source=tcp_in] td:nth-child(3)').textContent(), { timeout: 10_000 })
      .toMatch(/^\d[\d,]*$/);

    mkdirSync(artifacts, { recursive: true });
    const shot = path.join(artifacts, 'status-page.png');
    await page.screenshot({ path: shot, fullPage: true });
    expect(statSync(shot).size).toBeGreaterThan(10_000);
    expect(errors).toEqual([]);
    await page.close();
  }, 60_000);
});
