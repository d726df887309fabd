/** @omnibus/core: one publish/subscribe API, the failure policy, codecs, context and the memory transport. */
export { type Backoff, type BackoffOptions, backoffDelay } from './backoff.js';
export {
  type BatchItem,
  Bus,
  type BusHealth,
  type ConnectOptions,
  connect,
  type MessagePublishOptions,
  type PublishCallOptions,
  type PublishOptions,
  type ReplayOptions,
  type SubscribeOptions,
  type Subscription,
  type UntypedMessage,
} from './bus.js';
export { CircuitBreaker, type CircuitBreakerOptions, type CircuitState } from './circuit-breaker.js';
export {
  CLAIM_CHECK_DEAD_LETTER_REASON,
  CLAIM_CHECK_HEADER,
  type ClaimCheckOptions,
  ClaimCheckTransport,
  claimCheck,
  MemoryPayloadStore,
  memoryPayloadStore,
  type PayloadStore,
} from './claim-check.js';
export {
  type BinaryModeOptions,
  CE_SPEC_VERSION,
  fromBinary,
  fromStructured,
  STRUCTURED_CONTENT_TYPE,
  setHeader,
  toBinary,
  toStructured,
} from './cloudevents.js';
export { type Codec, CodecRegistry, jsonCodec, rawCodec } from './codec.js';
export type { ConsumeOutcome } from './consumer.js';
export {
  childTraceparent,
  currentContext,
  isValidTraceparent,
  type MessageContextData,
  runWithContext,
} from './context.js';
/** For transport authors: many operations sharing one timeout, served by one timer. */
export { type Deadline, DeadlineQueue } from './deadline.js';
export {
  CONTROL_HEADER_PREFIX,
  ControlHeader,
  type DeadLetterInfo,
  type DeadLetterReason,
  type Envelope,
  type EnvelopeMeta,
  type RawEnvelope,
  readDeadLetterInfo,
  type WireMessage,
  wireSize,
} from './envelope.js';
export {
  ClosedError,
  ConfigError,
  ConnectionError,
  DecodeError,
  ErrorCode,
  errorMessage,
  HandlerTimeoutError,
  isOmnibusError,
  LeaseLostError,
  NonRetryableError,
  OmnibusError,
  type OmnibusErrorOptions,
  PublishError,
  type PublishErrorCode,
  UnknownVersionError,
  UnsupportedError,
  ValidationError,
} from './errors.js';
export {
  type ClaimResult,
  type IdempotencyStore,
  MemoryIdempotencyStore,
  type MemoryStoreOptions,
  memoryStore,
} from './idempotency.js';
export { consoleLogger, type LogFields, type Logger, silentLogger } from './logger.js';
export {
  MemoryBroker,
  MemoryTransport,
  type MemoryTransportOptions,
  memoryBroker,
  memoryTransport,
} from './memory/transport.js';
export {
  defineMessage,
  type Handler,
  type InferMessage,
  type MessageContext,
  type MessageDefinition,
  type MessageOptions,
  type SchemaLike,
  type TypedHandler,
  type Upcaster,
} from './message.js';
export type { Counters } from './metrics.js';
export type { ConsumeMiddleware, Middleware, PublishMiddleware } from './middleware.js';
export {
  DEFAULT_PEEK_LIMIT,
  type GroupOverview,
  type GroupRef,
  MAX_PEEK_LIMIT,
  type MessageSource,
  Operations,
  type OperationTarget,
  type PeekedMessage,
  type PeekedWire,
  type PeekOptions,
  type PurgeOptions,
  type PurgeResult,
  purgeConfirmation,
  type RedriveFilter,
  type RedriveOptions,
  type RedriveProgress,
  type RedriveResult,
  type RedriveSpec,
  redriveHeaders,
  redriveSelector,
  type TransportOperations,
} from './operations.js';
export { parseOptions } from './options.js';
export { isPattern, matchesPattern } from './pattern.js';
export { redactObject, redactText, redactUrl } from './redact.js';
export { adapterPackage } from './resolve.js';
export {
  type HealthCheck,
  type HealthCheckOptions,
  healthCheck,
  type ProbeReport,
} from './telemetry/health.js';
export {
  Attr as MessagingAttributes,
  messagingSystem,
  type OpenTelemetryApi,
  type TelemetryOptions,
} from './telemetry/telemetry.js';
export type {
  Capabilities,
  Delivery,
  HealthReport,
  OrderingScope,
  ReplayFrom,
  SubscribeSpec,
  Transport,
  TransportContext,
  TransportFactory,
  TransportStats,
  TransportSubscription,
} from './transport.js';
export { uuidv7, uuidv7Time } from './uuid.js';
