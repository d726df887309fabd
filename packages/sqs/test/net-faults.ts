/**
 * Real network faults for the deadline tests: a TCP proxy in front of ElasticMQ whose responses can be
 * held back (requests still reach the broker), and a listener that accepts connections and never answers.
 */
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import { ENDPOINT } from './helpers.js';

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('no port');
  return address.port;
}

/** Forwards to ElasticMQ; while stalled, the broker's answers are held (the broker has done the work). */
export class StallingProxy {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  #held: (() => void)[] = [];
  #stalled = false;
  /** Answers the broker gave while stalled, not yet passed on. */
  heldAnswers = 0;
  port = 0;

  constructor() {
    const target = new URL(ENDPOINT);
    this.#server = createServer((client) => {
      const upstream = tcpConnect(Number(target.port || 80), target.hostname);
      this.#sockets.add(client);
      this.#sockets.add(upstream);
      client.on('data', (chunk) => upstream.write(chunk));
      upstream.on('data', (chunk) => {
        if (!this.#stalled) {
          client.write(chunk);
          return;
        }
        this.heldAnswers++;
        this.#held.push(() => {
          if (!client.destroyed) client.write(chunk);
        });
      });
      const closeBoth = () => {
        client.destroy();
        upstream.destroy();
        this.#sockets.delete(client);
        this.#sockets.delete(upstream);
      };
      client.on('close', closeBoth);
      upstream.on('close', closeBoth);
      client.on('error', closeBoth);
      upstream.on('error', closeBoth);
    });
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    this.port = await listen(this.#server);
    return this;
  }

  stall(): void {
    this.#stalled = true;
  }

  resume(): void {
    this.#stalled = false;
    const held = this.#held;
    this.#held = [];
    for (const pass of held) pass();
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

/** Accepts TCP connections and never says a word: a broker that hangs rather than refuses. */
export class SilentListener {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  port = 0;

  constructor() {
    this.#server = createServer((socket) => {
      this.#sockets.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => this.#sockets.delete(socket));
    });
  }

  async start(): Promise<this> {
    this.port = await listen(this.#server);
    return this;
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

/** A port nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  const port = await listen(server);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
