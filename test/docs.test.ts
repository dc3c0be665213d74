import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { DESTINATION_TYPES, SOURCE_TYPES } from '../src/components.js';
import { TEMPLATE_MACROS } from '../src/template/macros.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

describe('docs/configuration.md', () => {
  it('is what the schema generates (run "npm run docs:config" after changing the schema)', () => {
    const r = spawnSync(process.execPath, [path.join(root, 'dist/tools/config-docs.js')], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(readFileSync(path.join(root, 'docs/configuration.md'), 'utf8')).toBe(r.stdout);
  });

  it('documents every source and destination type and every template macro', () => {
    const doc = readFileSync(path.join(root, 'docs/configuration.md'), 'utf8');
    // The lists come from the component registry and the macro table: a type or macro added there
    // and not documented fails here.
    const types = [...new Set([...SOURCE_TYPES, ...DESTINATION_TYPES])];
    expect(types.length).toBeGreaterThanOrEqual(6);
    for (const t of types) expect(doc).toContain(`### \`type: ${t}\``);
    const macros = Object.keys(TEMPLATE_MACROS);
    expect(macros).toContain('HOST');
    for (const m of macros) expect(doc).toContain(`\`\${${m}}\``);
  });
});
