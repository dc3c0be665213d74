import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

describe('docs/configuration.md', () => {
  it('is what the schema generates (run "npm run docs:config" after changing the schema)', () => {
    const r = spawnSync(process.execPath, [path.join(root, 'dist/tools/config-docs.js')], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(readFileSync(path.join(root, 'docs/configuration.md'), 'utf8')).toBe(r.stdout);
  });

  it('documents every source and destination type and every template macro', () => {
    const doc = readFileSync(path.join(root, 'docs/configuration.md'), 'utf8');
    for (const t of ['syslog_udp', 'syslog_tcp', 'file', 'syslog']) expect(doc).toContain(`### \`type: ${t}\``);
    for (const m of ['HOST', 'PROGRAM', 'FACILITY', 'YEAR', 'MONTH', 'DAY']) expect(doc).toContain(`\`\${${m}}\``);
  });
});
