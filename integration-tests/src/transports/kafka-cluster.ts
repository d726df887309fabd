/**
 * The Kafka harness on the 3-node KRaft cluster of scripts/brokers/kafka-cluster.sh: the single-node harness
 * pointed at all three brokers, topics created with replication factor 3, and a restart hook that restarts
 * one node.
 */
import { kafka } from '@omnibus/kafka';
import { clusterUp, PORTS, startNode, stopNode } from '../cluster/nodes.js';
import type { TransportHarness } from '../harness.js';

export const BROKERS = (
  process.env.OMNIBUS_KAFKA_CLUSTER_BROKERS ?? PORTS['kafka-cluster'].map((p) => `127.0.0.1:${p}`).join(',')
)
  .split(',')
  .map((b) => b.trim());

// The single-node harness reads this when first imported: point it at the cluster.
process.env.KAFKA_BROKERS = BROKERS.join(',');
const single = (await import('./kafka.js')).harness;

export const harness: TransportHarness = {
  ...single,
  name: 'kafka-cluster',

  async setup() {
    await clusterUp('kafka-cluster');
    await single.setup();
  },

  create: () =>
    kafka({
      brokers: BROKERS,
      // Every topic on all three nodes; with min.insync.replicas 2 and acks 'all', one node may die.
      replicationFactor: 3,
      heartbeatIntervalMs: 1_000,
      sessionTimeoutMs: 10_000,
    }),

  async restart() {
    await stopNode('kafka-cluster', 1);
    await startNode('kafka-cluster', 1);
  },
};
