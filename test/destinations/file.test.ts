import { existsSync, readdirSync, statSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Agent } from '../../src/agent.js';
import { LogRecord, type RecordOrigin } from '../../src/record.js';
import {
  capComponent,
  NAME_MAX,
  PathTemplate,
  safeComponent,
  TemplateError,
} from '../../src/template/path-template.js';
import { portOf, readLines, scratchDir, testAgent, waitFor } from '../helpers/agent.js';
import { SourceCounters } from '../../src/stats.js';

const origin: RecordOrigin = {
  source: 'src',
  from: '192.0.2.7',
  format: 'syslog',
  lenient: false,
  counters: new SourceCounters(),
};
const rec = (raw: string, at = Date.UTC(2024, 1, 29, 13, 5, 0)) => new LogRecord(Buffer.from(raw), at, origin);

describe('PathTemplate', () => {
  it('fills macros from the message, the record and the receive time (UTC)', () => {
    const t = new PathTemplate(
      '/logs/${HOST}/${YEAR}-${MONTH}-${DAY}/${PROGRAM}.${FACILITY}.${SEVERITY}.${SOURCE}.log',
    );
    expect(t.baseDir).toBe('/logs');
    expect(t.render(rec('<165>1 - web01 nginx - - - x'))).toBe('/logs/web01/2024-02-29/nginx.local4.notice.src.log');
  });

  it('falls back to the sender address and "unknown" when the message lacks host and program', () => {
    const t = new PathTemplate('/logs/${HOST}/${PROGRAM}.log');
    expect(t.render(rec('<13>not even a header'))).toBe('/logs/192.0.2.7/unknown.log');
  });

  it('can never leave the base directory, whatever the message says', () => {
    const t = new PathTemplate('/logs/${HOST}/${PROGRAM}.log');
    for (const evil of ['..', '../../etc', '.', '/etc/passwd', 'a/../../b', '..\\..']) {
      const out = t.render(rec(`<13>1 - ${evil} ${evil} - - - x`));
      expect(out.startsWith('/logs/')).toBe(true);
      expect(path.relative('/logs', out).split(path.sep)).toHaveLength(2);
    }
    expect(safeComponent('..')).toBe('_');
    expect(safeComponent('a/b')).toBe('a_b');
    expect(safeComponent('x\u0000y')).toBe('x_y');
  });

  it('cuts every component to the file system limit, keeping the extension, and keeps two long names apart', () => {
    // Host names of up to 255 characters are valid; with the program name beside them, one
    // component is longer than a file name may be.
    const t = new PathTemplate('/logs/${HOST}-${PROGRAM}.log');
    const a = 'h'.repeat(250);
    const pa = t.render(rec(`<13>Feb 29 10:00:00 ${a} ${'p'.repeat(30)}: x`));
    const pb = t.render(rec(`<13>Feb 29 10:00:00 ${a} ${'p'.repeat(29)}q: x`));
    for (const p of [pa, pb]) {
      for (const c of p.split('/')) expect(Buffer.byteLength(c)).toBeLessThanOrEqual(NAME_MAX);
      expect(path.basename(p).startsWith('h'.repeat(200))).toBe(true);
      expect(p.endsWith('.log')).toBe(true);
    }
    expect(pa).not.toBe(pb);
    // Multi-byte characters are never cut in two.
    const name = capComponent(`${'é'.repeat(200)}.log`);
    expect(Buffer.byteLength(name)).toBeLessThanOrEqual(NAME_MAX);
    expect(name.endsWith('.log')).toBe(true);
    expect(name).not.toContain('\ufffd');
    expect(capComponent('short.log')).toBe('short.log');
  });

  it('refuses unknown macros', () => {
    expect(() => new PathTemplate('/logs/${NOPE}.log')).toThrow(TemplateError);
  });
});

describe('file destination', () => {
  let dir: string;
  let agent: Agent | undefined;

  it('writes per-host files through a template, creating directories, with the configured modes', async () => {
    dir = scratchDir();
    agent = await testAgent(`
state_dir: ${dir}/state
sources:
  in: { type: syslog_tcp, address: "127.0.0.1:0" }
destinations:
  f: { type: file, path: "${dir}/hosts/\${HOST}/\${PROGRAM}.log", file_mode: "0600", dir_mode: "0700" }
pipelines:
  p: { from: [in], to: [f] }
`);
    const s = net.connect(portOf(agent, 'in'), '127.0.0.1');
    s.write(
      '<13>1 - alpha sshd - - - a1\n<13>1 - beta cron - - - b1\n<13>1 - alpha sshd - - - a2\n<13>1 - ../../escape x ' +
        '- - - e\n',
    );
    await waitFor(
      'files',
      () => readLines(`${dir}/hosts/alpha/sshd.log`).length === 2 && existsSync(`${dir}/hosts/.._.._escape/x.log`),
    );
    expect(readLines(`${dir}/hosts/alpha/sshd.log`)).toEqual([
      '<13>1 - alpha sshd - - - a1',
      '<13>1 - alpha sshd - - - a2',
    ]);
    expect(readLines(`${dir}/hosts/beta/cron.log`)).toEqual(['<13>1 - beta cron - - - b1']);
    // The hostname "../../escape" became one harmless directory name inside hosts/.
    expect(readdirSync(`${dir}/hosts`).sort()).toEqual(['.._.._escape', 'alpha', 'beta']);
    expect(readdirSync(dir).sort()).toEqual(['hosts', 'state']);
    expect(statSync(`${dir}/hosts/alpha/sshd.log`).mode & 0o777).toBe(0o600);
    expect(statSync(`${dir}/hosts/alpha`).mode & 0o777).toBe(0o700);
    s.destroy();
  });
});
