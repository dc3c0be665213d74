import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The torture suite (npm run torture) still finds losses now and then (issue 15 is open: its
    // note gives the runs), so it runs on its own rather than making npm test fail by chance.
    exclude: ['test/torture/**', 'node_modules/**'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Peer tests bind loopback ports and spawn processes; keep parallelism modest on 2 cores.
    maxWorkers: 2,
  },
});
