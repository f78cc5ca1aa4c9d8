import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts', 'bench/**/*.test.ts'],
    // Builds dist/ once: the tests of `npm start`, the stack and WORKERS run compiled code.
    globalSetup: ['test/helpers/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Integration tests start their own redis-server processes; two cores, so few at once.
    maxWorkers: 2,
  },
});
