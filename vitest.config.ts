import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['userspace/**/*.test.ts', 'codegen/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Mount tests start daemons; two cores do not profit from more parallel files.
    maxWorkers: 2,
    pool: 'forks',
  },
});
