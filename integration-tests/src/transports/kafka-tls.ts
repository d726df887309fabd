/**
 * The Kafka harness over TLS: the single-node harness pointed at the SSL listener of
 * scripts/brokers/kafka-tls.sh (127.0.0.1:9395), which requires a client certificate. Transports and the
 * harness's raw client both verify the broker against the test CA and present the test client certificate.
 */
import { KAFKA_TLS_SCRIPT, PORTS, pem } from '../tls/material.js';

export const BROKERS = [`127.0.0.1:${PORTS.kafkaSsl}`];
export const ssl = { ca: await pem('ca.crt'), cert: await pem('client.crt'), key: await pem('client.key') };

// The single-node harness reads this when first imported.
process.env.KAFKA_BROKERS = BROKERS.join(',');
const single = await import('./kafka.js');
Object.assign(single.variant, { raw: { ssl }, transport: { ssl }, script: KAFKA_TLS_SCRIPT });

export const harness = { ...single.harness, name: 'kafka-tls' };
