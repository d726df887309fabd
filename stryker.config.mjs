// Mutation testing of the failure policy and the idempotency claim: `pnpm mutation` (= `stryker run`);
// the decision alone: `pnpm exec stryker run --mutate packages/core/src/policy.ts`.
// Reports go to reports/mutation/ (git-ignored).
/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  packageManager: 'pnpm',
  // pnpm keeps @stryker-mutator/core apart from its siblings, so the runner plugin is named explicitly.
  plugins: ['@stryker-mutator/vitest-runner'],
  testRunner: 'vitest',
  vitest: {
    // Only the core's unit tests (packages/core/src/**/*.test.ts): no broker, fast enough per mutant.
    configFile: 'vitest.mutation.config.ts',
    related: false,
  },
  mutate: [
    'packages/core/src/policy.ts',
    'packages/core/src/consumer.ts',
    'packages/core/src/idempotency.ts',
    'packages/core/src/circuit-breaker.ts',
    'packages/core/src/backoff.ts',
    'packages/core/src/deadline.ts',
  ],
  // The sandbox needs only the root configs and packages/core; never mutate in place (others run tests here).
  ignorePatterns: [
    'bench',
    'examples',
    'scripts',
    'integration-tests',
    'packages/rabbitmq',
    'packages/kafka',
    'packages/sqs',
    '**/dist',
    'reports',
  ],
  coverageAnalysis: 'perTest',
  concurrency: 2,
  // Tests wait for conditions with deadlines; a busy 2-core machine needs slack before calling a mutant a timeout.
  timeoutMS: 10_000,
  reporters: ['clear-text', 'progress', 'html', 'json'],
  htmlReporter: { fileName: 'reports/mutation/mutation.html' },
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  tempDirName: '.stryker-tmp',
  cleanTempDir: 'always',
  thresholds: { high: 90, low: 80, break: null },
};
