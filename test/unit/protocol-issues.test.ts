// The sentences of protocols/issues.ts: every kind of zod issue our schemas
// can raise becomes `field: what is allowed (got what was given)`, through the
// request schemas, the record and patch validators, an actor's message
// schema, and a few schemas of its own for the kinds ours do not raise. No
// raw zod text ("Invalid option", "received NaN") is left in any of them.

import t from 'tap';
import { z } from 'zod';
import { partitionMessageSchema } from '../../actors/partition-messages.js';
import { ProtocolError } from '../../protocols/errors.js';
import { describeIssue, problemLine, sentenceMap, type KnownKeys } from '../../protocols/issues.js';
import { DEFAULT_LIMITS } from '../../protocols/limits.js';
import { recordValidator, validateWith } from '../../protocols/record.js';
import { requestSchemas, validateRequest } from '../../protocols/requests.js';

const NOW = Date.UTC(2025, 5, 15, 12, 0, 0);
const schemas = requestSchemas(DEFAULT_LIMITS, () => NOW);
const validator = recordValidator(DEFAULT_LIMITS, () => NOW);
const record = { id: 'r-1', ts: NOW - 60_000, user_id: 'u-1', provider: 'anthropic', model: 'claude', input_tokens: 1, output_tokens: 2 };

/** Zod's own wording, which must never reach a user. */
const RAW_ZOD = /Invalid (input|option|string|element|key|discriminator)|Too (small|big)|expected \w+, received|received NaN|Unrecognized key|Required\b/;

type Test = Parameters<Parameters<typeof t.test>[0]>[0];

/** The refusal of `body` by `schema`: its field and message, checked for raw zod text. */
function refused(t: Test, result: { ok: true } | { ok: false; error: ProtocolError }, field: string | undefined, message: string): void {
  if (result.ok) {
    t.fail(`refused: ${message}`);
    return;
  }
  t.equal(result.error.code, 'E_VALIDATION', `${message}: code`);
  t.equal(result.error.field, field, `${message}: field`);
  t.equal(result.error.message, message);
  t.notMatch(result.error.message, RAW_ZOD, `${message}: no raw zod text`);
}

t.test('invalid_type: the type with its bounds, what was given; NaN and a missing value', async (t) => {
  refused(t, validateRequest(schemas.queryRecords, { limit: 'abc' }), 'limit', 'limit: must be a whole number from 1 to 1000 (got "abc")');
  refused(t, validateRequest(schemas.queryRecords, { limit: Number.NaN }), 'limit', 'limit: must be a whole number from 1 to 1000 (got NaN)');
  refused(t, validateRequest(schemas.syncResolve, { backend: 'postgres', take: 'local' }), 'conflict_id', 'conflict_id: is required');
  refused(t, validateRequest(schemas.recordUpdate, { id: 'r', user_id: 'u', expected_version: '1', patch: {} }), 'expected_version', 'expected_version: must be a whole number, at least 1 (got "1")');
  refused(t, validateRequest(schemas.retentionRun, { dry_run: 'yes' }), 'dry_run', 'dry_run: must be true or false (got "yes")');
  refused(t, validateRequest(schemas.queryAggregate, { group_by: 'model' }), 'group_by', 'group_by: must be a list of user_id, provider, model, day, hour (got "model")');
  refused(t, validateRequest(schemas.recordGet, { id: 1, user_id: 'u' }), 'id', 'id: must be a string (got 1)');
  refused(t, validateRequest(schemas.querySimilar, { description: { cost_usd: Number.POSITIVE_INFINITY } }), 'description.cost_usd', 'description.cost_usd: must be a number from 0 to 1000000 (got Infinity)');
  refused(t, validateRequest(schemas.querySimilar, { like: [1] }), 'like', 'like: must be a map (got a list)');
  refused(t, validateRequest(schemas.adminStatus, [1]), undefined, 'the body must be a map (got a list)');
  refused(t, validator.validate({ ...record, input_tokens: '1' }), 'input_tokens', 'input_tokens: must be a number of tokens (got "1")');
  refused(t, validator.validate({ ...record, cost_usd: Number.NaN }), 'cost_usd', 'cost_usd: must be a number from 0 to 1000000 (got NaN)');
  refused(t, validator.validate({ ...record, model: undefined }), 'model', 'model: is required');
  refused(t, validator.validate(null), undefined, 'a usage record must be a map (got null)');
});

t.test('invalid_value (an enum): the allowed values, what was given', async (t) => {
  refused(t, validateRequest(schemas.queryAggregate, { group_by: ['foo'] }), 'group_by.0', 'group_by.0: must be one of user_id, provider, model, day, hour (got "foo")');
  refused(t, validateRequest(schemas.queryAggregate, { metrics: ['count', 'sum'] }), 'metrics.1', 'metrics.1: must be one of count, input_tokens, output_tokens, tokens, cost, latency_p50, latency_p95 (got "sum")');
  refused(t, validateRequest(schemas.queryRecords, { status: 'sucess' }), 'status', 'status: must be one of success, error, timeout, cancelled (got "sucess")');
  refused(t, validateRequest(schemas.syncStatus, { backend: 'mysql' }), 'backend', 'backend: must be one of postgres, chroma (got "mysql")');
});

t.test('too_small and too_big: the bound and its unit', async (t) => {
  refused(t, validateRequest(schemas.queryRecords, { limit: 0 }), 'limit', 'limit: must be a whole number from 1 to 1000 (got 0)');
  refused(t, validateRequest(schemas.queryRecords, { limit: 1001 }), 'limit', 'limit: must be a whole number from 1 to 1000 (got 1001)');
  refused(t, validateRequest(schemas.queryRecords, { limit: 2.5 }), 'limit', 'limit: must be a whole number from 1 to 1000 (got 2.5)');
  refused(t, validateRequest(schemas.querySimilar, { description: { hour: 24 } }), 'description.hour', 'description.hour: must be a number from 0 to below 24 (got 24)');
  refused(t, validateRequest(schemas.queryAggregate, { metrics: [] }), 'metrics', 'metrics: must list at least 1 item');
  refused(t, validateRequest(schemas.queryAggregate, { group_by: ['day', 'day', 'day', 'day', 'day', 'day'] }), 'group_by', 'group_by: must list at most 5 items');
  refused(t, validateRequest(schemas.syncVerify, { backend: 'postgres', shards: [] }), 'shards', 'shards: must list at least 1 item');
  refused(t, validateRequest(schemas.queryRecords, { cursor: 'c'.repeat(1025) }), 'cursor', `cursor: must be at most 1024 characters long (got "${'c'.repeat(56)}...)`);
  refused(t, validateRequest(schemas.queryRecords, { provider: '' }), 'provider', 'provider: must not be empty (got "")');
  refused(t, validator.validate({ ...record, input_tokens: -1 }), 'input_tokens', 'input_tokens: must not be negative (got -1)');
});

t.test('invalid_format: the pattern the value must match', async (t) => {
  refused(t, validateRequest(schemas.backupVerify, { backup_id: 'nope' }), 'backup_id', 'backup_id: must be a backup id such as 20261126T143000123Z-full (got "nope")');
  const own = z.object({ code: z.string().regex(/^[a-z]+$/), url: z.string().startsWith('nats://'), mail: z.email() });
  refused(t, validateWith(own, { code: 'A1', url: 'x', mail: 'y' }), 'code', 'code: must match the pattern /^[a-z]+$/ (got "A1")');
  refused(t, validateWith(own, { code: 'a', url: 'x', mail: 'y' }), 'url', 'url: must start with "nats://" (got "x")');
  refused(t, validateWith(own, { code: 'a', url: 'nats://', mail: 'y' }), 'mail', 'mail: must be a valid email (got "y")');
});

t.test('unrecognized_keys: the key, and what was meant or what is allowed', async (t) => {
  refused(t, validateRequest(schemas.queryRecords, { userId: 'u' }), 'userId', 'userId: unknown field; did you mean user_id?');
  refused(t, validator.validate({ ...record, cost: 1 }), 'cost', 'cost: unknown field; did you mean cost_usd?');
  refused(t, validateRequest(schemas.recordGet, { id: 'r', user_id: 'u', colour: 'red' }), 'colour', 'colour: unknown field (the fields are id, user_id)');
  refused(t, validateRequest(schemas.recordGet, { id: 'r', user_id: 'u', zzz: 1, aaa: 2 }), 'zzz', 'unknown fields zzz, aaa (the fields are id, user_id)');
  refused(t, validateRequest(schemas.querySimilar, { description: { colour: 1 } }), 'description.colour', 'description.colour: unknown field (description takes provider, model, input_tokens, output_tokens, cost_usd, latency_ms, status, hour)');
  refused(t, validateRequest(schemas.adminStatus, { verbose: true }), 'verbose', 'verbose: unknown field (the fields are none)');
});

t.test('a patch: a field that exists but cannot be patched says so; the field names the patch', async (t) => {
  const patchable = 'input_tokens, output_tokens, cached_tokens, cost_usd, latency_ms, status, error_code, session_id, campaign_id, operation, metadata';
  refused(t, validator.validatePatch({ ts: NOW }, 'patch'), 'patch.ts', `patch.ts: cannot be patched (it places the record in its partition); a patch may change ${patchable}`);
  refused(t, validator.validatePatch({ user_id: 'u-2' }, 'patch'), 'patch.user_id', `patch.user_id: cannot be patched (it identifies the record); a patch may change ${patchable}`);
  refused(t, validator.validatePatch({ version: 3 }), 'version', `version: cannot be patched (the server sets it); a patch may change ${patchable}`);
  refused(t, validator.validatePatch({ latency: 5 }, 'patch'), 'patch.latency', 'patch.latency: unknown field; did you mean latency_ms?');
  refused(t, validator.validatePatch({ cost_usd: -1 }, 'patch'), 'patch.cost_usd', 'patch.cost_usd: must not be negative (got -1)');
  refused(t, validator.validatePatch({}, 'patch'), 'patch', 'patch must change at least one field');
  refused(t, validator.validatePatch(5, 'patch'), 'patch', 'patch must be a map (got 5)');
});

t.test('custom: a refinement says its own sentence; one without says the value is not allowed', async (t) => {
  refused(t, validateRequest(schemas.queryRecords, { from: NOW, to: NOW - 1 }), 'from', 'from: from must not be after to');
  refused(t, validateRequest(schemas.queryRecords, { from: 'last week' }), 'from', 'from: must be whole epoch milliseconds or a valid ISO 8601 date (got "last week")');
  refused(t, validateRequest(schemas.queryRecords, { provider: 'a\u0000b' }), 'provider', 'provider: must not contain control characters');
  refused(t, validateWith(z.object({ even: z.number().refine((n) => n % 2 === 0) }), { even: 3 }), 'even', 'even: is not allowed (got 3)');
});

t.test('invalid_union and invalid_key: each alternative, and the key at fault', async (t) => {
  refused(t, validateRequest(schemas.queryRecords, { from: true }), 'from', 'from: must be epoch milliseconds or an ISO 8601 string (got true)');
  refused(t, validateWith(z.object({ either: z.union([z.number(), z.string()]) }), { either: false }), 'either', 'either: must be a number or a string (got false)');
  const message = z.discriminatedUnion('kind', [z.object({ kind: z.literal('a') }), z.object({ kind: z.literal('b') })]);
  refused(t, validateWith(z.object({ m: message }), { m: { kind: 'c' } }), 'm.kind', 'm.kind: must be one of a, b');
  refused(t, validator.validate({ ...record, metadata: { '': 1 } }), 'metadata.', 'metadata.: must not be empty');
  refused(t, validator.validate({ ...record, metadata: { ['k'.repeat(65)]: 1 } }), `metadata.${'k'.repeat(65)}`, `metadata.${'k'.repeat(65)}: must be at most 64 characters`);
});

t.test('the kinds our schemas do not raise still read as sentences', async (t) => {
  const known: KnownKeys = new WeakMap();
  const schema = z.object({ step: z.number().multipleOf(5), more: z.number().gt(3), less: z.number().lt(3), only: z.literal('x'), tags: z.set(z.string()).max(1), never: z.never().optional() });
  const result = schema.safeParse({ step: 7, more: 3, less: 3, only: 'y', tags: new Set(['a', 'b']), never: 1 }, { reportInput: true, error: sentenceMap(known) });
  t.same(
    result.error?.issues.flatMap((issue) => describeIssue(issue, known)).map(problemLine),
    ['step: must be a multiple of 5 (got 7)', 'more: must be more than 3 (got 3)', 'less: must be less than 3 (got 3)', 'only: must be x (got "y")', 'tags: must list at most 1 item', 'never: must be left out (got 1)'],
  );
});

t.test('what was given is shown bounded, and hostile text not at all', async (t) => {
  const long = validateRequest(schemas.syncStatus, { backend: 'x'.repeat(10_000) });
  t.ok(!long.ok && long.error.message.length < 200, 'a long value is clipped');
  const hostile = validateRequest(schemas.syncStatus, { backend: 'post\u202egres' });
  t.ok(!hostile.ok && !hostile.error.message.includes('\u202e'), 'a bidi override is not echoed');
  t.equal(hostile.ok ? undefined : hostile.error.message, 'backend: must be one of postgres, chroma');
});

t.test('an actor message refused from the network: E_BAD_REQUEST in the same sentences', async (t) => {
  const partition = partitionMessageSchema({ shard: 0, shards: 1, limits: DEFAULT_LIMITS, now: () => NOW, archiveDir: '/var/lib/usage-tracker/archive', exportDir: '/var/lib/usage-tracker/exports' });
  const refusal = (body: unknown) => {
    try {
      partition.parse(body);
    } catch (error) {
      if (error instanceof ProtocolError) return error.toBody();
      throw error;
    }
    return undefined;
  };
  const stamped = { ...record, ingested_at: NOW, cost_source: 'unknown' };
  t.same(refusal({ type: 'write', records: null }), { code: 'E_BAD_REQUEST', field: 'records', message: 'PartitionActor message write: records: must be a list of records (got null)' });
  t.same(refusal({ type: 'changes', from_seq: 'x', limit: 1 }), { code: 'E_BAD_REQUEST', field: 'from_seq', message: 'PartitionActor message changes: from_seq: must be a whole number, at least 0 (got "x")' });
  t.same(refusal({ type: 'write', records: [{ ...stamped, cost_source: 'guess' }] }), {
    code: 'E_BAD_REQUEST',
    field: 'records.0.cost_source',
    message: 'PartitionActor message write: records.0.cost_source: must be one of client, price_table, unknown (got "guess")',
  });
  t.same(refusal({ type: 'update', id: 'r', user_id: 'u', expected_version: 1, patch: 5 }), { code: 'E_BAD_REQUEST', field: 'patch', message: 'PartitionActor message update: patch: patch must be a map (got 5)' }, 'what was given is said once');
  t.same(refusal({ type: 'seal', x: 1, y: 2 }), { code: 'E_BAD_REQUEST', field: 'x', message: 'PartitionActor message seal: unknown fields x, y (the fields are type)' });
});

t.test('no request schema answers a wrong value with raw zod text', async (t) => {
  const wrong = [null, 'x', -1, 1.5, Number.NaN, true, [], [1], {}, { a: 1 }];
  const raw: string[] = [];
  let refusals = 0;
  for (const [name, schema] of Object.entries(schemas) as [string, z.ZodType][]) {
    const shape = ((schema as unknown as { _zod: { def: { shape?: object } } })._zod.def.shape ?? {}) as Record<string, unknown>;
    for (const key of [...Object.keys(shape), 'unknown_key']) {
      for (const value of wrong) {
        const result = validateRequest(schema, { [key]: value });
        if (result.ok) continue;
        refusals++;
        if (RAW_ZOD.test(result.error.message)) raw.push(`${name} ${key}=${String(value)}: ${result.error.message}`);
      }
    }
  }
  t.ok(refusals > 500, `${refusals} refusals checked`);
  t.same(raw, [], 'every refusal is a sentence');
});
