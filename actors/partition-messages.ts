// What a PartitionActor accepts from the network: the remote schema of
// every PartitionMessage type (actors/partition.ts), checked where a body
// enters the node (src/kernel/message-schema.ts). Records in a `write` and
// the patch of an `update` go through the record validator of protocol v1,
// as ingest and record.update bodies do; a `retention` input through the
// policy and legal-hold schemas of cluster.yml. `tick` is the shard's own
// seal timer and is local-only. `migrate_storage` takes no `file_delay_ms`
// from the network (a crash-test fixture's pause, never a peer's).
//
// A schema guards one shard, and refuses values of the right type that
// would still hurt it: a written record whose user another shard owns (it
// would be stored where no lookup finds it), a retention run that names
// directories other than this node's own (its archives would be written
// anywhere the process may write, and a path under /proc wedges the
// filesystem call for good), a run id that is not one path segment, a run
// `now` more than a day from this node's clock (it would expire records
// early), a policy name or hold id given twice, a day that is not on the
// calendar, and a records cursor no page wrote. Every list's length is checked before its items: a huge
// list is refused on its length, not item by item.

import { z } from 'zod';
import type { ProtocolError } from '../protocols/errors.js';
import { SAID_GIVEN, wrongType } from '../protocols/issues.js';
import { DEFAULT_LIMITS, type ProtocolLimits } from '../protocols/limits.js';
import { COST_SOURCES, isCleanText, recordValidator, validateWith, type RecordValidator, type Validation } from '../protocols/record.js';
import { requestSchemas, wholeNumber, type RecordsQuery } from '../protocols/requests.js';
import { messageSchema, type MessageSchema } from '../src/kernel/message-schema.js';
import { decodeCursor } from '../src/query/records.js';
import { legalHoldSchema, policySchema, uniqueBy } from '../src/retention/config.js';
import { STORAGE_FORMATS_READ } from '../src/storage/manifest.js';
import { shardOf } from '../src/storage/node-meta.js';
import type { PartitionMessage } from './partition.js';

const text = (lengthMax: number) => z.string().min(1, 'must not be empty').max(lengthMax, `must be at most ${lengthMax} characters`).refine(isCleanText, 'must not contain control characters');
const whole = wholeNumber;
const seq = whole(0, Number.MAX_SAFE_INTEGER);
const epochMs = whole(0, 8.64e15);
const DAY_MS = 86_400_000;

/** A list of at most `max` items, its length checked before any item is. */
function list<T extends z.ZodType>(item: T, max: number, noun: string, what: string) {
  return z.array(z.unknown(), { error: `must be a list of ${what}` }).max(max, `must list at most ${max} ${noun}`).pipe(z.array(item));
}

/** A UTC day `YYYY-MM-DD` that is on the calendar (Date.parse takes 2024-02-30 for March 1). */
const calendarDay = z
  .string({ error: 'must be a YYYY-MM-DD date' })
  .regex(/^\d{4}-\d{2}-\d{2}$/, 'must be a YYYY-MM-DD date')
  .refine((day) => {
    const ms = Date.parse(`${day}T00:00:00.000Z`);
    return !Number.isNaN(ms) && new Date(ms).toISOString().slice(0, 10) === day;
  }, 'must be a day on the calendar');

/** A protocol validator's refusal as a zod issue at the field it names (its message without the field's prefix). */
function addRefusal(ctx: z.RefinementCtx, error: ProtocolError): void {
  const { field, message } = error;
  const sentence = field && message.startsWith(`${field}: `) ? message.slice(field.length + 2) : message;
  ctx.addIssue({ code: 'custom', path: field ? field.split('.') : [], message: sentence, params: { [SAID_GIVEN]: true } });
}

/** Runs a protocol validator inside a zod schema, keeping the field it names. */
function validated<T>(check: (input: unknown) => Validation<T>) {
  return z.unknown().transform((input, ctx) => {
    const result = check(input);
    if (result.ok) return result.value;
    addRefusal(ctx, result.error);
    return z.NEVER;
  });
}

/** A record as IngestActor hands it to shard `shard` of `shards`: a valid usage record of a user the shard owns, with when it arrived and where its cost came from. */
function newRecordSchema(validator: RecordValidator, shard: number, shards: number) {
  const stamps = z.object({ ingested_at: epochMs, cost_source: z.enum(COST_SOURCES, { error: `must be one of ${COST_SOURCES.join(', ')}` }) });
  return z.unknown().transform((input, ctx) => {
    if (input === null || typeof input !== 'object' || Array.isArray(input)) {
      ctx.addIssue({ code: 'custom', message: 'must be a usage record (a map)' });
      return z.NEVER;
    }
    const { ingested_at, cost_source, ...fields } = input as Record<string, unknown>;
    const record = validator.validate(fields);
    if (!record.ok) {
      addRefusal(ctx, record.error);
      return z.NEVER;
    }
    const owner = shardOf(record.value.user_id, shards);
    if (owner !== shard) {
      ctx.addIssue({ code: 'custom', path: ['user_id'], message: `belongs to shard ${owner}, not shard ${shard}` });
      return z.NEVER;
    }
    const stamped = validateWith(stamps, { ingested_at, cost_source });
    if (!stamped.ok) {
      addRefusal(ctx, stamped.error);
      return z.NEVER;
    }
    return { ...record.value, ...stamped.value };
  });
}

/** A records query's cursor must be one a page wrote (the actor would refuse it E_VALIDATION; the boundary does, E_BAD_REQUEST). */
function cursorFromAPage(query: RecordsQuery, ctx: z.RefinementCtx): void {
  if (query.cursor === undefined) return;
  try {
    decodeCursor(query.cursor);
  } catch {
    ctx.addIssue({ code: 'custom', path: ['cursor'], message: 'not a cursor from a previous page' });
  }
}

const message = <T extends string, S extends z.ZodRawShape>(type: T, shape: S) => z.strictObject({ type: z.literal(type), ...shape });

export interface PartitionSchemaOptions {
  /** The shard the schema guards, of how many: a write's records must all be of users it owns. */
  shard: number;
  shards: number;
  /** This node's retention directories (resolved): the only ones a retention message may name. */
  archiveDir: string;
  exportDir: string;
  limits?: ProtocolLimits;
  /** This node's clock: a retention run's `now` must be within a day of it. */
  now?: () => number;
}

/** The remote schema of the PartitionActor of one shard. */
export function partitionMessageSchema(options: PartitionSchemaOptions): MessageSchema<PartitionMessage> {
  const { shard, shards, limits = DEFAULT_LIMITS, now = Date.now } = options;
  if (!Number.isInteger(shards) || shards < 1 || !Number.isInteger(shard) || shard < 0 || shard >= shards) throw new RangeError(`no shard ${shard} of ${shards}`);
  const validator = recordValidator(limits, now);
  const requests = requestSchemas(limits, now);
  const id = text(limits.idLengthMax);
  const nodeDir = (dir: string, key: string) =>
    z.string({ error: `must be this node's ${key} directory` }).refine((given) => given === dir, `must be this node's ${key} directory`);
  return messageSchema<PartitionMessage, 'tick'>(
    'PartitionActor',
    {
      write: message('write', {
        records: z
          .array(z.unknown(), { error: 'must be a list of records' })
          .min(1, 'must not be empty')
          .max(limits.batchRecordsMax, `must have at most ${limits.batchRecordsMax} records`)
          .pipe(z.array(newRecordSchema(validator, shard, shards))),
      }),
      get: message('get', { id, user_id: id }),
      update: message('update', { id, user_id: id, expected_version: whole(1, Number.MAX_SAFE_INTEGER), patch: validated((input) => validator.validatePatch(input)) }),
      aggregate: message('aggregate', { query: requests.queryAggregate }),
      records: message('records', { query: requests.queryRecords.superRefine(cursorFromAPage) }),
      changes: message('changes', { from_seq: seq, limit: whole(1, 100_000) }),
      digest: message('digest', {}),
      snapshot: message('snapshot', {}),
      wal_since: message('wal_since', { from: z.strictObject({ segment: z.string().regex(/^\d{16}\.log$/, 'must be a WAL segment name'), offset: seq }).optional() }),
      wal_archived: message('wal_archived', { through_seq: seq }),
      bucket_records: message('bucket_records', {
        day: calendarDay,
        buckets: list(whole(0, 255), 256, 'buckets', 'bucket numbers'),
      }),
      seal: message('seal', {}),
      retention: message('retention', {
        input: z.strictObject(
          {
            // A path segment of the run's output directories: never `..` or a separator.
            run_id: z.string({ error: 'must be a run id' }).regex(/^[A-Za-z0-9_-]{1,128}$/, "must be 1-128 letters, digits, '_' or '-'"),
            now: epochMs.refine((ms) => Math.abs(ms - now()) <= DAY_MS, "must be within a day of this node's clock"),
            dry_run: z.boolean({ error: 'must be true or false' }),
            policies: list(policySchema, 64, 'policies', 'policies').superRefine(uniqueBy((policy) => policy.name, 'policy name')),
            holds: list(legalHoldSchema, 10_000, 'holds', 'legal holds').superRefine(uniqueBy((hold) => hold.id, 'hold id')),
            aggregated_metrics_days: whole(0, 36_500),
            archive_dir: nodeDir(options.archiveDir, 'retention.archive_dir'),
            export_dir: nodeDir(options.exportDir, 'retention.export_dir'),
          },
          { error: wrongType('must be a retention run input (a map)') },
        ),
      }),
      migrate_storage: message('migrate_storage', {
        to: z.number({ error: 'must be a storage format number' }).refine((to) => STORAGE_FORMATS_READ.includes(to), `must be a storage format this release reads (${STORAGE_FORMATS_READ.join(', ')})`),
      }),
      migration_finish: message('migration_finish', { outcome: z.enum(['commit', 'undo'], { error: 'must be commit or undo' }) }),
      status: message('status', {}),
    },
    ['tick'],
  );
}
