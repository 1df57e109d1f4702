// The usage record of protocol v1: its fields, their bounds, and the validator
// that turns a decoded body into a normalised record or names the bad field.
// Normalisation: `ts` becomes epoch milliseconds, `provider` lower case,
// `status` defaults to `success`. Nothing is truncated: too long is an error.

import { z } from 'zod';
import { ProtocolError } from './errors.js';
import { describeIssue, problemAt, problemLine, PROTOCOL_WORDING, sentenceMap, wrongType, type KnownKeys } from './issues.js';
import { fastRecord } from './record-fast.js';
import { isCleanText, parseIsoTimestamp, RECORD_STATUSES } from './text.js';

export { isCleanText, parseIsoTimestamp, RECORD_STATUSES } from './text.js';
import {
  COST_USD_MAX,
  DEFAULT_LIMITS,
  LATENCY_MS_MAX,
  TOKENS_MAX,
  TS_FUTURE_SKEW_MS,
  TS_MIN_MS,
  type ProtocolLimits,
} from './limits.js';

export type RecordStatus = (typeof RECORD_STATUSES)[number];
export const COST_SOURCES = ['client', 'price_table', 'unknown'] as const;
export type CostSource = (typeof COST_SOURCES)[number];

export type MetadataValue = string | number | boolean | null;

/** A record as a client sends it, after validation and normalisation. */
export interface UsageRecord {
  id: string;
  ts: number;
  user_id: string;
  provider: string;
  model: string;
  input_tokens: number;
  output_tokens: number;
  cached_tokens?: number;
  cost_usd?: number;
  latency_ms?: number;
  status: RecordStatus;
  error_code?: string;
  session_id?: string;
  campaign_id?: string;
  operation?: string;
  metadata?: Record<string, MetadataValue>;
}

/** A record as the service keeps and returns it. */
export interface StoredRecord extends UsageRecord {
  version: number;
  shard: number;
  /** Where this version sits in its shard's change feed (per-shard, increasing). */
  seq: number;
  /** When this version was made (epoch ms, server clock): `ingested_at` for version 1. */
  updated_at: number;
  /** Version vector: per node id, how many versions of this record that node made. */
  vv: Record<string, number>;
  ingested_at: number;
  cost_source: CostSource;
}

/** Fields that `record.update` may change. Identity (`id`, `user_id`) and placement (`ts`) may not. */
export const PATCHABLE_FIELDS = [
  'input_tokens',
  'output_tokens',
  'cached_tokens',
  'cost_usd',
  'latency_ms',
  'status',
  'error_code',
  'session_id',
  'campaign_id',
  'operation',
  'metadata',
] as const;

const cleanText = (lengthMax: number) =>
  z
    .string()
    .min(1, 'must not be empty')
    .max(lengthMax, `must be at most ${lengthMax} characters`)
    .refine(isCleanText, 'must not contain control characters, bidirectional overrides or unpaired surrogates');

const count = (what: string) =>
  z
    .number({ error: `must be a number of ${what}` })
    .int('must be a whole number')
    .min(0, 'must not be negative')
    .max(TOKENS_MAX, `must be at most ${TOKENS_MAX}`);

/** Accepts epoch milliseconds or an ISO 8601 string; yields epoch milliseconds. */
export function timestampSchema(now: () => number) {
  return z
    .union([z.number(), z.string().max(40)], { error: 'must be epoch milliseconds or an ISO 8601 string' })
    .transform((value, ctx) => {
      const ms = typeof value === 'number' ? value : parseIsoTimestamp(value);
      if (!Number.isInteger(ms)) {
        ctx.addIssue({ code: 'custom', message: 'must be whole epoch milliseconds or a valid ISO 8601 date' });
        return z.NEVER;
      }
      const latest = now() + TS_FUTURE_SKEW_MS;
      if (ms < TS_MIN_MS || ms > latest) {
        ctx.addIssue({
          code: 'custom',
          message: `must be between ${new Date(TS_MIN_MS).toISOString()} and ${new Date(latest).toISOString()}`,
        });
        return z.NEVER;
      }
      return ms;
    });
}

function metadataSchema(limits: ProtocolLimits) {
  return z
    .record(
      cleanText(limits.metadataKeyLengthMax),
      z.union(
        [
          z.string().max(limits.metadataValueLengthMax, `values must be at most ${limits.metadataValueLengthMax} characters`).refine(isCleanText, 'values must not contain control characters'),
          z.number().finite(),
          z.boolean(),
          z.null(),
        ],
        { error: 'values must be strings, finite numbers, booleans or null (a flat map)' },
      ),
      { error: wrongType('must be a flat map of string keys') },
    )
    .refine((map) => Object.keys(map).length <= limits.metadataKeysMax, `must have at most ${limits.metadataKeysMax} keys`);
}

function recordFields(limits: ProtocolLimits, now: () => number) {
  const idText = cleanText(limits.idLengthMax);
  const nameText = cleanText(limits.nameLengthMax);
  return {
    id: idText,
    ts: timestampSchema(now),
    user_id: idText,
    provider: nameText.transform((value) => value.toLowerCase()),
    model: nameText,
    input_tokens: count('tokens'),
    output_tokens: count('tokens'),
    cached_tokens: count('tokens').optional(),
    cost_usd: z.number().finite().min(0, 'must not be negative').max(COST_USD_MAX, `must be at most ${COST_USD_MAX}`).optional(),
    latency_ms: z.number().finite().min(0, 'must not be negative').max(LATENCY_MS_MAX, `must be at most ${LATENCY_MS_MAX}`).optional(),
    status: z.enum(RECORD_STATUSES, { error: `must be one of ${RECORD_STATUSES.join(', ')}` }).default('success'),
    error_code: nameText.optional(),
    session_id: idText.optional(),
    campaign_id: idText.optional(),
    operation: nameText.optional(),
    metadata: metadataSchema(limits).optional(),
  };
}

export type Validation<T> = { ok: true; value: T } | { ok: false; error: ProtocolError };

/**
 * Parses `input` with a sentence for every issue (protocols/issues.ts);
 * a failure is E_VALIDATION naming the field. `subject` names the value
 * itself in a sentence about it as a whole (`the body must be a map`).
 */
export function validateWith<T>(schema: z.ZodType<T>, input: unknown, subject?: string): Validation<T> {
  const known: KnownKeys = new WeakMap();
  const result = schema.safeParse(input, { reportInput: true, error: sentenceMap(known) });
  return result.success ? { ok: true, value: result.data } : { ok: false, error: validationError(result.error, known, { subject }) };
}

/**
 * The first zod issue as a field-level E_VALIDATION error: `field` is its
 * dotted path (for unknown keys, the first unknown key's), absent at the top;
 * the message is `field: sentence`, every unknown key of that map in one.
 */
export function validationError(error: z.ZodError, known: KnownKeys = new WeakMap(), where: { at?: string | undefined; subject?: string | undefined } = {}): ProtocolError {
  const issue = error.issues[0];
  if (issue === undefined) return new ProtocolError('E_VALIDATION', 'invalid request');
  const { at, subject } = where;
  const problems = describeIssue(issue, known, PROTOCOL_WORDING, subject).map((problem) => (at === undefined ? problem : problemAt(problem, at)));
  const field = problems[0]?.field;
  const message = problems.map(problemLine).join('; ');
  return new ProtocolError('E_VALIDATION', message, field ? { field } : {});
}

/** Why a record field that exists cannot be patched, by field. */
const UNPATCHABLE: Readonly<Record<string, string>> = {
  id: 'it identifies the record',
  user_id: 'it identifies the record',
  ts: 'it places the record in its partition',
  provider: 'it says what was called',
  model: 'it says what was called',
  version: 'the server sets it',
  shard: 'the server sets it',
  seq: 'the server sets it',
  updated_at: 'the server sets it',
  vv: 'the server sets it',
  ingested_at: 'the server sets it',
  cost_source: 'the server sets it',
};

/** A patch's refusal: a record field that cannot be patched says so and why, rather than "unknown field". */
function patchError(error: z.ZodError, known: KnownKeys, at: string | undefined): ProtocolError {
  const issue = error.issues[0];
  if (issue?.code === 'unrecognized_keys' && issue.path.length === 0) {
    const fixed = issue.keys.find((key) => Object.hasOwn(UNPATCHABLE, key));
    if (fixed !== undefined) {
      const field = at === undefined ? fixed : `${at}.${fixed}`;
      return new ProtocolError('E_VALIDATION', `${field}: cannot be patched (${UNPATCHABLE[fixed]}); a patch may change ${PATCHABLE_FIELDS.join(', ')}`, { field });
    }
  }
  return validationError(error, known, { at, subject: 'patch' });
}

export interface RecordValidator {
  validate(input: unknown): Validation<UsageRecord>;
  /** A patch's fields; `at` names where the patch sits in the request (`patch`), for the field an error names. */
  validatePatch(input: unknown, at?: string): Validation<Partial<UsageRecord>>;
}

export function recordValidator(limits: ProtocolLimits = DEFAULT_LIMITS, now: () => number = Date.now): RecordValidator {
  const fields = recordFields(limits, now);
  const record = z.object(fields, { error: wrongType('a usage record must be a map') }).strict();
  const statusOnly = z.enum(RECORD_STATUSES, { error: `must be one of ${RECORD_STATUSES.join(', ')}` });
  const patchShape = Object.fromEntries(
    PATCHABLE_FIELDS.map((name) => [name, name === 'status' ? statusOnly.optional() : fields[name].optional()]),
  );
  const patch = z
    .object(patchShape, { error: wrongType('patch must be a map') })
    .strict()
    .refine((value) => Object.values(value).some((field) => field !== undefined), 'patch must change at least one field');
  return {
    validate(input) {
      const fast = fastRecord(input, limits, now());
      if (fast) return { ok: true, value: fast };
      const hostileKey = protoKeyIn(input);
      if (hostileKey) return { ok: false, error: new ProtocolError('E_VALIDATION', `${hostileKey}: reserved key`, { field: hostileKey }) };
      const result = validateWith(record, input);
      return result.ok ? { ok: true, value: stripUndefined(result.value) as UsageRecord } : result;
    },
    validatePatch(input, at) {
      const protoKey = protoKeyIn(input);
      if (protoKey) {
        const field = at === undefined ? protoKey : `${at}.${protoKey}`;
        return { ok: false, error: new ProtocolError('E_VALIDATION', `${field}: reserved key`, { field }) };
      }
      const known: KnownKeys = new WeakMap();
      const result = patch.safeParse(input, { reportInput: true, error: sentenceMap(known) });
      if (!result.success) return { ok: false, error: patchError(result.error, known, at) };
      return { ok: true, value: stripUndefined(result.data) as Partial<UsageRecord> };
    },
  };
}

/** Keys that would reach an object's prototype: refused by name rather than dropped silently. */
const PROTO_KEYS = ['__proto__', 'constructor', 'prototype'];

function protoKeyIn(input: unknown): string | undefined {
  if (input === null || typeof input !== 'object') return undefined;
  for (const key of PROTO_KEYS) if (Object.hasOwn(input, key)) return key;
  const metadata = (input as { metadata?: unknown }).metadata;
  if (metadata === null || typeof metadata !== 'object') return undefined;
  for (const key of PROTO_KEYS) if (Object.hasOwn(metadata, key)) return `metadata.${key}`;
  return undefined;
}

function stripUndefined<T extends object>(value: T): T {
  for (const key of Object.keys(value) as (keyof T)[]) {
    if (value[key] === undefined) delete value[key];
  }
  return value;
}
