import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { findLeaks } from './secrets.js';

describe('findLeaks', () => {
  let dir: string;
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('finds a secret as given, percent-encoded and in base64, in the logs of one broker only', () => {
    dir = mkdtempSync(join(tmpdir(), 'omnibus-leaks-'));
    const password = 'p@ss/word+42';
    writeFileSync(
      join(dir, 'rabbitmq-kill-consumer1.log'),
      `ok\nconnect amqp://chaos:${encodeURIComponent(password)}@h\n`,
    );
    writeFileSync(
      join(dir, 'rabbitmq-kill-producer1.log'),
      `Authorization: Basic ${Buffer.from(password).toString('base64')}\n`,
    );
    writeFileSync(join(dir, 'rabbitmq-kill-nemesis.log'), `raw ${password}\nclean line\n`);
    writeFileSync(join(dir, 'kafka-kill-consumer1.log'), `${password}\n`);
    expect(findLeaks(dir, 'rabbitmq-', { 'RabbitMQ password': password })).toEqual([
      { file: 'rabbitmq-kill-consumer1.log', line: 2, secret: 'RabbitMQ password' },
      { file: 'rabbitmq-kill-nemesis.log', line: 1, secret: 'RabbitMQ password' },
      { file: 'rabbitmq-kill-producer1.log', line: 1, secret: 'RabbitMQ password' },
    ]);
  });

  it('reports nothing for clean logs, and refuses a secret too short to search for', () => {
    dir = mkdtempSync(join(tmpdir(), 'omnibus-leaks-'));
    writeFileSync(join(dir, 'sqs-pause-consumer1.log'), 'connection refused\nreconnected\n');
    expect(findLeaks(dir, 'sqs-', { 'AWS secret key': 'a-long-random-secret' })).toEqual([]);
    expect(() => findLeaks(dir, 'sqs-', { guest: 'guest' })).toThrow(/too short/);
  });
});
