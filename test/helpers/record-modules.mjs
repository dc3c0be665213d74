// Loaded with `node --import` into a sluice process under test: every module the process resolves
// (through `import`, static or dynamic) is appended to the file named by SLUICE_TEST_MODULES, one
// line each, `<pid>:<thread id> <url>`, so that a test can tell what the main thread loaded at start
// (the processes sluice starts with the same Node options, such as its config loader, append theirs).
import { register } from 'node:module';
import { threadId } from 'node:worker_threads';

if (process.env.SLUICE_TEST_MODULES)
  register('./record-modules-hooks.mjs', import.meta.url, {
    data: { file: process.env.SLUICE_TEST_MODULES, thread: threadId },
  });
