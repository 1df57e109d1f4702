// Deterministic, realistic usage records: what MDMAI (a TTRPG assistant) sends
// when its users call Anthropic, OpenAI, Google and local Ollama models. The
// demo paces them through a day; the bench writes millions of them.
//
// Promises:
// - The same options give the same records, on any machine: record i depends
//   only on (seed, i) and the options, through a PRNG seeded per record
//   (sfc32, warmed up), never on Math.random, the clock or earlier records. So
//   `recordAt(i)` is random access, and slices can be generated in parallel.
// - Every record passes protocols/record.ts's validator as it is (providers
//   lower case, `ts` whole epoch ms in [fromMs, fromMs + days), strings short
//   and clean), and ids `<idPrefix>-<i>` are unique.
// - With `count` set, timestamps do not go down as i goes up (a log replay);
//   without it each record's time is drawn on its own.
//
// Shapes (the unit test holds them to tolerances): the model mix of MODELS; a
// Zipf-like user skew (user-0 is the heaviest; the user of rank r, 1 first,
// weighs (r + 3)^-0.8, so the top 1% of 10k users send about a quarter); a
// day that is quiet at night UTC and peaks at 19-21 UTC, busier at weekends,
// growing over the range; about 2% errors, 1% timeouts, 0.5% cancellations.
//
// `cached_tokens` is the part of `input_tokens` read from a prompt cache
// (OpenAI's convention); a client-side `cost_usd` prices it at the cached rate.

import { TS_MIN_MS } from '../../protocols/limits.js';
import type { MetadataValue, RecordStatus, UsageRecord } from '../../protocols/record.js';

export interface GeneratorOptions {
  /** Any unsigned 32-bit integer. */
  seed: number;
  /** How many distinct users (`user-0` ... `user-<users-1>`). */
  users: number;
  /** Start of the time range, whole epoch milliseconds. */
  fromMs: number;
  /** Length of the time range in whole days. */
  days: number;
  /** Share of records that carry a client-computed `cost_usd`; the rest leave pricing to the server. Default 0.5. */
  costFromClientRatio?: number;
  /** Planned number of records: when set, record i sits at the (i + u)/count quantile of the range, so records come out in time order, and i must be below it. */
  count?: number;
  /** Ids are `<idPrefix>-<i>`. Default `rec-<seed>`. */
  idPrefix?: string;
}

export interface RecordGenerator {
  /** The record at the cursor, then moves the cursor on (starts at 0). */
  next(): UsageRecord;
  /** The next n records. */
  batch(n: number): UsageRecord[];
  /** Record i, whatever the cursor. */
  recordAt(i: number): UsageRecord;
}

export interface ModelProfile {
  provider: string;
  model: string;
  /** Share of all calls, relative to the other weights. */
  weight: number;
  firstTokenMs: number;
  tokensPerSecond: number;
  /** Multipliers on an operation's median token counts (reasoning models write more). */
  inputScale: number;
  outputScale: number;
  /** List prices, USD per million tokens. */
  inputUsdPerMTok: number;
  outputUsdPerMTok: number;
  cachedUsdPerMTok: number;
  /** Whether the provider reports prompt-cache reads. */
  caches: boolean;
}

const m = (provider: string, model: string, weight: number, firstTokenMs: number, tokensPerSecond: number, prices: [number, number, number], scales: [number, number] = [1, 1]): ModelProfile => ({
  provider, model, weight, firstTokenMs, tokensPerSecond,
  inputScale: scales[0], outputScale: scales[1],
  inputUsdPerMTok: prices[0], outputUsdPerMTok: prices[1], cachedUsdPerMTok: prices[2],
  caches: provider === 'anthropic' || provider === 'openai',
});

/** The provider and model mix; weights sum to 100 (percent of calls). */
export const MODELS: readonly ModelProfile[] = Object.freeze([
  m('anthropic', 'claude-sonnet-4', 25, 650, 60, [3, 15, 0.3]),
  m('anthropic', 'claude-3-5-haiku', 11, 350, 120, [0.8, 4, 0.08]),
  m('anthropic', 'claude-opus-4', 4, 1200, 30, [15, 75, 1.5], [1, 1.2]),
  m('openai', 'gpt-4o', 14, 450, 80, [2.5, 10, 1.25]),
  m('openai', 'gpt-4o-mini', 12, 300, 110, [0.15, 0.6, 0.075]),
  m('openai', 'o3-mini', 4, 2000, 150, [1.1, 4.4, 0.55], [1, 1.8]),
  m('google', 'gemini-2.5-pro', 7, 1500, 90, [1.25, 10, 0.31], [1, 1.5]),
  m('google', 'gemini-2.0-flash', 13, 300, 200, [0.1, 0.4, 0.025]),
  m('ollama', 'llama3.1:8b', 6, 200, 40, [0, 0, 0], [0.6, 0.9]),
  m('ollama', 'mistral:7b', 4, 200, 45, [0, 0, 0], [0.6, 0.9]),
]);

export interface OperationProfile {
  operation: string;
  weight: number;
  inputMedian: number;
  outputMedian: number;
}

/** What the assistant is asked to do; weights sum to 100. */
export const OPERATIONS: readonly OperationProfile[] = Object.freeze([
  { operation: 'rules_lookup', weight: 35, inputMedian: 2500, outputMedian: 300 },
  { operation: 'npc_dialogue', weight: 30, inputMedian: 1800, outputMedian: 220 },
  { operation: 'combat_narration', weight: 15, inputMedian: 2200, outputMedian: 350 },
  { operation: 'map_description', weight: 10, inputMedian: 900, outputMedian: 600 },
  { operation: 'session_summary', weight: 10, inputMedian: 9000, outputMedian: 1200 },
]);

/** Probability of each status other than success. */
export const STATUS_RATES = Object.freeze({ error: 0.02, timeout: 0.01, cancelled: 0.005 });

/** Error codes by provider; repeats weight the draw. */
export const ERROR_CODES: Readonly<Record<string, readonly string[]>> = Object.freeze({
  anthropic: ['overloaded', 'overloaded', 'rate_limited', 'rate_limited', 'server_error'],
  openai: ['rate_limited', 'rate_limited', 'rate_limited', 'server_error', 'invalid_request'],
  google: ['rate_limited', 'rate_limited', 'server_error', 'overloaded'],
  ollama: ['model_not_loaded', 'server_error'],
});

export const TOKEN_BOUNDS = Object.freeze({ inputMin: 200, inputMax: 20_000, outputMin: 50, outputMax: 4_000 });
export const DEFAULT_COST_FROM_CLIENT_RATIO = 0.5;

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
const USERS_MAX = 10_000_000;
const DAYS_MAX = 3660;
const ID_PREFIX_LENGTH_MAX = 100;
const ID_PREFIX = new RegExp(`^[A-Za-z0-9_.:-]{1,${ID_PREFIX_LENGTH_MAX}}$`);
const CAMPAIGN_SHARE = 0.9;
const METADATA_SHARE = 0.25;
const CACHED_SHARE = 0.45;
const TIMEOUTS_MS = [60_000, 90_000, 120_000] as const;
const GAME_SYSTEMS = ['dnd5e', 'pf2e', 'coc7e', 'blades', 'mothership'] as const;
const CLIENTS = ['web', 'discord', 'desktop'] as const;
const CLIENT_VERSIONS = ['1.6.0', '1.6.1', '1.7.0'] as const;

// Weight of each UTC hour, peak 1: quiet at night, rising through the day, evening peak.
const HOUR_WEIGHTS = [
  0.45, 0.3, 0.18, 0.1, 0.07, 0.06, 0.08, 0.12, 0.2, 0.28, 0.34, 0.4,
  0.45, 0.5, 0.55, 0.62, 0.7, 0.8, 0.9, 1, 1, 0.95, 0.8, 0.62,
] as const;
// Sunday first, as Date.getUTCDay counts: TTRPG groups meet at weekends.
const WEEKDAY_WEIGHTS = [1.25, 0.9, 0.9, 0.95, 1, 1.2, 1.35] as const;

/**
 * Relative load at an hour of the UTC day, in (0, 1], 1 at the evening peak.
 * A fractional hour counts as the hour it falls in; hours wrap modulo 24. For
 * pacing a demo: send `dayShapeWeight(h) * peakPerSecond` records a second.
 */
export function dayShapeWeight(hourUtc: number): number {
  if (!Number.isFinite(hourUtc)) throw new RangeError(`hourUtc must be a finite number, got ${hourUtc}`);
  const hour = ((Math.floor(hourUtc) % 24) + 24) % 24;
  return HOUR_WEIGHTS[hour]!;
}

/** Generator over the options, with a cursor for next() and batch(). */
export function createGenerator(options: GeneratorOptions): RecordGenerator {
  const make = recordMaker(options);
  let cursor = 0;
  return {
    next: () => make(cursor++),
    batch(n) {
      if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`batch size must be a whole number >= 0, got ${n}`);
      const out = new Array<UsageRecord>(n);
      for (let k = 0; k < n; k++) out[k] = make(cursor++);
      return out;
    },
    recordAt: make,
  };
}

/** Records 0 .. count-1 in time order, one at a time, so millions never sit in memory. */
export function* records(options: Omit<GeneratorOptions, 'count'>, count: number): Generator<UsageRecord, void, undefined> {
  const make = recordMaker({ ...options, count });
  for (let i = 0; i < count; i++) yield make(i);
}

function recordMaker(options: GeneratorOptions): (i: number) => UsageRecord {
  const { seed, users, fromMs, days } = checked(options);
  const count = options.count;
  const costRatio = options.costFromClientRatio ?? DEFAULT_COST_FROM_CLIENT_RATIO;
  const idPrefix = options.idPrefix ?? `rec-${seed}`;
  const time = timeTable(seed, fromMs, days);
  const userCumulative = cumulative(users, (rank) => (rank + 4) ** -0.8);
  const modelCumulative = cumulative(MODELS.length, (k) => MODELS[k]!.weight);
  const operationCumulative = cumulative(OPERATIONS.length, (k) => OPERATIONS[k]!.weight);
  const rng = new Sfc32();
  const seedA = fmix32(seed ^ 0xa5a5a5a5);
  const seedB = fmix32(seed);

  return (i) => {
    if (!Number.isSafeInteger(i) || i < 0) throw new RangeError(`record index must be a whole number >= 0, got ${i}`);
    if (count !== undefined && i >= count) throw new RangeError(`record index ${i} is past the planned count ${count}`);
    rng.reseed(seedA, fmix32((i >>> 0) ^ seedB), fmix32(Math.floor(i / 2 ** 32) + 0x6a09e667));
    const ts = time.at(count === undefined ? rng.float() : (i + rng.float()) / count);
    const userIndex = search(userCumulative, rng.float());
    const model = MODELS[search(modelCumulative, rng.float())]!;
    const operation = OPERATIONS[search(operationCumulative, rng.float())]!;
    const record: UsageRecord = {
      id: `${idPrefix}-${i}`,
      ts,
      user_id: `user-${userIndex}`,
      provider: model.provider,
      model: model.model,
      input_tokens: 0,
      output_tokens: 0,
      status: 'success',
    };
    callOutcome(record, rng, model, operation);
    if (rng.float() < costRatio) record.cost_usd = clientCost(record, model);
    record.operation = operation.operation;
    if (rng.float() < CAMPAIGN_SHARE) placeInCampaign(record, rng, seed, userIndex);
    if (rng.float() < METADATA_SHARE) record.metadata = metadataFor(record, rng, seed, userIndex);
    return record;
  };
}

/** Tokens, status, error code and latency of one call. */
function callOutcome(record: UsageRecord, rng: Sfc32, model: ModelProfile, operation: OperationProfile): void {
  const b = TOKEN_BOUNDS;
  const input = clamp(Math.round(logNormal(rng, operation.inputMedian * model.inputScale, 0.6)), b.inputMin, b.inputMax);
  let output = clamp(Math.round(logNormal(rng, operation.outputMedian * model.outputScale, 0.7)), b.outputMin, b.outputMax);
  const status = drawStatus(rng.float());
  const firstTokenMs = logNormal(rng, model.firstTokenMs, 0.35) + input / 20;
  let latencyMs: number;
  if (status === 'error') {
    output = 0;
    latencyMs = logNormal(rng, 300, 0.8);
    const codes = ERROR_CODES[model.provider]!;
    record.error_code = codes[Math.floor(rng.float() * codes.length)]!;
  } else if (status === 'timeout') {
    output = 0;
    latencyMs = TIMEOUTS_MS[Math.floor(rng.float() * TIMEOUTS_MS.length)]! + rng.float() * 250;
  } else {
    if (status === 'cancelled') output = Math.max(1, Math.round(output * (0.1 + 0.6 * rng.float())));
    latencyMs = firstTokenMs + (output * 1000 * logNormal(rng, 1, 0.25)) / model.tokensPerSecond;
  }
  record.input_tokens = input;
  record.output_tokens = output;
  record.status = status;
  record.latency_ms = Math.round(latencyMs);
  if (model.caches && rng.float() < CACHED_SHARE) record.cached_tokens = Math.floor(input * (0.3 + 0.6 * rng.float()));
}

function drawStatus(u: number): RecordStatus {
  if (u < STATUS_RATES.error) return 'error';
  if (u < STATUS_RATES.error + STATUS_RATES.timeout) return 'timeout';
  if (u < STATUS_RATES.error + STATUS_RATES.timeout + STATUS_RATES.cancelled) return 'cancelled';
  return 'success';
}

/** What the client would compute from list prices; failed calls are not billed. */
function clientCost(record: UsageRecord, model: ModelProfile): number {
  if (record.status === 'error' || record.status === 'timeout') return 0;
  const cached = record.cached_tokens ?? 0;
  const usd =
    ((record.input_tokens - cached) * model.inputUsdPerMTok + cached * model.cachedUsdPerMTok + record.output_tokens * model.outputUsdPerMTok) / 1e6;
  return Math.round(usd * 1e8) / 1e8;
}

/** A user plays one to three campaigns, mostly one a day; a session is a campaign's game day. */
function placeInCampaign(record: UsageRecord, rng: Sfc32, seed: number, userIndex: number): void {
  const userHash = mix(seed, userIndex);
  const campaigns = 1 + (userHash % 3);
  const day = Math.floor(record.ts / DAY_MS);
  const campaign = rng.float() < 0.8 ? (userHash + day) % campaigns : Math.floor(rng.float() * campaigns);
  record.campaign_id = `camp-${userIndex}-${campaign}`;
  record.session_id = `sess-${userIndex}-${campaign}-${day}`;
}

function metadataFor(record: UsageRecord, rng: Sfc32, seed: number, userIndex: number): Record<string, MetadataValue> {
  const userHash = mix(seed, userIndex);
  const metadata: Record<string, MetadataValue> = {
    client: CLIENTS[userHash % CLIENTS.length]!,
    client_version: CLIENT_VERSIONS[Math.floor(rng.float() * CLIENT_VERSIONS.length)]!,
    streaming: record.operation !== 'session_summary',
  };
  if (record.campaign_id !== undefined) {
    const campaign = Number(record.campaign_id.slice(record.campaign_id.lastIndexOf('-') + 1));
    metadata.game_system = GAME_SYSTEMS[mix(userHash, campaign) % GAME_SYSTEMS.length]!;
  }
  return metadata;
}

interface TimeTable {
  /** Epoch ms at quantile q in [0, 1) of the record density over the range. */
  at(q: number): number;
}

/** Record density per hour of the range: hour of day x weekday x a slow growth x a day's luck. */
function timeTable(seed: number, fromMs: number, days: number): TimeTable {
  const hours = days * 24;
  const cum = new Float64Array(hours);
  let total = 0;
  for (let h = 0; h < hours; h++) {
    const startMs = fromMs + h * HOUR_MS;
    const date = new Date(startMs);
    const day = Math.floor(h / 24);
    const growth = 0.85 + (0.3 * day) / Math.max(1, days - 1);
    const luck = 0.85 + (0.3 * mix(seed ^ 0x5bd1e995, Math.floor(startMs / DAY_MS))) / 2 ** 32;
    total += HOUR_WEIGHTS[date.getUTCHours()]! * WEEKDAY_WEIGHTS[date.getUTCDay()]! * growth * luck;
    cum[h] = total;
  }
  for (let h = 0; h < hours; h++) cum[h]! /= total;
  cum[hours - 1] = 1;
  const lastMs = fromMs + days * DAY_MS - 1;
  return {
    at(q) {
      const h = search(cum, q);
      const below = h === 0 ? 0 : cum[h - 1]!;
      const within = (q - below) / (cum[h]! - below);
      return Math.min(lastMs, fromMs + h * HOUR_MS + Math.floor(within * HOUR_MS));
    },
  };
}

/** Normalised running sums of n weights. */
function cumulative(n: number, weight: (k: number) => number): Float64Array {
  const cum = new Float64Array(n);
  let total = 0;
  for (let k = 0; k < n; k++) cum[k] = total += weight(k);
  for (let k = 0; k < n; k++) cum[k]! /= total;
  cum[n - 1] = 1;
  return cum;
}

/** First index whose running sum exceeds u (u in [0, 1)). */
function search(cum: Float64Array, u: number): number {
  let low = 0;
  let high = cum.length - 1;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (cum[mid]! > u) high = mid;
    else low = mid + 1;
  }
  return low;
}

function logNormal(rng: Sfc32, median: number, sigma: number): number {
  return median * Math.exp(sigma * rng.normal());
}

function clamp(value: number, low: number, high: number): number {
  return value < low ? low : value > high ? high : value;
}

/** sfc32 (Chris Doty-Humphrey's Small Fast Counting generator): 128 bits of state, passes PractRand to terabytes. */
class Sfc32 {
  private a = 0;
  private b = 0;
  private c = 0;
  private d = 1;
  /** Box-Muller makes normals in pairs; the second waits here. */
  private spareNormal = Number.NaN;

  reseed(a: number, b: number, c: number): void {
    this.a = a | 0;
    this.b = b | 0;
    this.c = c | 0;
    this.d = 1;
    this.spareNormal = Number.NaN;
    for (let k = 0; k < 12; k++) this.uint32();
  }

  uint32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) + t;
    this.c |= 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1). */
  float(): number {
    return this.uint32() / 4_294_967_296;
  }

  /** Standard normal. */
  normal(): number {
    const spare = this.spareNormal;
    if (spare === spare) {
      this.spareNormal = Number.NaN;
      return spare;
    }
    const radius = Math.sqrt(-2 * Math.log(1 - this.float()));
    const angle = 2 * Math.PI * this.float();
    this.spareNormal = radius * Math.sin(angle);
    return radius * Math.cos(angle);
  }
}

/** murmur3's 32-bit finaliser: a bijection that spreads every input bit. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A stable unsigned 32-bit hash of two integers. */
function mix(a: number, b: number): number {
  return fmix32((a ^ fmix32((b + 0x9e3779b9) | 0)) >>> 0);
}

function checked(options: GeneratorOptions): { seed: number; users: number; fromMs: number; days: number } {
  const { seed, users, fromMs, days, costFromClientRatio, count, idPrefix } = options;
  const whole = (name: string, value: number, low: number, high: number) => {
    if (!Number.isSafeInteger(value) || value < low || value > high) throw new RangeError(`${name} must be a whole number from ${low} to ${high}, got ${value}`);
  };
  whole('seed', seed, 0, 2 ** 32 - 1);
  whole('users', users, 1, USERS_MAX);
  whole('days', days, 1, DAYS_MAX);
  whole('fromMs', fromMs, TS_MIN_MS, Number.MAX_SAFE_INTEGER - DAYS_MAX * DAY_MS);
  if (count !== undefined) whole('count', count, 1, Number.MAX_SAFE_INTEGER);
  if (costFromClientRatio !== undefined && !(costFromClientRatio >= 0 && costFromClientRatio <= 1)) {
    throw new RangeError(`costFromClientRatio must be from 0 to 1, got ${costFromClientRatio}`);
  }
  if (idPrefix !== undefined && !ID_PREFIX.test(idPrefix)) {
    throw new RangeError(`idPrefix must be 1 to ${ID_PREFIX_LENGTH_MAX} letters, digits or _.:-, got ${JSON.stringify(idPrefix)}`);
  }
  return { seed, users, fromMs, days };
}
