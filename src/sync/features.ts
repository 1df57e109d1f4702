// The embedding of a usage record in the Chroma mirror: a fixed-length
// numeric feature vector computed from the record's own fields, with no
// model, so it is reproducible on any machine and every dimension can be
// read back as a statement about the call ("openai", "about 2k input
// tokens", "cost unknown", "around 19:00 UTC").
//
// Promises:
// - Pure and deterministic: the same record gives the same vector, whatever
//   the clock, time zone or machine (times are read in UTC).
// - FEATURE_DIMENSIONS values, each finite and within [-1, 1], so that an L2
//   distance is a sum of per-feature contributions none of which can swamp
//   the others: a different provider, model or status adds 1 to the squared
//   distance; a numeric feature adds at most 4 (from one end of its range to
//   the other).
// - An unknown cost is never a $0 cost: it has its own flag, and its value
//   slot sits at the middle of the range, where $0 sits at the bottom.
// - `featuresOfDescription` builds the same layout from a partial
//   description, for similarity queries. What it does not say takes a
//   neutral value, one that is equally far from every possibility: the
//   middle of a numeric range (0.5 for a flag), zeros for a one-hot group,
//   the circle's centre for a time of day or week.
//
// The layout (FEATURE_LAYOUT lists it with offsets; bump FEATURE_VERSION
// whenever it changes, since stored vectors are only comparable within one
// version):
//
//   0-6    provider one-hot over PROVIDERS (anthropic, openai, google,
//          ollama, mistral, cohere), slot 6 for any other, scaled 1/√2
//   7-14   model: FNV-1a of the lower-cased name, one-hot over 8 buckets,
//          scaled 1/√2 (two models may share a bucket; the provider and the
//          numbers still tell them apart)
//   15     input tokens: log10(1 + n) over [0, 6] → [-1, 1] (1k tokens is 0)
//   16     output tokens: log10(1 + n) over [0, 5] → [-1, 1] (~316 is 0)
//   17     output/input: log10((out + 1) / (in + 1)) / 3, clamped (1:1 is 0)
//   18     cached share: cached_tokens / input_tokens, in [0, 1]
//   19     cost: log10(cost_usd + $0.00001) over [$0, $10] → [-1, 1]
//          ($0 is -1, $0.01 is 0); 0 when the cost is unknown
//   20     cost unknown: 1 when unknown, else 0
//   21     latency: log10(1 + ms) over [0, 5] → [-1, 1] (~316 ms is 0); 0 when missing
//   22     latency missing: 1 when missing, else 0
//   23-26  status one-hot (success, error, timeout, cancelled), scaled 1/√2
//   27-28  hour of day (UTC, fractional): sin, cos, radius 1/2
//   29-30  day of week (UTC, fractional, Sunday 0): sin, cos, radius 1/2

import type { RecordStatus, StoredRecord } from '../../protocols/record.js';
import type { UsageDescriptionRequest } from '../../protocols/requests.js';
import { RECORD_STATUSES } from '../../protocols/text.js';

/** Bump when the layout or any scale changes: vectors of different versions are not comparable. */
export const FEATURE_VERSION = 1;

/** Providers with a slot of their own; any other provider shares the last slot. */
export const PROVIDERS = ['anthropic', 'openai', 'google', 'ollama', 'mistral', 'cohere'] as const;
export const MODEL_BUCKETS = 8;

export interface FeatureGroup {
  readonly name: string;
  readonly offset: number;
  readonly size: number;
  readonly meaning: string;
}

const GROUPS: readonly (readonly [name: string, size: number, meaning: string])[] = [
  ['provider', PROVIDERS.length + 1, `one-hot over ${PROVIDERS.join(', ')}, other; scaled 1/√2`],
  ['model', MODEL_BUCKETS, `FNV-1a of the lower-cased model name, one-hot over ${MODEL_BUCKETS} buckets; scaled 1/√2`],
  ['input_tokens', 1, 'log10(1 + input_tokens) over [0, 6] mapped to [-1, 1]'],
  ['output_tokens', 1, 'log10(1 + output_tokens) over [0, 5] mapped to [-1, 1]'],
  ['output_input_ratio', 1, 'log10((output + 1) / (input + 1)) / 3, clamped to [-1, 1]'],
  ['cached_share', 1, 'cached_tokens / input_tokens, in [0, 1]'],
  ['cost', 1, 'log10(cost_usd + 0.00001) over [$0, $10] mapped to [-1, 1]; 0 when unknown'],
  ['cost_unknown', 1, '1 when the cost is unknown, else 0'],
  ['latency', 1, 'log10(1 + latency_ms) over [0, 5] mapped to [-1, 1]; 0 when missing'],
  ['latency_missing', 1, '1 when latency_ms is missing, else 0'],
  ['status', RECORD_STATUSES.length, `one-hot over ${RECORD_STATUSES.join(', ')}; scaled 1/√2`],
  ['hour_of_day', 2, 'sin, cos of the UTC hour of day (fractional); radius 1/2'],
  ['day_of_week', 2, 'sin, cos of the UTC day of week (fractional, Sunday 0); radius 1/2'],
];

/** Where each feature sits in the vector, in order. */
export const FEATURE_LAYOUT: readonly FeatureGroup[] = Object.freeze(
  GROUPS.reduce<FeatureGroup[]>((layout, [name, size, meaning]) => {
    const last = layout[layout.length - 1];
    layout.push(Object.freeze({ name, size, meaning, offset: last ? last.offset + last.size : 0 }));
    return layout;
  }, []),
);

export const FEATURE_DIMENSIONS = FEATURE_LAYOUT.reduce((sum, group) => sum + group.size, 0);

/** A partial description of a call, for `query.similar` (protocol v1): what is left out does not pull either way. */
export type UsageDescription = UsageDescriptionRequest;

/** The record's feature vector (see the layout at the top of this file). */
export function featuresOf(record: StoredRecord): number[] {
  const date = new Date(record.ts);
  if (!Number.isFinite(date.getTime())) throw new RangeError(`ts must be epoch milliseconds, got ${record.ts}`);
  const hour = date.getUTCHours() + date.getUTCMinutes() / 60 + date.getUTCSeconds() / 3600;
  return build({
    provider: record.provider,
    model: record.model,
    input_tokens: record.input_tokens,
    output_tokens: record.output_tokens,
    cached_tokens: record.cached_tokens ?? 0,
    // Only a cost the record vouches for is a cost; anything else is unknown, never $0.
    cost: record.cost_source === 'unknown' || record.cost_usd === undefined ? 'unknown' : record.cost_usd,
    latency: record.latency_ms ?? 'missing',
    status: record.status,
    hour,
    weekday: date.getUTCDay() + hour / 24,
  });
}

/** The feature vector of a partial description, in the same layout; neutral where it says nothing. */
export function featuresOfDescription(description: UsageDescription): number[] {
  return build({
    provider: description.provider,
    model: description.model,
    input_tokens: description.input_tokens,
    output_tokens: description.output_tokens,
    cached_tokens: undefined,
    cost: description.cost_usd,
    latency: description.latency_ms,
    status: description.status,
    hour: description.hour,
    weekday: undefined,
  });
}

/** What `build` reads; `undefined` is "not said" and takes the neutral value. */
interface Parts {
  provider: string | undefined;
  model: string | undefined;
  input_tokens: number | undefined;
  output_tokens: number | undefined;
  cached_tokens: number | undefined;
  cost: number | 'unknown' | undefined;
  latency: number | 'missing' | undefined;
  status: RecordStatus | undefined;
  hour: number | undefined;
  weekday: number | undefined;
}

const CATEGORY = Math.SQRT1_2;
const CIRCLE_RADIUS = 0.5;
/** The neutral value of a [0, 1] feature (a flag, the cached share): equally far from both ends. */
const UNIT_MIDPOINT = 0.5;

function build(parts: Parts): number[] {
  const input = amount('input_tokens', parts.input_tokens);
  const output = amount('output_tokens', parts.output_tokens);
  const cached = amount('cached_tokens', parts.cached_tokens);
  const cost = parts.cost === 'unknown' ? 'unknown' : amount('cost_usd', parts.cost);
  const latency = parts.latency === 'missing' ? 'missing' : amount('latency_ms', parts.latency);
  const hour = parts.hour === undefined ? undefined : within('hour', parts.hour, 24);
  const weekday = parts.weekday === undefined ? undefined : within('weekday', parts.weekday, 7);

  const vector: number[] = [];
  // Each group is written in layout order, and checked against it, so the layout table cannot drift from the code.
  const put = (name: string, ...values: number[]) => {
    const group = FEATURE_LAYOUT.find((candidate) => candidate.name === name);
    if (group === undefined || group.offset !== vector.length || group.size !== values.length) throw new Error(`feature ${name} is out of its layout`);
    vector.push(...values);
  };
  put('provider', ...oneHot(PROVIDERS.length + 1, parts.provider === undefined ? undefined : providerSlot(parts.provider)));
  put('model', ...oneHot(MODEL_BUCKETS, parts.model === undefined ? undefined : modelBucket(parts.model)));
  put('input_tokens', input === undefined ? 0 : logScaled(input, 1, 0, 6));
  put('output_tokens', output === undefined ? 0 : logScaled(output, 1, 0, 5));
  put('output_input_ratio', input === undefined || output === undefined ? 0 : clamp(Math.log10((output + 1) / (input + 1)) / 3));
  put('cached_share', cached === undefined || input === undefined ? UNIT_MIDPOINT : input === 0 ? 0 : Math.min(1, cached / input));
  // A cost the record does not know sits in the middle of the range with its flag up: never at $0.
  put('cost', cost === undefined || cost === 'unknown' ? 0 : logScaled(cost, 0.00001, -5, 1));
  put('cost_unknown', cost === 'unknown' ? 1 : cost === undefined ? UNIT_MIDPOINT : 0);
  put('latency', latency === undefined || latency === 'missing' ? 0 : logScaled(latency, 1, 0, 5));
  put('latency_missing', latency === 'missing' ? 1 : latency === undefined ? UNIT_MIDPOINT : 0);
  put('status', ...oneHot(RECORD_STATUSES.length, parts.status === undefined ? undefined : statusSlot(parts.status)));
  put('hour_of_day', ...circle(hour, 24));
  put('day_of_week', ...circle(weekday, 7));
  if (vector.length !== FEATURE_DIMENSIONS) throw new Error(`feature vector has ${vector.length} dimensions, not ${FEATURE_DIMENSIONS}`);
  return vector;
}

/** A count or amount: undefined stays undefined; anything negative or not finite is refused by name. */
function amount(name: string, value: number | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isFinite(value) || value < 0) throw new RangeError(`${name} must be a finite number >= 0, got ${value}`);
  return value;
}

function within(name: string, value: number, end: number): number {
  if (!Number.isFinite(value) || value < 0 || value >= end) throw new RangeError(`${name} must be in [0, ${end}), got ${value}`);
  return value;
}

function clamp(value: number): number {
  return Math.min(1, Math.max(-1, value));
}

/** log10(value + offset), mapped linearly so that log10 = low gives -1 and log10 = high gives 1, clamped. */
function logScaled(value: number, offset: number, low: number, high: number): number {
  return clamp(((Math.log10(value + offset) - low) / (high - low)) * 2 - 1);
}

/** One slot set to 1/√2 (so two different categories are at distance 1), or all zeros when not said. */
function oneHot(size: number, slot: number | undefined): number[] {
  const values = new Array<number>(size).fill(0);
  if (slot !== undefined) {
    if (!Number.isInteger(slot) || slot < 0 || slot >= size) throw new RangeError(`one-hot slot ${slot} outside [0, ${size})`);
    values[slot] = CATEGORY;
  }
  return values;
}

/** A point on a circle of radius 1/2, so opposite times are at distance 1; the centre when not said. */
function circle(value: number | undefined, period: number): [number, number] {
  if (value === undefined) return [0, 0];
  const angle = (2 * Math.PI * value) / period;
  return [CIRCLE_RADIUS * Math.sin(angle), CIRCLE_RADIUS * Math.cos(angle)];
}

function statusSlot(status: string): number {
  const slot = (RECORD_STATUSES as readonly string[]).indexOf(status);
  if (slot === -1) throw new RangeError(`status must be one of ${RECORD_STATUSES.join(', ')}, got ${status}`);
  return slot;
}

function providerSlot(provider: string): number {
  const slot = (PROVIDERS as readonly string[]).indexOf(provider.trim().toLowerCase());
  return slot === -1 ? PROVIDERS.length : slot;
}

/** The model's bucket: FNV-1a (32-bit) of its lower-cased name, stable across machines and releases. */
export function modelBucket(model: string): number {
  const text = model.trim().toLowerCase();
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % MODEL_BUCKETS;
}
