/**
 * The Kafka harness over SASL_SSL: the single-node harness pointed at the SCRAM-SHA-512 listener of
 * scripts/brokers/kafka-tls.sh (127.0.0.1:9396). Transports and the raw client verify the broker against
 * the test CA and log in as the SCRAM user whose password the script made.
 */
import { KAFKA_SCRAM_USER, KAFKA_TLS_SCRIPT, kafkaScramPassword, PORTS, pem } from '../tls/material.js';

export const BROKERS = [`127.0.0.1:${PORTS.kafkaSasl}`];
const ssl = { ca: await pem('ca.crt') };
const sasl = {
  mechanism: 'scram-sha-512' as const,
  username: KAFKA_SCRAM_USER,
  password: await kafkaScramPassword(),
};

// The single-node harness reads this when first imported.
process.env.KAFKA_BROKERS = BROKERS.join(',');
const single = await import('./kafka.js');
// Copies: kafkajs adds fields to the sasl object it is given, which the transport's strict options refuse.
Object.assign(single.variant, {
  raw: { ssl, sasl: { ...sasl } },
  transport: { ssl, sasl: { ...sasl } },
  script: KAFKA_TLS_SCRIPT,
});

export const harness = { ...single.harness, name: 'kafka-sasl' };
