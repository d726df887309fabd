import { defineConfig } from 'vitest/config';

/**
 * Mutation testing (Stryker, `pnpm mutation`) runs only the core's unit tests: they exercise the failure
 * policy and the idempotency claim directly on the memory transport, need no broker, and are fast enough to
 * run once per mutant. Tests run against TypeScript sources, as in vitest.config.ts.
 */
const resolve = { conditions: ['omnibus-source', 'import', 'node', 'default'] };

export default defineConfig({
  resolve,
  ssr: { resolve: { conditions: resolve.conditions, externalConditions: ['omnibus-source'] } },
  test: {
    include: ['packages/core/src/**/*.test.ts'],
    environment: 'node',
  },
});
