// The schema of cluster.yml. Every key is known: an unknown key, a wrong type
// or a value out of range is an error naming the key. Defaults make an empty
// file (or none at all) a working single node on the embedded transport.

import { z } from 'zod';
import { DEFAULT_LIMITS } from '../../protocols/limits.js';
import { isValidNodeId, isValidSubjectPrefix } from '../../protocols/subjects.js';
import { CONFLICT_STRATEGIES, SOURCES } from '../sync/conflicts.js';
import { retentionPolicyKeys } from '../retention/config.js';

export const LOG_FORMATS = ['auto', 'json', 'pretty'] as const;

/** A whole number in [min, max]; every way of missing it (a string, a fraction, .nan, out of range) says the whole rule. */
const wholeNumber = (min: number, max: number) => {
  const rule = `must be a whole number from ${min} to ${max}`;
  return z.number({ error: rule }).int(rule).min(min, rule).max(max, rule);
};
const positiveInt = (max: number) => wholeNumber(1, max);
const nonNegativeInt = (max: number) => wholeNumber(0, max);
const days = positiveInt(36_500);

const natsUrl = z
  .string()
  .refine((value) => /^(nats|tls|ws|wss):\/\/[^\s]+$|^[^\s/:]+:\d+$/.test(value), 'must be a NATS URL such as nats://127.0.0.1:4222');

const urlOf = (schemes: string[]) =>
  z
    .string()
    .refine((value) => {
      try {
        return schemes.includes(new URL(value).protocol.replace(/:$/, ''));
      } catch {
        return false;
      }
    }, `must be a URL with scheme ${schemes.join(' or ')}`);

export const configSchema = z
  .object({
    node: z
      .object({
        id: z.string().refine(isValidNodeId, "must be 1-64 letters, digits, '_' or '-'").default('node-1'),
        data_dir: z.string().min(1).default('./data'),
      })
      .strict()
      .prefault({}),
    cluster: z
      .object({
        id: z.string().refine(isValidNodeId, "must be 1-64 letters, digits, '_' or '-'").default('default'),
        shards: positiveInt(4096).default(16),
      })
      .strict()
      .prefault({}),
    transport: z
      .object({
        kind: z.enum(['embedded', 'nats'], { error: 'must be embedded or nats' }).default('embedded'),
        subject_prefix: z
          .string()
          .refine(isValidSubjectPrefix, "must be dot-separated tokens of letters, digits, '_' or '-' (no wildcards)")
          .default('usage'),
        nats: z
          .object({
            servers: z.array(natsUrl).min(1, 'must list at least one server').default(['nats://127.0.0.1:4222']),
            user: z.string().min(1).optional(),
            pass: z.string().min(1).optional(),
            token: z.string().min(1).optional(),
            connect_timeout_ms: positiveInt(600_000).default(2000),
            reconnect_base_ms: positiveInt(60_000).default(250),
            reconnect_max_ms: positiveInt(600_000).default(10_000),
            queue_group: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be 1-64 letters, digits, _, . or -').default('usage-tracker'),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    backends: z
      .object({
        postgres: z
          .object({
            url: urlOf(['postgres', 'postgresql']),
            pool_max: positiveInt(1000).default(4),
            schema: z
              .string()
              .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'must be a lower-case SQL identifier (letters, digits, _; at most 63)')
              .default('public'),
            batch_records_max: positiveInt(100_000).default(5000),
            window_ms: positiveInt(60_000).default(50),
            retry_base_ms: positiveInt(60_000).default(200),
            retry_max_ms: positiveInt(600_000).default(30_000),
            statement_timeout_ms: positiveInt(3_600_000).default(60_000),
            conflict_strategy: z
              .enum(CONFLICT_STRATEGIES, { error: 'must be latest_wins, merge, manual or source_priority' })
              .default('latest_wins'),
            source_priority: z
              .array(z.enum(SOURCES, { error: "must be 'local' or 'mirror'" }))
              .length(2, 'must list local and mirror, once each, in order of priority')
              .refine((list) => new Set(list).size === 2, 'must list local and mirror, once each, in order of priority')
              .default(['local', 'mirror']),
          })
          .strict()
          .optional(),
        chroma: z
          .object({
            url: urlOf(['http', 'https']),
            collection_prefix: z
              .string()
              .regex(/^(?:[a-zA-Z0-9][a-zA-Z0-9._-]{0,62})?$/, "must be empty or start with a letter or digit, then letters, digits, '.', '_' or '-' (at most 63)")
              .default(''),
            batch_records_max: positiveInt(100_000).default(1000),
            window_ms: positiveInt(60_000).default(200),
            retry_base_ms: positiveInt(60_000).default(200),
            retry_max_ms: positiveInt(600_000).default(30_000),
            request_timeout_ms: positiveInt(3_600_000).default(30_000),
          })
          .strict()
          .optional(),
      })
      .strict()
      .prefault({}),
    retention: z
      .object({
        raw_usage_days: days.default(90),
        aggregated_metrics_days: days.default(365),
        analytics_insights_days: days.default(180),
        audit_logs_days: days.default(2555),
        backups_days: days.default(30),
        temp_days: days.default(1),
        ...retentionPolicyKeys,
      })
      .strict()
      .prefault({}),
    backup: z
      .object({
        target_dir: z.string().min(1).default('./backups'),
        full_interval_hours: positiveInt(24 * 365).default(24 * 7),
        incremental_interval_hours: positiveInt(24 * 365).default(24),
        /** Scheduled full and incremental backups at the intervals above. */
        schedule: z.boolean().default(true),
        /** Continuous archiving of WAL segments into target_dir/wal, for point-in-time restore. */
        wal_archive: z.boolean().default(true),
        wal_archive_interval_s: positiveInt(60).default(30),
      })
      .strict()
      .prefault({}),
    storage: z
      .object({
        memtable_records_max: positiveInt(10_000_000).default(20_000),
        seal_interval_s: positiveInt(86_400).default(600),
        cache_bytes_max: wholeNumber(1 << 20, 64 * 2 ** 30).default(256 * 2 ** 20),
      })
      .strict()
      .prefault({}),
    ingest: z
      .object({
        pool_size: positiveInt(64).default(2),
        price_file: z.string().min(1).default('./prices.yml'),
      })
      .strict()
      .prefault({}),
    durability: z
      .object({
        fsync: z.enum(['always', 'never'], { error: "must be 'always' (acknowledge after fdatasync) or 'never'" }).default('always'),
      })
      .strict()
      .prefault({}),
    limits: z
      .object({
        payload_bytes_max: wholeNumber(1024, 64 * 1024 * 1024).default(DEFAULT_LIMITS.payloadBytesMax),
        batch_records_max: positiveInt(100_000).default(DEFAULT_LIMITS.batchRecordsMax),
        mailbox_capacity: positiveInt(1_000_000).default(4096),
        ask_timeout_ms: positiveInt(600_000).default(5000),
        query_timeout_ms: positiveInt(600_000).default(5000),
      })
      .strict()
      .prefault({}),
    supervision: z
      .object({
        intensity: nonNegativeInt(1000).default(5),
        period_ms: positiveInt(3_600_000).default(10_000),
        backoff_base_ms: nonNegativeInt(60_000).default(100),
        backoff_max_ms: nonNegativeInt(600_000).default(5000),
        shutdown_ms: positiveInt(600_000).default(5000),
      })
      .strict()
      .superRefine((value, ctx) => {
        if (value.backoff_max_ms < value.backoff_base_ms) {
          ctx.addIssue({ code: 'custom', path: ['backoff_max_ms'], input: value.backoff_max_ms, message: `must be at least backoff_base_ms, which is ${value.backoff_base_ms}` });
        }
      })
      .prefault({}),
    log: z
      .object({
        level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], { error: 'must be one of trace, debug, info, warn, error, fatal, silent' }).default('info'),
        /** auto: readable lines when stdout is a terminal, JSON lines otherwise. */
        format: z.enum(LOG_FORMATS, { error: 'must be auto, json or pretty' }).default('auto'),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type Config = z.infer<typeof configSchema>;
