import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // test/torture runs here in its short form (a few seconds a scenario, a fixed seed);
    // npm run torture runs it for minutes with vitest.torture.config.ts.
    exclude: ['node_modules/**'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Peer tests bind loopback ports and spawn processes; keep parallelism modest on 2 cores.
    maxWorkers: 2,
  },
});
