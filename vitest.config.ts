import { defineConfig } from 'vitest/config';

// isolated-vm needs --no-node-snapshot on Node 20+ (its README; we run 24 and 26) in every process that loads it,
// so tests run in forked workers started with that flag.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    execArgv: ['--no-node-snapshot'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    maxWorkers: 2,
    // Prints one line when the PostgreSQL tests are skipped (test/helpers/postgres.ts).
    globalSetup: ['test/global-setup.ts'],
  },
});
