import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['packages/*/test/**/*.test.ts', 'bench/test/**/*.test.ts', 'guests/test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 600_000,
    // Guest-booting test files run one at a time: two boots on 2 cores halve each other's speed.
    fileParallelism: false,
    pool: 'forks',
  },
});
