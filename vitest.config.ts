import { configDefaults, defineConfig } from 'vitest/config';

// Tests run against TypeScript sources (the `omnibus-source` export condition), so no build is needed.
const resolve = { conditions: ['omnibus-source', 'import', 'node', 'default'] };
const transports = ['memory', 'rabbitmq', 'kafka', 'sqs', 'nats'] as const;

export default defineConfig({
  resolve,
  ssr: { resolve: { conditions: resolve.conditions, externalConditions: ['omnibus-source'] } },
  test: {
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['packages/*/src/**/*.test.ts'],
          environment: 'node',
          // Type-level tests (*.test-d.ts) run with the unit tests: tsc checks them, and a type error (or a
          // `@ts-expect-error` line that compiles) fails the run like a failed assertion.
          typecheck: {
            enabled: true,
            include: ['packages/*/src/**/*.test-d.ts'],
            tsconfig: './tsconfig.test-d.json',
          },
        },
      },
      {
        extends: true,
        test: {
          name: 'adapters',
          include: ['packages/*/test/**/*.test.ts'],
          environment: 'node',
          testTimeout: 60_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      },
      ...transports.map((t) => ({
        extends: true,
        test: {
          name: `conformance:${t}`,
          include: ['integration-tests/src/**/*.test.ts'],
          // The transport contract suite has its own projects (below).
          exclude: [...configDefaults.exclude, 'integration-tests/src/contract/**'],
          environment: 'node',
          env: { OMNIBUS_TRANSPORT: t },
          globalSetup: ['integration-tests/src/global-setup.ts'],
          testTimeout: 90_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      })),
      // The transport contract suite: the Transport interface itself, below the bus, on every transport.
      ...transports.map((t) => ({
        extends: true,
        test: {
          name: `contract:${t}`,
          include: ['integration-tests/src/contract/**/*.test.ts'],
          environment: 'node',
          env: { OMNIBUS_TRANSPORT: t },
          globalSetup: ['integration-tests/src/global-setup.ts'],
          testTimeout: 60_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      })),
    ],
  },
});
