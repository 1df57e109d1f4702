// Request shapes of protocol v1 other than the record itself, and the
// ingest body (one record or `{records: [...]}`) split into per-record results.

import { z } from 'zod';
import { ProtocolError } from './errors.js';
import { COST_USD_MAX, DEFAULT_LIMITS, LATENCY_MS_MAX, TOKENS_MAX, type ProtocolLimits } from './limits.js';
import { isCleanText, RECORD_STATUSES, timestampSchema, validateWith, type RecordValidator, type UsageRecord, type Validation } from './record.js';

export type IngestItem = { index: number; ok: true; record: UsageRecord } | { index: number; ok: false; id?: string; error: ProtocolError };

/**
 * Splits an ingest body into per-record validations. The whole request fails
 * (throws) only when it is not a record nor a batch, or the batch is too large;
 * a bad record inside a batch is named by its index and never stops the others.
 */
export function parseIngest(body: unknown, validator: RecordValidator, limits: ProtocolLimits = DEFAULT_LIMITS): IngestItem[] {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new ProtocolError('E_VALIDATION', 'body must be a usage record or {records: [...]}');
  }
  if (!('records' in body)) return [item(0, body, validator)];
  const { records, ...rest } = body as { records: unknown };
  const extra = Object.keys(rest);
  if (extra.length > 0) {
    throw new ProtocolError('E_VALIDATION', `a batch has only the field records; unknown: ${extra.join(', ')}`, { field: extra[0]! });
  }
  if (!Array.isArray(records)) throw new ProtocolError('E_VALIDATION', 'records: must be an array', { field: 'records' });
  if (records.length === 0) throw new ProtocolError('E_VALIDATION', 'records: must not be empty', { field: 'records' });
  if (records.length > limits.batchRecordsMax) {
    throw new ProtocolError('E_TOO_LARGE', `records: ${records.length} records; the limit is ${limits.batchRecordsMax}`, {
      field: 'records',
      details: { limit_records: limits.batchRecordsMax },
    });
  }
  return records.map((record, index) => item(index, record, validator));
}

function item(index: number, input: unknown, validator: RecordValidator): IngestItem {
  const result = validator.validate(input);
  if (result.ok) return { index, ok: true, record: result.value };
  const id = idOf(input);
  return id === undefined ? { index, ok: false, error: result.error } : { index, ok: false, id, error: result.error };
}

function idOf(input: unknown): string | undefined {
  if (input === null || typeof input !== 'object') return undefined;
  const id = (input as { id?: unknown }).id;
  return typeof id === 'string' && id.length <= 256 && isCleanText(id) ? id : undefined;
}

export const GROUP_BY_KEYS = ['user_id', 'provider', 'model', 'day', 'hour'] as const;
export const AGGREGATE_METRICS = ['count', 'input_tokens', 'output_tokens', 'tokens', 'cost', 'latency_p50', 'latency_p95'] as const;
export const RECORDS_PAGE_MAX = 1000;
export const RECORDS_PAGE_DEFAULT = 100;

export interface RequestSchemas {
  recordGet: z.ZodType<{ id: string; user_id: string }>;
  recordUpdate: z.ZodType<{ id: string; user_id: string; expected_version: number; patch: unknown }>;
  queryRecords: z.ZodType<RecordsQuery>;
  queryAggregate: z.ZodType<AggregateQuery>;
  adminStatus: z.ZodType<Record<string, never>>;
  syncStatus: z.ZodType<SyncStatusRequest>;
  syncResync: z.ZodType<SyncResyncRequest>;
  syncVerify: z.ZodType<SyncVerifyRequest>;
  querySimilar: z.ZodType<SimilarQuery>;
  syncConflicts: z.ZodType<SyncConflictsRequest>;
  backupCreate: z.ZodType<{ kind: BackupKind }>;
  backupList: z.ZodType<Record<string, never>>;
  backupVerify: z.ZodType<{ backup_id: string }>;
  backupRestore: z.ZodType<BackupRestoreRequest>;
  retentionRun: z.ZodType<RetentionRunRequest>;
  retentionStatus: z.ZodType<Record<string, never>>;
  syncResolve: z.ZodType<SyncResolveRequest>;
  queryAnomalies: z.ZodType<AnomaliesQuery>;
  migrationApply: z.ZodType<MigrationApplyRequest>;
  migrationRollback: z.ZodType<MigrationRollbackRequest>;
}

/** usage.v1.admin.migration.apply: every pending migration, or `to` and what it depends on; a dry run changes nothing. */
export interface MigrationApplyRequest {
  dry_run: boolean;
  to?: string;
}
/** usage.v1.admin.migration.rollback: the newest applied migration, or `id` and every applied one that depends on it. */
export interface MigrationRollbackRequest {
  dry_run: boolean;
  id?: string;
}
/** A migration id: letters, digits, `_`, `-` and `.`, at most 128 characters. */
export const MIGRATION_ID = /^[A-Za-z0-9_.-]{1,128}$/;

export const PATTERN_RESULTS_MAX = 100;

/** A partial description of a call, for query.similar (what it leaves out does not pull either way). */
export interface UsageDescriptionRequest {
  provider?: string;
  model?: string;
  input_tokens?: number;
  output_tokens?: number;
  cost_usd?: number;
  latency_ms?: number;
  status?: (typeof RECORD_STATUSES)[number];
  /** UTC hour of day, 0 to below 24 (may be fractional). */
  hour?: number;
}
export interface SimilarQuery {
  like?: { id: string; user_id: string };
  description?: UsageDescriptionRequest;
  user_id?: string;
  provider?: string;
  from?: number;
  to?: number;
  limit: number;
}
export interface AnomaliesQuery {
  user_id: string;
  provider?: string;
  from?: number;
  to?: number;
  limit: number;
  /** Robust z-score above which a record is an anomaly. */
  threshold: number;
}

export const SYNC_BACKENDS = ['postgres', 'chroma'] as const;
/** usage.v1.admin.retention.run: a dry run plans and changes nothing (default false). */
export interface RetentionRunRequest {
  dry_run: boolean;
}
export const BACKUP_KINDS = ['full', 'incremental', 'differential'] as const;
export type BackupKind = (typeof BACKUP_KINDS)[number];
/** usage.v1.admin.backup.restore: a whole backup, a point in time (to_time), or part of either (user_id, from, to on record time). */
export interface BackupRestoreRequest {
  backup_id?: string;
  to_time?: number;
  /** The history to restore from (default: the backup's, or with to_time alone the node's own). */
  incarnation?: string;
  user_id?: string;
  from?: number;
  to?: number;
  target_dir: string;
}
/** A backup's id: its UTC time to the millisecond and its kind, so ids sort in time order. */
export const BACKUP_ID = /^\d{8}T\d{9}Z-(full|incremental|differential)$/;
/**
 * A data directory's incarnation: 16 random hex digits given when the
 * directory is created (or restored), or `legacy` for directories, backups
 * and archives from before incarnations existed.
 */
export const INCARNATION_ID = /^([0-9a-f]{16}|legacy)$/;
export type SyncBackend = (typeof SYNC_BACKENDS)[number];
export interface SyncStatusRequest {
  backend?: SyncBackend;
}
export interface SyncConflictsRequest {
  backend: SyncBackend;
  /** Only the open ones (default), or every recorded conflict. */
  open: boolean;
  limit: number;
}
export interface SyncResolveRequest {
  backend: SyncBackend;
  conflict_id: number;
  take: 'local' | 'remote';
}
export interface SyncVerifyRequest {
  backend: SyncBackend;
  /** Write what differs (default), or only report it. */
  repair: boolean;
  shards?: number[];
}
export interface SyncResyncRequest {
  backend: SyncBackend;
  /** Replay every change after this seq (0: from scratch). */
  from_seq: number;
  shards?: number[];
}

export interface QueryFilters {
  user_id?: string;
  provider?: string;
  model?: string;
  status?: string;
  from?: number;
  to?: number;
}
export interface RecordsQuery extends QueryFilters {
  limit: number;
  cursor?: string;
}
export interface AggregateQuery extends QueryFilters {
  group_by: (typeof GROUP_BY_KEYS)[number][];
  metrics: (typeof AGGREGATE_METRICS)[number][];
}

/** A whole number in [min, max]: every way of missing it (a string, NaN, a fraction, out of range) says the whole rule. */
export function wholeNumber(min: number, max: number = Number.MAX_SAFE_INTEGER) {
  const rule = max === Number.MAX_SAFE_INTEGER ? `must be a whole number, at least ${min}` : `must be a whole number from ${min} to ${max}`;
  return z.number({ error: rule }).int(rule).min(min, rule).max(max, rule);
}

/** A number in [min, max], likewise. */
function numberFrom(min: number, max: number) {
  const rule = `must be a number from ${min} to ${max}`;
  return z.number({ error: rule }).min(min, rule).max(max, rule);
}

const HOUR_RULE = 'must be a number from 0 to below 24';
const hourOfDay = z.number({ error: HOUR_RULE }).min(0, HOUR_RULE).lt(24, HOUR_RULE);

export function requestSchemas(limits: ProtocolLimits = DEFAULT_LIMITS, now: () => number = Date.now): RequestSchemas {
  const text = (max: number) => z.string().min(1, 'must not be empty').max(max, `must be at most ${max} characters`).refine(isCleanText, 'must not contain control characters');
  const id = text(limits.idLengthMax);
  const name = text(limits.nameLengthMax);
  const filters = {
    user_id: id.optional(),
    provider: name.transform((value) => value.toLowerCase()).optional(),
    model: name.optional(),
    status: z.enum(RECORD_STATUSES, { error: `must be one of ${RECORD_STATUSES.join(', ')}` }).optional(),
    from: timestampSchema(now).optional(),
    to: timestampSchema(now).optional(),
  };
  const backend = z.enum(SYNC_BACKENDS, { error: `must be one of ${SYNC_BACKENDS.join(', ')}` });
  const backupId = z.string().regex(BACKUP_ID, 'must be a backup id such as 20261126T143000123Z-full');
  const migrationId = z
    .string({ error: 'must be a migration id' })
    .max(128, 'must be at most 128 characters')
    .regex(MIGRATION_ID, 'must be a migration id such as storage-0002_explicit_versions (letters, digits, _ - .)');
  /** A key of the protocol that this release does not serve yet: refused with a clear reason, never ignored. */
  const shardList = z.array(wholeNumber(0, 65_535)).min(1).max(4096).optional();
  const fromBeforeTo = (query: { from?: number | undefined; to?: number | undefined }) =>
    query.from === undefined || query.to === undefined || query.from <= query.to;
  return {
    recordGet: z.object({ id, user_id: id }).strict(),
    recordUpdate: z
      .object({
        id,
        user_id: id,
        expected_version: wholeNumber(1),
        patch: z.unknown(),
      })
      .strict(),
    queryRecords: z
      .object({
        ...filters,
        limit: wholeNumber(1, RECORDS_PAGE_MAX).default(RECORDS_PAGE_DEFAULT),
        cursor: z.string().max(1024).optional(),
      })
      .strict()
      .refine(fromBeforeTo, { message: 'from must not be after to', path: ['from'] }) as z.ZodType<RecordsQuery>,
    queryAggregate: z
      .object({
        ...filters,
        group_by: z.array(z.enum(GROUP_BY_KEYS)).max(GROUP_BY_KEYS.length).default([]),
        metrics: z.array(z.enum(AGGREGATE_METRICS)).min(1).max(AGGREGATE_METRICS.length).default(['count', 'tokens', 'cost']),
      })
      .strict()
      .refine(fromBeforeTo, { message: 'from must not be after to', path: ['from'] }) as z.ZodType<AggregateQuery>,
    adminStatus: z.object({}).strict() as z.ZodType<Record<string, never>>,
    syncStatus: z.object({ backend: backend.optional() }).strict() as z.ZodType<SyncStatusRequest>,
    syncResync: z
      .object({
        backend,
        from_seq: wholeNumber(0).default(0),
        shards: shardList,
      })
      .strict() as z.ZodType<SyncResyncRequest>,
    querySimilar: z
      .object({
        like: z.object({ id, user_id: id }).strict().optional(),
        description: z
          .object({
            provider: name.transform((value) => value.toLowerCase()).optional(),
            model: name.optional(),
            input_tokens: wholeNumber(0, TOKENS_MAX).optional(),
            output_tokens: wholeNumber(0, TOKENS_MAX).optional(),
            cost_usd: numberFrom(0, COST_USD_MAX).optional(),
            latency_ms: numberFrom(0, LATENCY_MS_MAX).optional(),
            status: filters.status,
            hour: hourOfDay.optional(),
          })
          .strict()
          .refine((description) => Object.keys(description).length > 0, 'must describe at least one feature')
          .optional(),
        user_id: filters.user_id,
        provider: filters.provider,
        from: filters.from,
        to: filters.to,
        limit: wholeNumber(1, PATTERN_RESULTS_MAX).default(10),
      })
      .strict()
      .refine((query) => (query.like === undefined) !== (query.description === undefined), { message: 'give exactly one of like or description', path: ['like'] })
      .refine(fromBeforeTo, { message: 'from must not be after to', path: ['from'] }) as z.ZodType<SimilarQuery>,
    queryAnomalies: z
      .object({
        user_id: id,
        provider: filters.provider,
        from: filters.from,
        to: filters.to,
        limit: wholeNumber(1, PATTERN_RESULTS_MAX).default(10),
        threshold: numberFrom(1, 100).default(3.5),
      })
      .strict()
      .refine(fromBeforeTo, { message: 'from must not be after to', path: ['from'] }) as z.ZodType<AnomaliesQuery>,
    backupCreate: z.object({ kind: z.enum(BACKUP_KINDS, { error: 'must be full, incremental or differential' }).default('full') }).strict(),
    backupList: z.object({}).strict() as z.ZodType<Record<string, never>>,
    retentionRun: z.object({ dry_run: z.boolean({ error: 'must be true or false' }).default(false) }).strict() as z.ZodType<RetentionRunRequest>,
    retentionStatus: z.object({}).strict() as z.ZodType<Record<string, never>>,
    backupVerify: z.object({ backup_id: backupId }).strict(),
    backupRestore: z
      .object({
        backup_id: backupId.optional(),
        to_time: timestampSchema(now).optional(),
        incarnation: z.string().regex(INCARNATION_ID, 'must be an incarnation id: 16 hex digits, or legacy').optional(),
        user_id: id.optional(),
        from: filters.from,
        to: filters.to,
        target_dir: z.string().min(1, 'must not be empty').max(4096).refine(isCleanText, 'must not contain control characters'),
      })
      .strict()
      .refine((request) => request.backup_id !== undefined || request.to_time !== undefined, { message: 'give backup_id, to_time, or both', path: ['backup_id'] })
      .refine(fromBeforeTo, { message: 'from must not be after to', path: ['from'] }) as z.ZodType<BackupRestoreRequest>,
    syncConflicts: z
      .object({
        backend,
        open: z.boolean({ error: 'must be true or false' }).default(true),
        limit: wholeNumber(1, 1000).default(100),
      })
      .strict() as z.ZodType<SyncConflictsRequest>,
    syncResolve: z
      .object({
        backend,
        conflict_id: wholeNumber(1),
        take: z.enum(['local', 'remote'], { error: "must be 'local' or 'remote'" }),
      })
      .strict() as z.ZodType<SyncResolveRequest>,
    syncVerify: z
      .object({ backend, repair: z.boolean({ error: 'must be true or false' }).default(true), shards: shardList })
      .strict() as z.ZodType<SyncVerifyRequest>,
    migrationApply: z
      .object({ dry_run: z.boolean({ error: 'must be true or false' }).default(false), to: migrationId.optional() })
      .strict() as z.ZodType<MigrationApplyRequest>,
    migrationRollback: z
      .object({ dry_run: z.boolean({ error: 'must be true or false' }).default(false), id: migrationId.optional() })
      .strict() as z.ZodType<MigrationRollbackRequest>,
  };
}

/** Validates a request body against a schema; E_VALIDATION names the field. */
export function validateRequest<T>(schema: z.ZodType<T>, body: unknown): Validation<T> {
  return validateWith(schema, body, 'the body');
}
