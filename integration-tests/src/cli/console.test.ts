/**
 * `omnibus console` end to end: the built binary spawned as its own process against a real broker, the page
 * driven in Debian's chromium through playwright-core. A real Omnibus consumer dead-letters messages; the
 * page finds them, shows them escaped and redacted, redrives one (the consumer handles it) and purges the
 * rest after typed confirmation; without the token the page and the API refuse.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Bus, connect, NonRetryableError } from '@omnibus/core';
import { eventually } from '@omnibus/core/testing';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AMQP_URL, OPS_BROKERS } from './brokers.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BIN = `${ROOT}packages/cli/dist/bin.js`;
const RESULTS = `${ROOT}integration-tests/results`;
const CHROMIUM = '/usr/bin/chromium';

const brokers = OPS_BROKERS;

const FAILING = 'console.order';
/** A payload that would run script and leak secrets if the page inserted it as HTML or unredacted. */
const HOSTILE = {
  note: '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">',
  password: 'hunter2-in-payload',
  dsn: 'postgres://app:s3cr3t-dsn@db.internal/orders',
};

interface RunningConsole {
  child: ChildProcess;
  url: string;
  origin: string;
  token: string;
  output: () => string;
}

/** Spawns `omnibus console` and resolves once it printed its URL. */
async function startConsole(url: string, watch: string): Promise<RunningConsole> {
  const child = spawn(process.execPath, [BIN, '--url', url, 'console', '--port', '0', '--watch', watch], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => {
    out += String(d);
  });
  child.stderr!.on('data', (d) => {
    out += String(d);
  });
  await eventually(
    () => {
      if (child.exitCode !== null) throw new Error(`omnibus console exited ${child.exitCode}: ${out}`);
      return /open http:\/\/\S+#token=\S+/.test(out);
    },
    { timeoutMs: 60_000, what: `omnibus console to print its URL (so far: ${out})` },
  );
  const pageUrl = /open (http:\/\/\S+)/.exec(out)![1]!;
  const [origin, token] = pageUrl.split('/#token=') as [string, string];
  return { child, url: pageUrl, origin, token, output: () => out };
}

/** GET with a chosen Host header (fetch always sends the URL's own). */
function statusWithHost(url: string, host: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers: { ...headers, host } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

let browser: BrowserContext;
let profile: string;

beforeAll(async () => {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run \`pnpm build\` before the console tests`);
  if (!existsSync(CHROMIUM))
    throw new Error(
      `${CHROMIUM} is missing: the console tests drive Debian's chromium (install it with \`apt-get install -y chromium\`)`,
    );
  mkdirSync(RESULTS, { recursive: true });
  profile = mkdtempSync(join(tmpdir(), 'omnibus-console-chromium-'));
  // A fresh profile each run (playwright takes it as the persistent context's directory, not as an arg).
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    // playwright-core adds its own headless switches; these keep chromium off the (closed) network.
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    timeout: 60_000,
  });
});

afterAll(async () => {
  await browser?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

describe('omnibus console options', () => {
  it('refuses a non-loopback --host without --allow-remote, and warns with it', async () => {
    const refused = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        [BIN, '--url', AMQP_URL, 'console', '--host', '0.0.0.0', '--port', '0'],
        { cwd: ROOT, timeout: 60_000 },
        (err, _stdout, stderr) => resolve({ code: err ? (err.code as number) : 0, stderr }),
      );
    });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('pass --allow-remote');
    expect(refused.stderr).not.toContain('guest:guest');

    const child = spawn(
      process.execPath,
      [BIN, '--url', AMQP_URL, 'console', '--host', '0.0.0.0', '--port', '0', '--allow-remote'],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout!.on('data', (d) => {
      out += String(d);
    });
    child.stderr!.on('data', (d) => {
      out += String(d);
    });
    try {
      await eventually(() => /#token=/.test(out), { timeoutMs: 60_000, what: 'the console to start' });
      expect(out).toContain('warning: the console listens on 0.0.0.0');
      const [origin] = /http:\/\/\S+(?=\/#token=)/.exec(out)!;
      // The token still guards it.
      expect((await fetch(`${origin}/api/overview`)).status).toBe(401);
    } finally {
      await stop(child);
    }
    expect(child.exitCode).toBe(0);
  });
});

describe.each(brokers)('omnibus console on $name', (broker) => {
  const topic = `console-${broker.name}-${randomBytes(4).toString('hex')}`;
  const group = 'billing';
  let bus: Bus;
  let running: RunningConsole | undefined;
  const handled: string[] = [];
  let failing = true;

  beforeAll(async () => {
    bus = await connect({ transport: broker.create(), service: 'console-test', drainTimeoutMs: 5_000 });
    // A real consumer: it fails every message (straight to dead-letter) until the test heals it.
    await bus.subscribe({
      topic,
      group,
      handlers: {
        [FAILING]: async (_data, ctx) => {
          if (failing) throw new NonRetryableError(`card declined for ${ctx.envelope.id}`);
          handled.push(ctx.envelope.id);
        },
      },
      retry: { attempts: 1 },
      startFrom: 'earliest',
    });
  });

  afterAll(async () => {
    if (running) await stop(running.child);
    await bus?.close({ drainTimeoutMs: 5_000 }).catch(() => {});
    await broker.cleanup(topic, group).catch(() => {});
  });

  it('refuses without the token, then finds, shows, redrives and purges dead letters in chromium', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const sent = await bus.publish(
        topic,
        { type: FAILING, data: { n: i, ...HOSTILE } },
        { headers: { authorization: 'Bearer hunter2-header', 'x-tenant': 'acme' } },
      );
      ids.push(sent.id);
    }
    await eventually(async () => (await bus.stats(topic, group)).deadLettered === 3, {
      timeoutMs: 90_000,
      what: '3 dead letters',
    });

    running = await startConsole(broker.url, `${topic}/${group}`);
    const { origin, token } = running;
    expect(running.output()).not.toContain('omnibus:omnibus@');
    expect(running.output()).not.toContain('guest:guest@');

    // Without the token: every API call is 401, with a wrong one too; the page shows only the refusal.
    const api = `${origin}/api/dead-letters?topic=${topic}&group=${group}`;
    expect((await fetch(api)).status).toBe(401);
    expect((await fetch(`${origin}/api/overview`)).status).toBe(401);
    expect((await fetch(api, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
    const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
      fetch(`${origin}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', origin, ...headers },
        body: JSON.stringify(body),
      });
    expect((await post('/api/redrive', { topic, group, all: true })).status).toBe(401);
    expect((await post('/api/login', { token: 'wrong' })).status).toBe(401);
    const bearer = { authorization: `Bearer ${token}` };
    // With the token but from another site (CSRF) or another Host name (DNS rebinding): refused.
    expect(
      (await post('/api/redrive', { topic, group, all: true }, { ...bearer, origin: 'http://evil.example' }))
        .status,
    ).toBe(403);
    expect(await statusWithHost(api, 'evil.example', bearer)).toBe(421);
    expect(await statusWithHost(`${origin}/`, 'evil.example', {})).toBe(421);
    // Purge needs the exact confirmation text.
    const unconfirmed = await post(
      '/api/purge',
      { topic, group, source: 'dead-letter', confirm: 'yes' },
      bearer,
    );
    expect(unconfirmed.status).toBe(400);
    expect(((await unconfirmed.json()) as { error: string }).error).toContain(
      `${topic}/${group}/dead-letter`,
    );
    expect((await bus.stats(topic, group)).deadLettered).toBe(3);

    const denied = await browser.newPage();
    const deniedStatuses: number[] = [];
    denied.on('response', (r) => {
      if (r.url().includes('/api/')) deniedStatuses.push(r.status());
    });
    await denied.goto(`${origin}/`);
    await denied.getByText('Access token required').waitFor({ timeout: 30_000 });
    expect(deniedStatuses).toContain(401);
    expect(await denied.locator('#groups tbody tr').count()).toBe(0);
    await denied.close();

    // With the token: the group and its dead letters.
    const page: Page = await browser.newPage();
    await page.setViewportSize({ width: 1280, height: 1000 });
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(running.url);
    const row = page.locator(`#groups tr[data-group="${topic}/${group}"]`);
    await row.waitFor({ timeout: 30_000 });
    // The token left the address bar once it was traded for the session cookie.
    expect(page.url()).not.toContain(token);
    await expect.poll(() => row.locator('td.dead').textContent(), { timeout: 30_000 }).toBe('3');
    await row.getByRole('button', { name: 'Dead letters' }).click();
    const dlRows = page.locator('#dead-letters tbody tr');
    await expect.poll(() => dlRows.count(), { timeout: 30_000 }).toBe(3);
    const first = page.locator(`#dead-letters tr[data-id="${ids[0]}"]`);
    expect(await first.locator('td.reason').textContent()).toBe('non-retryable');
    expect(await first.locator('td.error-text').textContent()).toContain(`card declined for ${ids[0]}`);

    await first.getByRole('button', { name: 'Show' }).click();
    const payload = (await page.locator('#detail-payload').textContent()) ?? '';
    // Shown as text, never run: the script and the image handler are characters on the page.
    expect(payload).toContain('<script>window.__pwned = 1</script>');
    expect(payload).toContain('onerror=');
    expect(await page.evaluate('globalThis.__pwned')).toBeUndefined();
    expect(await page.locator('#detail script, #detail img').count()).toBe(0);
    // Secrets masked in the payload and the headers, by the core's redaction rules.
    expect(payload).toContain('"password": "***"');
    expect(payload).toContain('postgres://app:***@db.internal/orders');
    const headers = (await page.locator('#detail-headers').textContent()) ?? '';
    expect(headers).toContain('"authorization": "***"');
    expect(headers).toContain('"x-tenant": "acme"');
    const whole = await page.content();
    for (const secret of ['hunter2', 's3cr3t-dsn']) expect(whole).not.toContain(secret);

    // The chart draws the group's dead letters over time: 3, the largest value, so the top of the plot.
    await page.locator('#metric').selectOption('deadLettered');
    const line = page.locator(`#chart path[data-series="${topic}/${group}"]`);
    await line.waitFor({ state: 'attached', timeout: 30_000 });
    await expect
      .poll(async () => (await line.getAttribute('d')) ?? '', { timeout: 30_000 })
      .toMatch(/^M48\.0,12\.0 L\d/);
    await page.screenshot({ path: `${RESULTS}/console-${broker.name}.png`, fullPage: true });

    // Redrive one selected dead letter: the consumer, healed, handles it.
    failing = false;
    await first.getByRole('checkbox').check();
    await page.getByRole('button', { name: 'Redrive selected (1)' }).click();
    await expect.poll(() => page.locator('#confirm-text').textContent()).toContain('Redrive 1 selected');
    await page.locator('#confirm-ok').click();
    await eventually(() => handled.includes(ids[0]!), {
      timeoutMs: 60_000,
      what: 'the consumer to handle the redriven message',
    });
    await expect
      .poll(() => page.locator('#dlq-result').textContent(), { timeout: 30_000 })
      .toMatch(/^redriven 1 of/);
    await expect.poll(() => dlRows.count(), { timeout: 30_000 }).toBe(2);
    expect(handled).toEqual([ids[0]]);

    // Purge asks first: cancelling keeps everything; Confirm stays disabled until the exact text is typed.
    await page.getByRole('button', { name: 'Purge dead letters…' }).click();
    await expect
      .poll(() => page.locator('#confirm-expected').textContent())
      .toBe(`${topic}/${group}/dead-letter`);
    expect(await page.locator('#confirm-ok').isDisabled()).toBe(true);
    await page.locator('#confirm-cancel').click();
    await expect.poll(() => page.locator('#dlq-result').textContent()).toBe('purge cancelled');
    expect((await bus.stats(topic, group)).deadLettered).toBe(2);

    await page.getByRole('button', { name: 'Purge dead letters…' }).click();
    await page.locator('#confirm-input').fill(`${topic}/${group}`);
    expect(await page.locator('#confirm-ok').isDisabled()).toBe(true);
    await page.locator('#confirm-input').fill(`${topic}/${group}/dead-letter`);
    expect(await page.locator('#confirm-ok').isDisabled()).toBe(false);
    await page.locator('#confirm-ok').click();
    await expect
      .poll(() => page.locator('#dlq-result').textContent(), { timeout: 30_000 })
      .toMatch(/^purged /);
    await page.locator('#dlq-empty').waitFor({ state: 'visible', timeout: 30_000 });
    await eventually(async () => (await bus.stats(topic, group)).deadLettered === 0, {
      timeoutMs: 60_000,
      what: 'the dead letters to be gone from the broker',
    });
    // The purged messages never reached the consumer.
    expect(handled).toEqual([ids[0]]);
    expect(pageErrors).toEqual([]);
    await page.close();
  });
});
