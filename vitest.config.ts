import { configDefaults, defineConfig } from 'vitest/config';

// Tests run against TypeScript sources (the `omnibus-source` export condition), so no build is needed.
const resolve = { conditions: ['omnibus-source', 'import', 'node', 'default'] };
const transports = ['memory', 'rabbitmq', 'kafka', 'sqs'] as const;
// The 3-node clusters of scripts/brokers/: run only when asked (`pnpm test:clusters`), never by `pnpm test`.
const clusters = ['rabbitmq-cluster', 'kafka-cluster'] as const;
const clusterOnly = 'integration-tests/src/cluster/**/*.test.ts';

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
          exclude: [...configDefaults.exclude, clusterOnly],
          environment: 'node',
          env: { OMNIBUS_TRANSPORT: t },
          globalSetup: ['integration-tests/src/global-setup.ts'],
          testTimeout: 90_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      })),
      ...clusters.map((t) => ({
        extends: true,
        test: {
          name: `conformance:${t}`,
          include: ['integration-tests/src/conformance.test.ts', clusterOnly],
          environment: 'node',
          env: { OMNIBUS_TRANSPORT: t },
          // Nodes are stopped, killed and started inside tests: minutes under load on 2 cores.
          testTimeout: 600_000,
          hookTimeout: 600_000,
          fileParallelism: false,
        },
      })),
    ],
  },
});
