import { configDefaults, defineConfig } from 'vitest/config';

// Tests run against TypeScript sources (the `omnibus-source` export condition), so no build is needed.
const resolve = { conditions: ['omnibus-source', 'import', 'node', 'default'] };
const transports = ['memory', 'rabbitmq', 'kafka', 'sqs', 'sns', 'nats'] as const;
// SNS mode: transports find the endpoint in the SDK's standard variable; the local fauxqs unless set.
const extraEnv: Record<string, Record<string, string>> = {
  sns: { AWS_ENDPOINT_URL: process.env.AWS_ENDPOINT_URL ?? 'http://127.0.0.1:4566' },
};
// The 3-node clusters of scripts/brokers/: run only when asked (`pnpm test:clusters`), never by `pnpm test`.
const clusters = ['rabbitmq-cluster', 'kafka-cluster'] as const;
const clusterOnly = 'integration-tests/src/cluster/**/*.test.ts';
// The TLS brokers of scripts/brokers/ (rabbitmq-tls, kafka-tls): the conformance suite over amqps, over Kafka's
// SSL listener and over its SASL_SSL listener, plus the TLS checks (verification, warnings, credentials).
const tlsVariants = ['rabbitmq-tls', 'kafka-tls', 'kafka-sasl'] as const;
const tlsOnly = 'integration-tests/src/tls/**/*.test.ts';
const tlsTests = (t: string) => `integration-tests/src/tls/${t}.test.ts`;

export default defineConfig({
  resolve,
  // Vitest hands the SSR conditions to the worker's Node as --conditions flags, where 'import' would make
  // every require() in CommonJS packages take the ESM branch (pg's require('pg-pool') then gets a module
  // namespace instead of the class). Vite adds 'import' to ESM imports by itself.
  ssr: {
    resolve: {
      conditions: resolve.conditions.filter((c) => c !== 'import'),
      externalConditions: ['omnibus-source'],
    },
  },
  test: {
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['packages/*/src/**/*.test.ts', 'reliability/src/**/*.test.ts'],
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
          exclude: [
            ...configDefaults.exclude,
            'integration-tests/src/contract/**',
            'integration-tests/src/cli/**',
            clusterOnly,
            tlsOnly,
          ],
          environment: 'node',
          env: { OMNIBUS_TRANSPORT: t, ...extraEnv[t] },
          globalSetup: ['integration-tests/src/global-setup.ts'],
          testTimeout: 90_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      })),
      // The omnibus CLI, spawned as built (`pnpm build` first) against RabbitMQ, SQS (ElasticMQ), Kafka and NATS.
      {
        extends: true,
        test: {
          name: 'cli',
          include: ['integration-tests/src/cli/**/*.test.ts'],
          // The console's browser tests are their own project (below).
          exclude: [...configDefaults.exclude, 'integration-tests/src/cli/console*.test.ts'],
          environment: 'node',
          testTimeout: 240_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      },
      // `omnibus console`, spawned as built, driven in Debian's chromium against RabbitMQ, SQS, Kafka and NATS.
      {
        extends: true,
        test: {
          name: 'console',
          include: ['integration-tests/src/cli/console*.test.ts'],
          environment: 'node',
          testTimeout: 240_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      },
      // The transport contract suite: the Transport interface itself, below the bus, on every transport.
      ...transports.map((t) => ({
        extends: true,
        test: {
          name: `contract:${t}`,
          include: ['integration-tests/src/contract/**/*.test.ts'],
          environment: 'node',
          env: { OMNIBUS_TRANSPORT: t, ...extraEnv[t] },
          globalSetup: ['integration-tests/src/global-setup.ts'],
          testTimeout: 60_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      })),
      ...tlsVariants.map((t) => ({
        extends: true,
        test: {
          name: `conformance:${t}`,
          include: ['integration-tests/src/conformance.test.ts', tlsTests(t)],
          environment: 'node',
          env: { OMNIBUS_TRANSPORT: t },
          testTimeout: 90_000,
          hookTimeout: 300_000,
          fileParallelism: false,
        },
      })),
      ...clusters.map((t) => ({
        extends: true,
        test: {
          name: `conformance:${t}`,
          include: ['integration-tests/src/conformance.test.ts', clusterOnly],
          // `<scenario>.<cluster>.test.ts` is about one cluster's broker and runs only in that project.
          exclude: [
            ...configDefaults.exclude,
            ...clusters.filter((c) => c !== t).map((c) => `integration-tests/src/cluster/**/*.${c}.test.ts`),
          ],
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
