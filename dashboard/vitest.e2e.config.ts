import { defineConfig } from 'vitest/config';

// Browser tests against the real stack: one launcher-run stack for the whole run
// (e2e/global-setup.ts), files one after the other (a 2-core machine runs one Chromium well).
export default defineConfig({
  test: {
    include: ['e2e/**/*.e2e.ts'],
    environment: 'node',
    globalSetup: ['e2e/global-setup.ts'],
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 240_000,
    reporters: ['verbose'],
  },
});
