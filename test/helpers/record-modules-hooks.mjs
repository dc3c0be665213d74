// The module hooks of record-modules.mjs (they run on the loader's own thread).
import { appendFileSync } from 'node:fs';

let file = '';
let thread = 0;

export function initialize(data) {
  file = data.file;
  thread = data.thread;
}

export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  appendFileSync(file, `${process.pid}:${thread} ${r.url}\n`);
  return r;
}
