import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Peer tests bind loopback ports and spawn processes; keep parallelism modest on 2 cores.
    maxWorkers: 2,
  },
});
