// Explicit bounds of protocol v1. Every request is checked against them before
// any work is done; a value over a bound is E_TOO_LARGE or E_VALIDATION, never truncated.

export interface ProtocolLimits {
  /** Largest request or reply body in bytes (NATS' own default max_payload is 1 MiB). */
  payloadBytesMax: number;
  /** Most records in one `usage.v1.ingest` batch. */
  batchRecordsMax: number;
  /** Longest identifier string (`id`, `user_id`, `session_id`, ...), in Unicode code points. */
  idLengthMax: number;
  /** Longest `provider`, `model`, `operation`, `error_code` string. */
  nameLengthMax: number;
  /** Most keys in a record's `metadata`. */
  metadataKeysMax: number;
  /** Longest metadata key. */
  metadataKeyLengthMax: number;
  /** Longest metadata string value. */
  metadataValueLengthMax: number;
  /** Deepest nesting accepted in a decoded request (hostile payloads nest deeply). */
  nestingDepthMax: number;
}

export const DEFAULT_LIMITS: Readonly<ProtocolLimits> = Object.freeze({
  payloadBytesMax: 1024 * 1024,
  batchRecordsMax: 1000,
  idLengthMax: 128,
  nameLengthMax: 128,
  metadataKeysMax: 32,
  metadataKeyLengthMax: 64,
  metadataValueLengthMax: 256,
  nestingDepthMax: 8,
});

/** Bounds that do not depend on configuration. */
export const TOKENS_MAX = 1_000_000_000;
export const COST_USD_MAX = 1_000_000;
export const LATENCY_MS_MAX = 24 * 60 * 60 * 1000;
/** Earliest accepted record timestamp: 2000-01-01T00:00:00Z. */
export const TS_MIN_MS = 946_684_800_000;
/** How far in the future a record timestamp may be (clock skew allowance). */
export const TS_FUTURE_SKEW_MS = 24 * 60 * 60 * 1000;
