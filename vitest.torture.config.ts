import { defineConfig } from 'vitest/config';

// npm run torture: the torture scenarios alone, one at a time (each starts its own agent and central).
export default defineConfig({
  test: {
    include: ['test/torture/**/*.test.ts'],
    testTimeout: 600_000,
    hookTimeout: 60_000,
    maxWorkers: 1,
  },
});
