/**
 * The 3-node clusters of scripts/brokers/ (rabbitmq-cluster.sh, kafka-cluster.sh) as tests see them: their
 * addresses, and starting, stopping and SIGKILLing one node, always through the scripts.
 */
import { execFile } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

export type ClusterKind = 'rabbitmq-cluster' | 'kafka-cluster';
export type NodeIndex = 1 | 2 | 3;
export const NODE_INDEXES: readonly NodeIndex[] = [1, 2, 3];

/** Client ports of nodes 1–3. */
export const PORTS: Record<ClusterKind, readonly number[]> = {
  'rabbitmq-cluster': [5681, 5682, 5683],
  'kafka-cluster': [9192, 9193, 9194],
};

/** Every RabbitMQ node in the adapter's host-list form. */
export const RABBITMQ_CLUSTER_URL =
  process.env.OMNIBUS_RABBITMQ_CLUSTER_URL ??
  'amqp://guest:guest@127.0.0.1:5681,127.0.0.1:5682,127.0.0.1:5683';

export const RABBITMQ_NODE_NAMES = ['omnibus-c1@localhost', 'omnibus-c2@localhost', 'omnibus-c3@localhost'];

function script(kind: ClusterKind): string {
  return fileURLToPath(new URL(`../../../scripts/brokers/${kind}.sh`, import.meta.url));
}

async function call(kind: ClusterKind, args: string[], timeoutMs: number): Promise<string> {
  try {
    const { stdout } = await run('bash', [script(kind), ...args], { timeout: timeoutMs });
    return stdout.trim();
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    throw new Error(
      `${kind}.sh ${args.join(' ')} failed: ${String(err)}\n${e.stdout ?? ''}${e.stderr ?? ''}`,
    );
  }
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => {
      socket.end();
      resolve(true);
    });
    socket.setTimeout(1000, () => socket.destroy());
    socket.on('error', () => resolve(false));
    socket.on('close', () => resolve(false));
  });
}

/** Starts the cluster unless every node already accepts connections (the script is idempotent but slow). */
export async function clusterUp(kind: ClusterKind): Promise<void> {
  const open = await Promise.all(PORTS[kind].map(portOpen));
  if (open.every(Boolean)) return;
  await call(kind, ['up'], 400_000);
}

/** SIGKILLs node n (a real process dies without a goodbye); returns when the pid is gone. */
export async function killNode(kind: ClusterKind, n: NodeIndex): Promise<void> {
  await call(kind, ['kill-node', String(n)], 60_000);
}

/** Starts node n again (RabbitMQ: it rejoins the cluster it was in) and waits until it has booted. */
export async function startNode(kind: ClusterKind, n: NodeIndex): Promise<void> {
  await call(kind, ['start-node', String(n)], 300_000);
}

/**
 * SIGSTOPs a RabbitMQ node: its process and sockets stay, it answers nothing. Its peers count it as up
 * until net_ticktime (10 s) passes, so a short freeze takes its vote away without a partition.
 */
export async function freezeNode(kind: 'rabbitmq-cluster', n: NodeIndex): Promise<void> {
  await call(kind, ['freeze-node', String(n)], 30_000);
}

/** SIGCONTs a node frozen by freezeNode (harmless on one that is not). */
export async function thawNode(kind: 'rabbitmq-cluster', n: NodeIndex): Promise<void> {
  await call(kind, ['thaw-node', String(n)], 30_000);
}

/** Stops node n gracefully. */
export async function stopNode(kind: ClusterKind, n: NodeIndex): Promise<void> {
  await call(kind, ['stop-node', String(n)], 120_000);
}

/** The OS pid of node n, or undefined when it is not running. */
export async function nodePid(kind: ClusterKind, n: NodeIndex): Promise<number | undefined> {
  const out = await call(kind, ['pid', String(n)], 30_000);
  return out ? Number(out) : undefined;
}

/** rabbitmqctl (or rabbitmq-queues) against one cluster node. */
export async function rabbitmqctl(node: string, args: string[], tool = 'rabbitmqctl'): Promise<string> {
  const { stdout } = await run(tool, ['-q', '-n', node, ...args], { timeout: 60_000 });
  return stdout;
}

/** A running RabbitMQ cluster node to ask, other than `except` (which may be the dead one). */
export async function someRabbitNode(except?: NodeIndex): Promise<string> {
  for (const [i, name] of RABBITMQ_NODE_NAMES.entries()) {
    if (i + 1 === except) continue;
    if ((await nodePid('rabbitmq-cluster', (i + 1) as NodeIndex)) !== undefined) return name;
  }
  throw new Error('no RabbitMQ cluster node is running');
}

export interface RabbitQueueRow {
  name: string;
  type: string;
  leader: string;
  members: string[];
  online: string[];
}

/** A queue as `rabbitmqctl list_queues` on a running node (not `except`) reports it. */
export async function rabbitQueue(queue: string, except?: NodeIndex): Promise<RabbitQueueRow> {
  const out = await rabbitmqctl(await someRabbitNode(except), [
    'list_queues',
    'name',
    'type',
    'leader',
    'members',
    'online',
    '--formatter',
    'json',
  ]);
  const row = (JSON.parse(out) as RabbitQueueRow[]).find((r) => r.name === queue);
  if (!row) throw new Error(`queue ${queue} not found`);
  return row;
}

export function nodeIndexOfRabbit(name: string): NodeIndex {
  const i = RABBITMQ_NODE_NAMES.indexOf(name);
  if (i < 0) throw new Error(`unknown node ${name}`);
  return (i + 1) as NodeIndex;
}

/** RabbitMQ node n is back: a running cluster member again, and a replica of `queue` online again. */
export async function rabbitRejoined(queue: string, n: NodeIndex): Promise<boolean> {
  const running = await rabbitmqctl(RABBITMQ_NODE_NAMES[n - 1]!, [
    'eval',
    'io:format("~p", [rabbit_nodes:all_running()]).',
  ]);
  if (!RABBITMQ_NODE_NAMES.every((name) => running.includes(name))) return false;
  const q = await rabbitQueue(queue);
  return RABBITMQ_NODE_NAMES.every((name) => q.online.includes(name));
}
