// What a PartitionActor accepts from the network: the remote schema of
// every PartitionMessage type (actors/partition.ts), checked where a body
// enters the node (src/kernel/message-schema.ts). Records in a `write` and
// the patch of an `update` go through the record validator of protocol v1,
// as ingest and record.update bodies do; a `retention` input through the
// policy and legal-hold schemas of cluster.yml. `tick` is the shard's own
// seal timer and is local-only. `migrate_storage` takes no `file_delay_ms`
// from the network (a crash-test fixture's pause, never a peer's).

import { z } from 'zod';
import type { ProtocolError } from '../protocols/errors.js';
import { SAID_GIVEN, wrongType } from '../protocols/issues.js';
import { DEFAULT_LIMITS, type ProtocolLimits } from '../protocols/limits.js';
import { COST_SOURCES, isCleanText, recordValidator, validateWith, type RecordValidator, type Validation } from '../protocols/record.js';
import { requestSchemas, wholeNumber } from '../protocols/requests.js';
import { messageSchema, type MessageSchema } from '../src/kernel/message-schema.js';
import { legalHoldSchema, policySchema } from '../src/retention/config.js';
import { STORAGE_FORMATS_READ } from '../src/storage/manifest.js';
import type { PartitionMessage } from './partition.js';

const text = (lengthMax: number) => z.string().min(1, 'must not be empty').max(lengthMax, `must be at most ${lengthMax} characters`).refine(isCleanText, 'must not contain control characters');
const whole = wholeNumber;
const seq = whole(0, Number.MAX_SAFE_INTEGER);
const epochMs = whole(0, 8.64e15);

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

/** A record as IngestActor hands it to a shard: a valid usage record, with when it arrived and where its cost came from. */
function newRecordSchema(validator: RecordValidator) {
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
    const stamped = validateWith(stamps, { ingested_at, cost_source });
    if (!stamped.ok) {
      addRefusal(ctx, stamped.error);
      return z.NEVER;
    }
    return { ...record.value, ...stamped.value };
  });
}

const message = <T extends string, S extends z.ZodRawShape>(type: T, shape: S) => z.strictObject({ type: z.literal(type), ...shape });

/** The remote schema of a PartitionActor, for the node's protocol limits. */
export function partitionMessageSchema(limits: ProtocolLimits = DEFAULT_LIMITS, now: () => number = Date.now): MessageSchema<PartitionMessage> {
  const validator = recordValidator(limits, now);
  const requests = requestSchemas(limits, now);
  const id = text(limits.idLengthMax);
  const path = text(4096);
  return messageSchema<PartitionMessage, 'tick'>(
    'PartitionActor',
    {
      write: message('write', { records: z.array(newRecordSchema(validator), { error: 'must be a list of records' }).min(1, 'must not be empty').max(limits.batchRecordsMax, `must have at most ${limits.batchRecordsMax} records`) }),
      get: message('get', { id, user_id: id }),
      update: message('update', { id, user_id: id, expected_version: whole(1, Number.MAX_SAFE_INTEGER), patch: validated((input) => validator.validatePatch(input)) }),
      aggregate: message('aggregate', { query: requests.queryAggregate }),
      records: message('records', { query: requests.queryRecords }),
      changes: message('changes', { from_seq: seq, limit: whole(1, 100_000) }),
      digest: message('digest', {}),
      snapshot: message('snapshot', {}),
      wal_since: message('wal_since', { from: z.strictObject({ segment: z.string().regex(/^\d{16}\.log$/, 'must be a WAL segment name'), offset: seq }).optional() }),
      wal_archived: message('wal_archived', { through_seq: seq }),
      bucket_records: message('bucket_records', {
        day: z.string().regex(/^\d{4}-\d{2}-\d{2}$/, 'must be a YYYY-MM-DD date'),
        buckets: z.array(whole(0, 255)).max(256, 'must list at most 256 buckets'),
      }),
      seal: message('seal', {}),
      retention: message('retention', {
        input: z.strictObject(
          {
            run_id: text(128),
            now: epochMs,
            dry_run: z.boolean({ error: 'must be true or false' }),
            policies: z.array(policySchema, { error: 'must be a list of policies' }).max(64, 'must list at most 64 policies'),
            holds: z.array(legalHoldSchema, { error: 'must be a list of legal holds' }).max(10_000, 'must list at most 10000 holds'),
            aggregated_metrics_days: whole(0, 36_500),
            archive_dir: path,
            export_dir: path,
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
