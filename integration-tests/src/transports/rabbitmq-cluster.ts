/**
 * The RabbitMQ harness on the 3-node cluster of scripts/brokers/rabbitmq-cluster.sh: the single-node harness
 * pointed at the cluster, whose restart hook restarts one node (the one clients connect to first) and whose
 * connection-drop hook asks a cluster node to close this run's connections.
 */

import {
  clusterUp,
  RABBITMQ_CLUSTER_URL,
  RABBITMQ_NODE_NAMES,
  startNode,
  stopNode,
} from '../cluster/nodes.js';
import type { TransportHarness } from '../harness.js';

/** Every node, in the adapter's host-list form: connect tries them in order, a lost host hands over to the next. */
const CLUSTER_URL = RABBITMQ_CLUSTER_URL;
const NODE1_URL = process.env.OMNIBUS_RABBITMQ_CLUSTER_NODE1_URL ?? 'amqp://guest:guest@127.0.0.1:5681';

// The single-node harness reads these when first imported: point it at the cluster, never at the shared broker.
// Its raw client (dead letters, poison, cleanup) speaks to node 1; the transports under test get every node.
process.env.AMQP_URL = NODE1_URL;
process.env.OMNIBUS_RABBITMQ_TRANSPORT_URL = CLUSTER_URL;
process.env.OMNIBUS_RABBITMQCTL_NODE = RABBITMQ_NODE_NAMES[0];
const single = (await import('./rabbitmq.js')).harness;

export const harness: TransportHarness = {
  ...single,
  name: 'rabbitmq-cluster',
  // Everything, the restart scenario included, runs on the cluster.
  createForRestart: undefined,

  async setup() {
    await clusterUp('rabbitmq-cluster');
    await single.setup();
  },

  async restart() {
    // A graceful stop and start of node 1; the other two keep the quorum queues' majority meanwhile.
    await stopNode('rabbitmq-cluster', 1);
    await startNode('rabbitmq-cluster', 1);
  },
};
