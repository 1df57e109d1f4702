// The fast path of record validation. Ingest validates every record, and the
// schema library costs about ten microseconds a record; this check costs
// about one. It accepts only records that are plainly valid and builds the
// same normalised record the schema would; at the first doubt it returns
// undefined and the schema decides, with its field-level error. So it can
// never accept what the schema refuses, nor change an error message.

import {
  COST_USD_MAX,
  LATENCY_MS_MAX,
  TOKENS_MAX,
  TS_FUTURE_SKEW_MS,
  TS_MIN_MS,
  type ProtocolLimits,
} from './limits.js';
import type { MetadataValue, RecordStatus, UsageRecord } from './record.js';
import { isCleanText, parseIsoTimestamp, RECORD_STATUSES } from './text.js';

const STATUSES: ReadonlySet<string> = new Set(RECORD_STATUSES);
const KNOWN = new Set([
  'id', 'ts', 'user_id', 'provider', 'model', 'input_tokens', 'output_tokens', 'cached_tokens', 'cost_usd',
  'latency_ms', 'status', 'error_code', 'session_id', 'campaign_id', 'operation', 'metadata',
]);

/** Plainly valid text: length in UTF-16 units within the bound (so code points are too), clean. */
const text = (value: unknown, lengthMax: number): value is string =>
  typeof value === 'string' && value.length > 0 && value.length <= lengthMax && isCleanText(value);

const tokens = (value: unknown): value is number => typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= TOKENS_MAX;

const within = (value: unknown, max: number): value is number => typeof value === 'number' && Number.isFinite(value) && value >= 0 && value <= max;

function isPlainMap(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function timestamp(value: unknown, now: number): number | undefined {
  const ms = typeof value === 'number' ? value : typeof value === 'string' && value.length <= 40 ? parseIsoTimestamp(value) : Number.NaN;
  return Number.isInteger(ms) && ms >= TS_MIN_MS && ms <= now + TS_FUTURE_SKEW_MS ? ms : undefined;
}

function metadata(value: unknown, limits: ProtocolLimits): Record<string, MetadataValue> | undefined {
  if (!isPlainMap(value)) return undefined;
  const keys = Object.keys(value);
  if (keys.length > limits.metadataKeysMax) return undefined;
  const out: Record<string, MetadataValue> = {};
  for (const key of keys) {
    if (key === '__proto__' || key === 'constructor' || key === 'prototype' || !text(key, limits.metadataKeyLengthMax)) return undefined;
    const item = value[key];
    if (typeof item === 'string') {
      if (item.length > limits.metadataValueLengthMax || !isCleanText(item)) return undefined;
    } else if (!(item === null || typeof item === 'boolean' || (typeof item === 'number' && Number.isFinite(item)))) {
      return undefined;
    }
    out[key] = item;
  }
  return out;
}

/** The normalised record when `input` is plainly valid; otherwise undefined (ask the schema). */
export function fastRecord(input: unknown, limits: ProtocolLimits, now: number): UsageRecord | undefined {
  if (!isPlainMap(input)) return undefined;
  for (const key in input) if (!KNOWN.has(key)) return undefined;
  const r = input as Record<string, unknown>;
  const { idLengthMax: idMax, nameLengthMax: nameMax } = limits;
  if (!text(r.id, idMax) || !text(r.user_id, idMax) || !text(r.provider, nameMax) || !text(r.model, nameMax)) return undefined;
  if (!tokens(r.input_tokens) || !tokens(r.output_tokens)) return undefined;
  const ts = timestamp(r.ts, now);
  if (ts === undefined) return undefined;
  const status = r.status === undefined ? 'success' : r.status;
  if (typeof status !== 'string' || !STATUSES.has(status)) return undefined;
  const out: UsageRecord = {
    id: r.id,
    ts,
    user_id: r.user_id,
    provider: r.provider.toLowerCase(),
    model: r.model,
    input_tokens: r.input_tokens,
    output_tokens: r.output_tokens,
    status: status as RecordStatus,
  };
  if (r.cached_tokens !== undefined) {
    if (!tokens(r.cached_tokens)) return undefined;
    out.cached_tokens = r.cached_tokens;
  }
  if (r.cost_usd !== undefined) {
    if (!within(r.cost_usd, COST_USD_MAX)) return undefined;
    out.cost_usd = r.cost_usd;
  }
  if (r.latency_ms !== undefined) {
    if (!within(r.latency_ms, LATENCY_MS_MAX)) return undefined;
    out.latency_ms = r.latency_ms;
  }
  for (const [key, max] of [['error_code', nameMax], ['session_id', idMax], ['campaign_id', idMax], ['operation', nameMax]] as const) {
    const value = r[key];
    if (value === undefined) continue;
    if (!text(value, max)) return undefined;
    out[key] = value;
  }
  if (r.metadata !== undefined) {
    const map = metadata(r.metadata, limits);
    if (map === undefined) return undefined;
    out.metadata = map;
  }
  return out;
}
