/**
 * connect() to a Kafka that does not answer fails within `connectTimeoutMs` with a ConnectionError, and
 * leaves nothing behind: kafkajs's own retries would otherwise keep a process alive for over a minute.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ConnectionError, ErrorCode } from '@omnibus/core';
import { describe, expect, it } from 'vitest';
import { KafkaTransport } from '../src/index.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/connect-unreachable.ts', import.meta.url));
const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const silent = { debug() {}, info() {}, warn() {}, error() {} };

describe('kafka connect deadline', () => {
  it('fails within connectTimeoutMs with a ConnectionError that names the brokers', async () => {
    const t = new KafkaTransport({ brokers: ['127.0.0.1:1'], connectTimeoutMs: 1_000 });
    const started = Date.now();
    const err = await t.connect({ logger: silent, service: 'x' }).catch((e: unknown) => e);
    const elapsed = Date.now() - started;
    expect(err).toBeInstanceOf(ConnectionError);
    expect((err as ConnectionError).code).toBe(ErrorCode.CONNECTION);
    expect((err as Error).message).toMatch(/kafka at 127\.0\.0\.1:1 within 1000 ms/);
    expect(elapsed).toBeGreaterThanOrEqual(950);
    expect(elapsed).toBeLessThan(2_500);
  });

  it('leaves no timer or socket behind: a process that only failed to connect exits by itself', async () => {
    const started = Date.now();
    const child = spawn(
      process.execPath,
      ['--conditions=omnibus-source', '--import', 'tsx', FIXTURE, '1000'],
      {
        cwd: REPO,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    let errText = '';
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
    });
    child.stderr.on('data', (b: Buffer) => {
      errText += b.toString();
    });
    // kafkajs's default retries alone would keep it alive for 60 s or more. The budget is generous because
    // starting Node with tsx compiling the sources takes several seconds on a busy machine.
    const code = await new Promise<number | null | 'still running'>((resolve) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        resolve('still running');
      }, 25_000);
      child.on('exit', (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    expect(code, errText).toBe(0);
    const result = JSON.parse(out.trim().split('\n').pop() ?? '{}') as Record<string, unknown>;
    expect(result).toMatchObject({ name: 'ConnectionError', code: ErrorCode.CONNECTION });
    expect(result.elapsedMs as number).toBeLessThan(2_500);
    // Process start-up included; the point is seconds, not a minute.
    expect(Date.now() - started).toBeLessThan(25_000);
  });
});
