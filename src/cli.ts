#!/usr/bin/env node
import { main } from './cli/main.js';

// The sluice command: src/cli/ holds the argument parsing (main.ts) and one file per command.
main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Timers and sockets of a stopped agent must not keep the process alive.
    setTimeout(() => process.exit(code), 50).unref();
  },
  (err: Error) => {
    process.stderr.write(`sluice: ${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
