import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | null = null;

/** sluice's version, from its package.json. */
export function version(): string {
  if (cached) return cached;
  const pkg = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'package.json');
  cached = (JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version;
  return cached;
}
