/**
 * @omnibus/core/kit: what a transport author builds on, so that every adapter shares one settle state
 * machine, one delay planner, one reading of the control headers, one publish deadline and one way of
 * turning bad options into ConfigErrors. A rule two adapters need belongs here.
 */

export { type Deadline, DeadlineQueue } from '../deadline.js';
export type {
  GroupRef,
  OperationTarget,
  PeekedWire,
  PurgeResult,
  RedriveProgress,
  RedriveResult,
  RedriveSpec,
  TransportOperations,
} from '../operations.js';
export { redriveHeaders } from '../operations.js';
export { parseOptions } from '../options.js';
export type {
  AbandonVerdict,
  Capabilities,
  Delivery,
  PublishCall,
  SubscribeSpec,
  Transport,
  TransportStats,
  TransportSubscription,
} from '../transport.js';
export {
  deadLetterHeaders,
  hasAttempts,
  MAX_ATTEMPTS_HEADER,
  readAttempts,
  readDueAt,
  retryHeaders,
} from './control-headers.js';
export {
  DEFAULT_DELAY_TIERS_MS,
  type DelayPlan,
  delayTiersSchema,
  nextHop,
  planDelay,
  tierFor,
} from './delay.js';
export { BaseDelivery, type BaseDeliveryInit, handOver, type SettleState } from './delivery.js';
export {
  abandonedPublishError,
  DEFAULT_CONNECT_TIMEOUT_MS,
  noDeadline,
  PublishDeadline,
  withConnectDeadline,
} from './publish.js';
export { emptyStats } from './stats.js';
export {
  INSECURE_TLS_WARNING,
  type ResolvedTlsOptions,
  type TlsFailure,
  type TlsOptions,
  tlsFailure,
  tlsSchema,
  warnIfInsecure,
} from './tls.js';
