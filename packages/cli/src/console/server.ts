/**
 * The `omnibus console` web server: one static page and a small JSON API over `bus.operations`, on
 * loopback by default, behind a random access token, with state-changing calls guarded against CSRF.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import {
  type Bus,
  ConfigError,
  type GroupOverview,
  type GroupRef,
  isOmnibusError,
  purgeConfirmation,
  type RedriveFilter,
  redactText,
  UnsupportedError,
} from '@omnibus/core';
import { describeDeadLetter } from './view.js';

export interface ConsoleOptions {
  bus: Bus;
  /** Address to bind; 127.0.0.1 unless the user asked for another. */
  host: string;
  /** TCP port; 0 picks a free one. */
  port: number;
  /** Groups to show; when empty the transport lists them (RabbitMQ cannot: it needs these). */
  watch: GroupRef[];
  /** The transport URL as shown on the page, credentials already removed. */
  label: string;
  /** The access token; random when not given (tests may pass their own). */
  token?: string;
}

export interface RunningConsole {
  /** The page's address with the token in its fragment: what the user opens. */
  url: string;
  /** The page's address without the token. */
  origin: string;
  token: string;
  close(): Promise<void>;
}

const COOKIE = 'omnibus_console';
/** How many overview samples the chart keeps (at one per refresh, about half an hour at 5 s). */
const HISTORY_POINTS = 360;
/** Two page refreshes closer than this share one broker reading. */
const MIN_SAMPLE_GAP_MS = 1_000;
const MAX_BODY_BYTES = 64 * 1024;
const MAX_DEAD_LETTERS = 200;

const ASSETS: Record<string, string> = {
  '/': 'index.html',
  '/app.js': 'app.js',
  '/app.css': 'app.css',
};
const TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
};

/** The assets folder: beside this module in the sources, under console/ beside the bundled bin. */
function assetsDir(): string {
  for (const rel of ['./assets/', './console/assets/']) {
    const dir = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(`${dir}index.html`)) return dir;
  }
  throw new Error('the console page is missing from this install (assets/index.html not found)');
}

/** An HTTP error with the status it is answered with. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

interface GroupSample extends GroupOverview {
  error?: string;
}

interface Sample {
  atMs: number;
  groups: GroupSample[];
}

const EMPTY_STATS = {
  depth: null,
  inFlight: null,
  delayed: null,
  deadLettered: null,
  lag: null,
  oldestAgeMs: null,
  extras: {},
};

export async function startConsole(options: ConsoleOptions): Promise<RunningConsole> {
  const dir = assetsDir();
  const assets = new Map<string, { body: Buffer; type: string }>();
  for (const [path, file] of Object.entries(ASSETS)) {
    assets.set(path, { body: readFileSync(`${dir}${file}`), type: TYPES[file.split('.').pop()!]! });
  }
  const token = options.token ?? randomBytes(24).toString('base64url');
  const tokenHash = sha256(token);
  // Sessions the login handed out, as cookies; they live as long as this process.
  const sessions = new Set<string>();
  const history: Sample[] = [];
  let sampling: Promise<Sample> | undefined;
  const ops = options.bus.operations;

  // One group that cannot be read (not created yet, say) shows its error in its row; the others still show.
  const watched = async (g: GroupRef): Promise<GroupSample> => {
    try {
      return { ...g, stats: await ops.stats(g) };
    } catch (err) {
      return {
        ...g,
        stats: EMPTY_STATS,
        error: redactText(err instanceof Error ? err.message : String(err)),
      };
    }
  };

  const sample = async (): Promise<Sample> => {
    const last = history.at(-1);
    if (last && Date.now() - last.atMs < MIN_SAMPLE_GAP_MS) return last;
    // Concurrent page refreshes wait for the same reading instead of asking the broker twice.
    sampling ??= (async () => {
      try {
        const groups =
          options.watch.length > 0
            ? await Promise.all(options.watch.map(async (g) => watched(g)))
            : await ops.groups();
        const s = { atMs: Date.now(), groups };
        history.push(s);
        if (history.length > HISTORY_POINTS) history.shift();
        return s;
      } finally {
        sampling = undefined;
      }
    })();
    return sampling;
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => answerError(res, err));
  });

  let allowedHosts: Set<string> = new Set();
  const anyHost = options.host === '0.0.0.0' || options.host === '::';

  const authorized = (req: IncomingMessage): boolean => {
    const auth = req.headers.authorization;
    if (auth?.startsWith('Bearer ') && sameSecret(sha256(auth.slice(7)), tokenHash)) return true;
    const session = readCookie(req.headers.cookie, COOKIE);
    return session !== undefined && sessions.has(session);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    // A page on another site that resolves its own name to 127.0.0.1 (DNS rebinding) still sends its
    // own name as Host: only the names this server was opened under are served.
    // A wildcard bind (0.0.0.0, ::) has no one name to check: there the token alone guards it.
    if (!anyHost && !allowedHosts.has(req.headers.host ?? '')) throw new HttpError(421, 'unknown Host');
    const url = new URL(req.url ?? '/', 'http://console.invalid');
    const asset = assets.get(url.pathname);
    if (asset && req.method === 'GET') {
      // The page holds no data: it asks for the token (from the URL fragment) before it can read any.
      res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': asset.type });
      res.end(asset.body);
      return;
    }
    if (!url.pathname.startsWith('/api/')) throw new HttpError(404, 'not found');
    if (req.method === 'POST') checkOrigin(req, anyHost ? new Set([req.headers.host ?? '']) : allowedHosts);
    else if (req.method !== 'GET') throw new HttpError(405, 'method not allowed');

    if (url.pathname === '/api/login' && req.method === 'POST') {
      const body = await readJson(req);
      if (typeof body.token !== 'string' || !sameSecret(sha256(body.token), tokenHash))
        throw new HttpError(401, 'wrong access token');
      const session = randomBytes(24).toString('base64url');
      sessions.add(session);
      res.setHeader('set-cookie', `${COOKIE}=${session}; HttpOnly; SameSite=Strict; Path=/`);
      return json(res, 200, { ok: true });
    }
    if (!authorized(req)) throw new HttpError(401, 'access token required: open the URL printed at start');

    if (url.pathname === '/api/overview' && req.method === 'GET') {
      const now = await sample();
      return json(res, 200, {
        label: options.label,
        atMs: now.atMs,
        groups: now.groups,
        history: history.map((s) => ({
          atMs: s.atMs,
          groups: s.groups.map((g) => ({ topic: g.topic, group: g.group, stats: g.stats })),
        })),
      });
    }
    if (url.pathname === '/api/dead-letters' && req.method === 'GET') {
      const ref = groupRef({ topic: url.searchParams.get('topic'), group: url.searchParams.get('group') });
      const limitText = url.searchParams.get('limit');
      const limit = limitText === null ? 50 : Number(limitText);
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_DEAD_LETTERS)
        throw new ConfigError('limit', `must be an integer from 1 to ${MAX_DEAD_LETTERS}`);
      const found = await ops.peek({ ...ref, source: 'dead-letter', limit });
      return json(res, 200, {
        ...ref,
        purgeConfirmation: purgeConfirmation({ ...ref, source: 'dead-letter' }),
        messages: found.map(describeDeadLetter),
      });
    }
    if (url.pathname === '/api/redrive' && req.method === 'POST') {
      const body = await readJson(req);
      const ref = groupRef(body);
      let filter: RedriveFilter;
      if (body.all === true && body.ids === undefined) filter = {};
      else if (
        Array.isArray(body.ids) &&
        body.ids.length > 0 &&
        body.ids.every((i) => typeof i === 'string') &&
        body.all === undefined
      )
        filter = { ids: body.ids as string[] };
      else throw new ConfigError('ids', 'say which dead letters: "all": true, or a non-empty list of "ids"');
      const result = await ops.redrive({ ...ref, filter });
      return json(res, 200, result);
    }
    if (url.pathname === '/api/purge' && req.method === 'POST') {
      const body = await readJson(req);
      const ref = groupRef(body);
      if (body.source !== 'dead-letter' && body.source !== 'group')
        throw new ConfigError('source', "must be 'group' or 'dead-letter'");
      if (typeof body.confirm !== 'string') throw new ConfigError('confirm', 'is required');
      const result = await ops.purge({ ...ref, source: body.source, confirm: body.confirm });
      return json(res, 200, result);
    }
    throw new HttpError(404, 'not found');
  };

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const hostPart = options.host.includes(':') ? `[${options.host}]` : options.host;
  allowedHosts = new Set([`${hostPart}:${port}`]);
  if (isLoopback(options.host)) {
    for (const h of ['127.0.0.1', 'localhost', '[::1]']) allowedHosts.add(`${h}:${port}`);
  }
  const origin = `http://${hostPart}:${port}`;
  return {
    origin,
    url: `${origin}/#token=${token}`,
    token,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

const SECURITY_HEADERS = {
  // Only this server's own script and style; nothing inline, no frames, no form posts elsewhere.
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
  'x-frame-options': 'DENY',
};

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127(\.\d{1,3}){3}$/.test(host);
}

/**
 * A POST must come from this server's own page: its Origin (every browser sends one on a POST) must be
 * one of our addresses, and its body JSON (which a plain HTML form on another site cannot send).
 */
function checkOrigin(req: IncomingMessage, hosts: Set<string>): void {
  const origin = req.headers.origin;
  if (origin === undefined || !hosts.has(origin.replace(/^http:\/\//, '')) || !origin.startsWith('http://'))
    throw new HttpError(403, 'cross-origin request refused');
  if (!(req.headers['content-type'] ?? '').startsWith('application/json'))
    throw new HttpError(415, 'send JSON (content-type: application/json)');
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

function sameSecret(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

function readCookie(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return v.join('=');
  }
  return undefined;
}

function groupRef(body: Record<string, unknown>): GroupRef {
  if (typeof body.topic !== 'string' || body.topic === '') throw new ConfigError('topic', 'is required');
  if (typeof body.group !== 'string' || body.group === '') throw new ConfigError('group', 'is required');
  return { topic: body.topic, group: body.group };
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new HttpError(413, 'request body too large');
    chunks.push(chunk as Buffer);
  }
  let value: unknown;
  try {
    value = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HttpError(400, 'the body is not JSON');
  }
  if (!value || typeof value !== 'object' || Array.isArray(value))
    throw new HttpError(400, 'the body must be a JSON object');
  return value as Record<string, unknown>;
}

function json(res: ServerResponse, status: number, value: unknown): void {
  res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': 'application/json; charset=utf-8' });
  res.end(JSON.stringify(value));
}

/** Bad input is 400 with the typed error's message; broker failures 502; never a stack or a password. */
function answerError(res: ServerResponse, err: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  let status = 502;
  if (err instanceof HttpError) status = err.status;
  else if (err instanceof ConfigError) status = 400;
  else if (err instanceof UnsupportedError) status = 501;
  const message = redactText(err instanceof Error ? err.message : String(err));
  const code = isOmnibusError(err) ? err.code : undefined;
  json(res, status, { error: message, ...(code ? { code } : {}) });
}
