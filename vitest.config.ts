import { defineConfig } from 'vitest/config';

// Tests run against TypeScript sources (the `omnibus-source` export condition), so no build is needed.
const resolve = { conditions: ['omnibus-source', 'import', 'node', 'default'] };
const transports = ['memory', 'rabbitmq', 'kafka', 'sqs', 'sns'] as const;
// SNS mode: transports find the endpoint in the SDK's standard variable; the local fauxqs unless set.
const extraEnv: Record<string, Record<string, string>> = {
  sns: { AWS_ENDPOINT_URL: process.env.AWS_ENDPOINT_URL ?? 'http://127.0.0.1:4566' },
};

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
          environment: 'node',
          env: { OMNIBUS_TRANSPORT: t, ...extraEnv[t] },
          globalSetup: ['integration-tests/src/global-setup.ts'],
          testTimeout: 90_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      })),
    ],
  },
});
