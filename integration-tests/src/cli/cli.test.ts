/**
 * The `omnibus` CLI as a user runs it: the built binary (`node packages/cli/dist/bin.js`, so `pnpm build`
 * first) against real brokers. Messages are dead-lettered by a real Omnibus consumer, then listed, shown,
 * redriven and purged from the command line; one redrive is SIGKILLed midway and every id is counted.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type Bus, connect, type MessageContext, NonRetryableError, type Subscription } from '@omnibus/core';
import { eventually } from '@omnibus/core/testing';
import { transportFromUrl as kafkaFromUrl } from '@omnibus/kafka';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AMQP_URL, KAFKA_URL, OPS_BROKERS, type OpsBroker } from './brokers.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BIN = `${ROOT}packages/cli/dist/bin.js`;

interface Broker extends OpsBroker {
  /** How long the messages a killed redrive had in hand may stay out of sight. */
  settleMs: number;
}

const SETTLE_MS: Record<string, number> = {
  rabbitmq: 30_000,
  // SQS hides a killed redrive's messages in hand until their visibility (30 s) runs out.
  sqs: 90_000,
  kafka: 60_000,
  // Nothing is hidden by a killed redrive: a dead letter is in the stream until deleted.
  nats: 30_000,
};
const brokers: Broker[] = OPS_BROKERS.map((b) => ({ ...b, settleMs: SETTLE_MS[b.name]! }));

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(url: string | undefined, args: string[]): Promise<CliResult> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.OMNIBUS_URL;
  if (url !== undefined) env.OMNIBUS_URL = url;
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { cwd: ROOT, env, timeout: 120_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

const Failing = 'cli.failing';

/** A real consumer that dead-letters every message while `failing`, and records what it handled after. */
async function consumer(bus: Bus, topic: string, group: string, failing: boolean) {
  const handled: string[] = [];
  const fail = async (_data: unknown, ctx: MessageContext) => {
    if (failing) throw new NonRetryableError(`cannot charge card for ${ctx.envelope.id}`);
    handled.push(ctx.envelope.id);
  };
  const sub: Subscription = await bus.subscribe({
    topic,
    group,
    handlers: { [Failing]: fail, 'cli.other': fail },
    retry: { attempts: 1 },
    startFrom: 'earliest',
  });
  return { handled, sub };
}

beforeAll(() => {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run \`pnpm build\` before the CLI tests`);
});

describe('omnibus CLI usage errors', () => {
  it('exits 2 without a URL, with a bad URL, and on unknown options; never prints credentials', async () => {
    const none = await cli(undefined, ['stats']);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('pass --url or set OMNIBUS_URL');
    const bad = await cli('ftp://user:hunter2@host', ['stats']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).not.toContain('hunter2');
    const unknown = await cli(AMQP_URL, ['dlq', 'list', '--topic', 'x']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('--group');
    const refused = await cli('amqp://guest:hunter2@127.0.0.1:1', ['peek', '-t', 'x', '-g', 'y']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^omnibus: .*ECONNREFUSED/);
    expect(refused.stderr).not.toContain('hunter2');
    expect(refused.stderr).not.toContain('    at ');
  });
});

describe.each(brokers)('omnibus CLI on $name', (broker) => {
  const buses: Bus[] = [];
  const made: [string, string][] = [];
  const children: ChildProcess[] = [];
  async function bus(): Promise<Bus> {
    const b = await connect({ transport: broker.create(), service: 'cli-test', drainTimeoutMs: 5_000 });
    buses.push(b);
    return b;
  }
  function names(label: string): [string, string] {
    const pair: [string, string] = [`cli-${label}-${randomBytes(4).toString('hex')}`, 'billing'];
    made.push(pair);
    return pair;
  }
  afterEach(async () => {
    for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
    await Promise.all(buses.splice(0).map((b) => b.close({ drainTimeoutMs: 5_000 }).catch(() => {})));
  });
  afterAll(async () => {
    for (const [topic, group] of made) await broker.cleanup(topic, group).catch(() => {});
  });

  it('lists, shows, redrives by type and purges dead letters made by a real consumer', async () => {
    const [topic, group] = names('dlq');
    const b = await bus();
    const failing = await consumer(b, topic, group, true);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await b.publish(topic, { type: Failing, data: { n: i } })).id);
    const other = (await b.publish(topic, { type: 'cli.other', data: { n: 9 } })).id;
    await eventually(async () => (await b.stats(topic, group)).deadLettered === 4, {
      timeoutMs: 60_000,
      what: '4 dead letters',
    });
    await failing.sub.close();

    const list = await cli(broker.url, ['--json', 'dlq', 'list', '-t', topic, '-g', group]);
    expect(list.code, list.stderr).toBe(0);
    const listed = JSON.parse(list.stdout) as {
      id: string;
      deadLetter: { reason: string; attempts: number; error: string };
    }[];
    expect(listed.map((m) => m.id).sort()).toEqual([...ids, other].sort());
    for (const m of listed) {
      expect(m.deadLetter.reason).toBe('non-retryable');
      expect(m.deadLetter.attempts).toBe(1);
      expect(m.deadLetter.error).toContain(`cannot charge card for ${m.id}`);
    }
    const table = await cli(broker.url, ['dlq', 'list', '-t', topic, '-g', group]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^ID\s+TYPE\s+REASON/);
    expect(table.stdout).toContain(other);

    const show = await cli(broker.url, ['dlq', 'show', ids[1]!, '-t', topic, '-g', group]);
    expect(show.code, show.stderr).toBe(0);
    expect(show.stdout).toContain('reason:        non-retryable');
    expect(show.stdout).toContain('"n": 1');
    const missing = await cli(broker.url, ['dlq', 'show', 'no-such-id', '-t', topic, '-g', group]);
    expect(missing.code).toBe(1);

    // A listing or show consumed nothing.
    expect((await b.stats(topic, group)).deadLettered).toBe(4);

    const noFilter = await cli(broker.url, ['dlq', 'redrive', '-t', topic, '-g', group]);
    expect(noFilter.code).toBe(2);
    const healed = await consumer(b, topic, group, false);
    const redrive = await cli(broker.url, [
      '--json',
      'dlq',
      'redrive',
      '-t',
      topic,
      '-g',
      group,
      '--type',
      'cli.other',
    ]);
    expect(redrive.code, redrive.stderr).toBe(0);
    expect(JSON.parse(redrive.stdout)).toMatchObject({
      redriven: 1,
      scanned: 4,
      kept: 3,
      interrupted: false,
    });
    await eventually(() => healed.handled.includes(other), {
      timeoutMs: 60_000,
      what: 'the redriven message',
    });
    expect(healed.handled).toEqual([other]);
    await eventually(async () => (await b.stats(topic, group)).deadLettered === 3, { timeoutMs: 30_000 });

    const refused = await cli(broker.url, ['dlq', 'purge', '-t', topic, '-g', group, '--confirm', 'yes']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`${topic}/${group}/dead-letter`);
    expect((await b.stats(topic, group)).deadLettered).toBe(3);
    const purge = await cli(broker.url, [
      '--json',
      'dlq',
      'purge',
      '-t',
      topic,
      '-g',
      group,
      '--confirm',
      `${topic}/${group}/dead-letter`,
    ]);
    expect(purge.code, purge.stderr).toBe(0);
    expect(JSON.parse(purge.stdout).purged).toBe(3);
    await eventually(async () => (await b.stats(topic, group)).deadLettered === 0, { timeoutMs: 30_000 });
    expect(healed.handled).toEqual([other]);

    const stats = await cli(broker.url, ['--json', 'stats', '-t', topic, '-g', group]);
    expect(stats.code, stats.stderr).toBe(0);
    expect(JSON.parse(stats.stdout)[0]).toMatchObject({ topic, group, stats: { deadLettered: 0 } });
  }, 240_000);

  it('a redrive SIGKILLed midway loses nothing: every id is in the dead letters or back in the group', async () => {
    const [topic, group] = names('kill');
    const total = 40;
    const b = await bus();
    const failing = await consumer(b, topic, group, true);
    const ids = new Set<string>();
    for (let i = 0; i < total; i++) ids.add((await b.publish(topic, { type: Failing, data: { n: i } })).id);
    await eventually(async () => (await b.stats(topic, group)).deadLettered === total, {
      timeoutMs: 90_000,
      what: `${total} dead letters`,
    });
    await failing.sub.close();

    const env = { ...process.env, OMNIBUS_URL: broker.url };
    const child = spawn(
      process.execPath,
      [BIN, 'dlq', 'redrive', '-t', topic, '-g', group, '--all', '--rate', '10'],
      {
        cwd: ROOT,
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    children.push(child);
    const exited = new Promise<NodeJS.Signals | null>((r) => child.on('exit', (_code, signal) => r(signal)));
    // Under way: copies are back with the group (its queue; on Kafka its retry tier, on NATS its retry
    // subject), and no consumer runs meanwhile to take them away.
    await eventually(
      async () => {
        const s = await b.stats(topic, group);
        return (s.depth ?? 0) + (s.delayed ?? 0) >= 3;
      },
      { timeoutMs: 90_000, intervalMs: 50, what: 'the redrive to be under way' },
    );
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    const leftAtKill = (await b.stats(topic, group)).deadLettered ?? 0;
    expect(leftAtKill).toBeGreaterThan(0);

    // Count: every id is handled (it was back in the group) or still a dead letter. None is lost.
    const healed = await consumer(b, topic, group, false);
    const deadIds = async () => {
      const r = await cli(broker.url, ['--json', 'dlq', 'list', '-t', topic, '-g', group, '--limit', '1000']);
      if (r.code !== 0) throw new Error(r.stderr);
      return new Set((JSON.parse(r.stdout) as { id: string }[]).map((m) => m.id));
    };
    let dead = new Set<string>();
    await eventually(
      async () => {
        dead = await deadIds();
        return [...ids].every((id) => dead.has(id) || healed.handled.includes(id));
      },
      { timeoutMs: broker.settleMs, intervalMs: 1000, what: 'every id in the dead letters or handled' },
    );
    const back = new Set(healed.handled);
    expect([...back].every((id) => ids.has(id))).toBe(true);
    expect([...dead].every((id) => ids.has(id))).toBe(true);
    expect(back.size).toBeGreaterThan(0);
    expect(dead.size).toBeGreaterThan(0);

    // Finishing the redrive brings the rest back; at least once: the id in hand at the kill may come twice.
    const rest = await cli(broker.url, ['--json', 'dlq', 'redrive', '-t', topic, '-g', group, '--all']);
    expect(rest.code, rest.stderr).toBe(0);
    await eventually(() => [...ids].every((id) => healed.handled.includes(id)), {
      timeoutMs: 90_000,
      what: 'every id handled',
    });
    await eventually(async () => (await b.stats(topic, group)).deadLettered === 0, { timeoutMs: 30_000 });
    const duplicates = healed.handled.length - ids.size;
    console.log(
      `${broker.name}: killed with ${leftAtKill} of ${total} dead letters left; ${back.size} were back in the group, ` +
        `${dead.size} still dead letters; after finishing ${ids.size} ids handled, ${duplicates} duplicate(s)`,
    );
    expect(duplicates).toBeLessThanOrEqual(10);
  }, 300_000);
});

describe('omnibus replay and tail', () => {
  const topics: string[] = [];
  const buses: Bus[] = [];
  afterAll(async () => {
    await Promise.all(buses.map((b) => b.close({ drainTimeoutMs: 2_000 }).catch(() => {})));
    const kafka = brokers.find((b) => b.name === 'kafka')!;
    for (const t of topics) await kafka.cleanup(t, 'none').catch(() => {});
  });

  it('prints Kafka history from a time and then new messages as they come, taking nothing from any group', async () => {
    const topic = `cli-replay-${randomBytes(4).toString('hex')}`;
    topics.push(topic);
    const b = await connect({ transport: kafkaFromUrl(KAFKA_URL), service: 'cli-test' });
    buses.push(b);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await b.publish(topic, { type: 'cli.history', data: { i } })).id);

    const replay = await cli(KAFKA_URL, ['--json', 'replay', '-t', topic, '--from', '10m', '--limit', '3']);
    expect(replay.code, replay.stderr).toBe(0);
    const lines = replay.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { id: string; data: { i: number } });
    // Order holds per partition (per key), not across the topic's partitions.
    expect(lines.map((l) => l.id).sort()).toEqual([...ids].sort());
    expect(lines.map((l) => l.data.i).sort()).toEqual([0, 1, 2]);

    // tail reads from the end: keep publishing until it has printed one of the new messages.
    const tail = cli(KAFKA_URL, ['--json', 'tail', '-t', topic, '--limit', '1', '--timeout-ms', '90000']);
    let done = false;
    void tail.then(() => {
      done = true;
    });
    const fresh = new Set<string>();
    while (!done) {
      fresh.add((await b.publish(topic, { type: 'cli.live', data: {} })).id);
      await new Promise((r) => setTimeout(r, 500));
    }
    const printed = await tail;
    expect(printed.code, printed.stderr).toBe(0);
    const seen = JSON.parse(printed.stdout.trim()) as { id: string; type: string };
    expect(seen.type).toBe('cli.live');
    expect(fresh.has(seen.id)).toBe(true);
  }, 180_000);

  it('exits 1 with UnsupportedError where the broker keeps no history (RabbitMQ without streams)', async () => {
    const r = await cli(AMQP_URL, ['replay', '-t', 'cli-none', '--from', '1h']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^omnibus: rabbitmq cannot replay history/);
  });
});
