// The remote schema of an actor (src/kernel/message-schema.ts) and the
// PartitionActor's (actors/partition-messages.ts): what a body from the
// network must look like, and how a refusal names the actor, type and field.
// One test per kind of refusal, each shown on a small actor and on the
// PartitionActor; then the values of the right type a shard still refuses.

import t from 'tap';
import { z } from 'zod';
import { partitionMessageSchema } from '../../actors/partition-messages.js';
import { BODY_DEPTH_MAX, messageSchema, type RemoteSchema } from '../../src/kernel/message-schema.js';
import { shardOf } from '../../src/storage/node-meta.js';

type Message = { type: 'add'; n: number } | { type: 'tick' };
const counter = messageSchema<Message, 'tick'>('CounterActor', { add: z.strictObject({ type: z.literal('add'), n: z.number() }) }, ['tick']);

const NOW = Date.UTC(2026, 5, 1, 12);
const DIRS = { archiveDir: '/var/lib/usage-tracker/archive', exportDir: '/var/lib/usage-tracker/exports' };
const SHARDS = 4;
const partition = partitionMessageSchema({ shard: 0, shards: SHARDS, ...DIRS, now: () => NOW });

/** The error `schema.parse(body)` throws, or undefined when it accepts the body. */
function refusal(schema: RemoteSchema, body: unknown): unknown {
  try {
    schema.parse(body);
  } catch (error) {
    return error;
  }
  return undefined;
}

function userOfShard(shard: number): string {
  for (let i = 0; ; i++) if (shardOf(`user-${i}`, SHARDS) === shard) return `user-${i}`;
}

/** A record as IngestActor hands it to shard 0. */
const record = (fields: Record<string, unknown> = {}) => ({
  id: 'r1',
  ts: NOW - 60_000,
  user_id: userOfShard(0),
  provider: 'anthropic',
  model: 'm',
  input_tokens: 1,
  output_tokens: 2,
  status: 'success',
  ingested_at: NOW,
  cost_source: 'unknown',
  ...fields,
});

/** A retention run's input as the node's RetentionActor sends it. */
const retentionInput = (fields: Record<string, unknown> = {}) => ({
  run_id: '20260601T120000000Z-a1b2c3',
  now: NOW,
  dry_run: true,
  policies: [{ name: 'old', category: 'raw_usage', type: 'time', action: 'archive', max_age_days: 30 }],
  holds: [],
  aggregated_metrics_days: 365,
  archive_dir: DIRS.archiveDir,
  export_dir: DIRS.exportDir,
  ...fields,
});

t.test('what the node itself sends is accepted and returned as parsed', async (t) => {
  t.same(counter.parse({ type: 'add', n: 2 }), { type: 'add', n: 2 });
  t.same(partition.parse({ type: 'write', records: [record()] }), { type: 'write', records: [record()] });
  t.same(partition.parse({ type: 'migrate_storage', to: 2 }), { type: 'migrate_storage', to: 2 });
  t.same(partition.parse({ type: 'retention', input: retentionInput() }), { type: 'retention', input: retentionInput() });
  t.same(partition.parse({ type: 'bucket_records', day: '2024-02-29', buckets: [0, 255] }), { type: 'bucket_records', day: '2024-02-29', buckets: [0, 255] });
  t.same(partition.parse({ type: 'status' }), { type: 'status' });
});

t.test('a missing type names the field type and the allowed types', async (t) => {
  t.match(refusal(counter, { n: 1 }), { code: 'E_BAD_REQUEST', field: 'type', message: /^CounterActor: a message needs a type; allowed types: add$/, details: { allowed_types: ['add'] } });
  t.match(refusal(partition, { records: [] }), { code: 'E_BAD_REQUEST', field: 'type', message: /^PartitionActor: a message needs a type/ });
  for (const body of [null, 3, 'add', [1], new Uint8Array(2), true]) t.match(refusal(counter, body), { code: 'E_BAD_REQUEST', field: 'type', message: /must be a map with a type/ }, `${JSON.stringify(body)}: not a map`);
  t.match(refusal(counter, { type: 7 }), { code: 'E_BAD_REQUEST', field: 'type' }, 'a type that is not a string');
  t.match(refusal(counter, JSON.parse('{"n":1,"__proto__":{"type":"add"}}')), { code: 'E_BAD_REQUEST', field: 'type' }, 'a type inherited from a prototype is no type');
});

t.test('an unknown type names the field type and lists the known ones', async (t) => {
  t.match(refusal(counter, { type: 'explode' }), { code: 'E_BAD_REQUEST', field: 'type', message: /^CounterActor: unknown message type "explode"; allowed types: add$/, details: { allowed_types: ['add'] } });
  t.match(refusal(counter, { type: 'toString' }), { code: 'E_BAD_REQUEST', field: 'type' }, 'a name on Object.prototype is no type');
  const unknown = refusal(partition, { type: 'drop_everything' }) as { field: string; message: string; details: { allowed_types: string[] } };
  t.equal(unknown.field, 'type');
  t.match(unknown.message, /unknown message type "drop_everything"; allowed types: write, get, update, .*retention, migrate_storage, migration_finish, status$/);
  t.same(unknown.details.allowed_types, partition.remoteTypes, 'details list every type the network may send');
  t.ok((refusal(counter, { type: 'x'.repeat(10_000) }) as Error).message.length < 300, 'a huge type is not echoed whole');
});

t.test('a local-only type is refused from the network', async (t) => {
  t.match(refusal(counter, { type: 'tick' }), { code: 'E_BAD_REQUEST', field: 'type', message: /"tick" is local-only/ });
  t.match(refusal(partition, { type: 'tick' }), { code: 'E_BAD_REQUEST', field: 'type', message: /^PartitionActor: message type "tick" is local-only/ });
  t.same(counter.localTypes, ['tick']);
  t.same(partition.localTypes, ['tick']);
  t.notOk(partition.remoteTypes.includes('tick'), 'the seal timer is not among the remote types');
});

t.test('a field of the wrong type is refused naming its dotted path', async (t) => {
  t.match(refusal(counter, { type: 'add', n: '2' }), { code: 'E_BAD_REQUEST', field: 'n', message: /^CounterActor message add: n: / });
  const cases: [unknown, string, RegExp][] = [
    [{ type: 'write', records: null }, 'records', /^PartitionActor message write: records: must be a list of records \(got null\)$/],
    [{ type: 'write', records: 'r1' }, 'records', /list of records/],
    [{ type: 'write', records: [null] }, 'records.0', /usage record/],
    [{ type: 'write', records: [record({ input_tokens: -1 })] }, 'records.0.input_tokens', /./],
    [{ type: 'write', records: [record(), record({ id: 'r2', cost_source: 'guess' })] }, 'records.1.cost_source', /one of/],
    [{ type: 'migrate_storage', to: 'three' }, 'to', /storage format number/],
    [{ type: 'migrate_storage', to: 99 }, 'to', /storage format this release reads/],
    [{ type: 'migrate_storage', to: Number.NaN }, 'to', /./],
    [{ type: 'retention', input: null }, 'input', /retention run input/],
    [{ type: 'retention', input: retentionInput({ dry_run: 'yes' }) }, 'input.dry_run', /true or false/],
    [{ type: 'retention', input: retentionInput({ policies: 7 }) }, 'input.policies', /list of policies/],
    [{ type: 'retention', input: retentionInput({ policies: [{ name: 'p', category: 'raw_usage', type: 'time', action: 'shred', max_age_days: 1 }] }) }, 'input.policies.0.action', /one of/],
    [{ type: 'retention', input: retentionInput({ holds: [{ id: 'h' }] }) }, 'input.holds.0.reason', /./],
    [{ type: 'migration_finish', outcome: 'maybe' }, 'outcome', /commit or undo/],
    [{ type: 'changes', from_seq: -1, limit: 10 }, 'from_seq', /at least 0/],
    [{ type: 'wal_since', from: { segment: '../../etc/passwd', offset: 0 } }, 'from.segment', /WAL segment/],
    [{ type: 'update', id: 'r1', user_id: 'u1', expected_version: 1, patch: { id: 'other' } }, 'patch.id', /./],
  ];
  for (const [body, field, message] of cases) t.match(refusal(partition, body), { code: 'E_BAD_REQUEST', field, message }, `${JSON.stringify(body).slice(0, 90)}: ${field}`);
});

t.test('a missing field is refused as required, naming it', async (t) => {
  t.match(refusal(counter, { type: 'add' }), { code: 'E_BAD_REQUEST', field: 'n', message: /^CounterActor message add: n: is required$/ });
  const { run_id: _runId, ...noRunId } = retentionInput();
  const cases: [unknown, string][] = [
    [{ type: 'write' }, 'records'],
    [{ type: 'migrate_storage' }, 'to'],
    [{ type: 'retention' }, 'input'],
    [{ type: 'retention', input: noRunId }, 'input.run_id'],
    [{ type: 'write', records: [{ ...record(), ingested_at: undefined }] }, 'records.0.ingested_at'],
    [{ type: 'get', id: 'r1' }, 'user_id'],
  ];
  for (const [body, field] of cases) t.match(refusal(partition, body), { code: 'E_BAD_REQUEST', field, message: new RegExp(`${field.replace(/\./g, '\\.')}: is required$`) }, `${field} missing`);
});

t.test('an unknown field is refused naming it', async (t) => {
  t.match(refusal(counter, { type: 'add', n: 1, m: 2 }), { code: 'E_BAD_REQUEST', field: 'm', message: /^CounterActor message add: m: unknown field \(the fields are type, n\)$/ });
  t.match(refusal(partition, { type: 'status', extra: 1 }), { code: 'E_BAD_REQUEST', field: 'extra' });
  t.match(refusal(partition, { type: 'migrate_storage', to: 2, file_delay_ms: 1e9 }), { code: 'E_BAD_REQUEST', field: 'file_delay_ms' }, "the crash fixture's pause is not the network's to set");
  t.match(refusal(partition, { type: 'retention', input: retentionInput({ shard: 3 }) }), { code: 'E_BAD_REQUEST', field: 'input.shard' });
});

t.test('prototype keys are refused by name at any depth', async (t) => {
  t.match(refusal(counter, JSON.parse('{"type":"add","n":1,"__proto__":{"x":1}}')), { code: 'E_BAD_REQUEST', field: '__proto__', message: /__proto__: reserved key/ });
  t.match(refusal(counter, { type: 'add', n: 1, deep: [{ a: JSON.parse('{"constructor":1}') }] }), { code: 'E_BAD_REQUEST', field: 'deep.0.a.constructor' });
  const hostile = JSON.parse('{"type":"retention","input":{"policies":[{"prototype":{"polluted":true}}]}}');
  t.match(refusal(partition, hostile), { code: 'E_BAD_REQUEST', field: 'input.policies.0.prototype' });
  t.notOk('polluted' in {}, 'no prototype was polluted');
});

t.test('a deep body and a huge list are refused without walking them whole', async (t) => {
  let deep: unknown = 1;
  for (let i = 0; i < 10_000; i++) deep = { a: deep };
  const tooDeep = refusal(counter, { type: 'add', n: 1, deep }) as { code: string; field: string; message: string };
  t.match(tooDeep, { code: 'E_BAD_REQUEST', message: new RegExp(`nests deeper than ${BODY_DEPTH_MAX} levels`) }, 'nesting far past the bound is refused, not a stack overflow');
  t.equal(tooDeep.field.split('.').length, BODY_DEPTH_MAX, 'the field is where the bound was crossed');
  t.match(refusal(partition, { type: 'update', id: 'r1', user_id: 'u1', expected_version: 1, patch: { metadata: deep } }), { code: 'E_BAD_REQUEST', message: /nests deeper/ });

  // The length is checked first: a hundred thousand items that would each be refused are refused on their length.
  const huge = Array.from({ length: 100_000 }, () => ({}));
  t.match(refusal(partition, { type: 'write', records: huge }), { code: 'E_BAD_REQUEST', field: 'records', message: /at most 1000 records/ });
  t.match(refusal(partition, { type: 'bucket_records', day: '2024-01-01', buckets: huge }), { code: 'E_BAD_REQUEST', field: 'buckets', message: /at most 256 buckets/ });
  t.match(refusal(partition, { type: 'retention', input: retentionInput({ holds: huge }) }), { code: 'E_BAD_REQUEST', field: 'input.holds', message: /at most 10000 holds/ });
  t.match(refusal(partition, { type: 'write', records: [] }), { code: 'E_BAD_REQUEST', field: 'records', message: /must not be empty/ });
});

t.test('PartitionActor: values of the right type that would still hurt the shard are refused', async (t) => {
  const other = userOfShard(2);
  t.match(refusal(partition, { type: 'write', records: [record(), record({ id: 'r2', user_id: other })] }), {
    code: 'E_BAD_REQUEST',
    field: 'records.1.user_id',
    message: /records\.1\.user_id: belongs to shard 2, not shard 0$/,
  }, "a record of another shard's user is not stored where no lookup finds it");
  const retention = (fields: Record<string, unknown>) => refusal(partition, { type: 'retention', input: retentionInput(fields) });
  t.match(retention({ archive_dir: '/proc/self' }), { code: 'E_BAD_REQUEST', field: 'input.archive_dir', message: /this node's retention\.archive_dir directory/ }, 'archives go nowhere but the node\'s own directory');
  t.match(retention({ export_dir: '/tmp' }), { code: 'E_BAD_REQUEST', field: 'input.export_dir' });
  t.match(retention({ export_dir: `${DIRS.exportDir}/../../..` }), { code: 'E_BAD_REQUEST', field: 'input.export_dir' });
  t.match(retention({ run_id: '../../../../tmp/escape' }), { code: 'E_BAD_REQUEST', field: 'input.run_id', message: /letters, digits/ }, 'a run id is one path segment');
  t.match(retention({ run_id: '' }), { code: 'E_BAD_REQUEST', field: 'input.run_id' });
  t.match(retention({ now: NOW + 3 * 86_400_000 }), { code: 'E_BAD_REQUEST', field: 'input.now', message: /within a day of this node's clock/ }, 'a run dated in the future would expire records early');
  t.match(retention({ now: 8.64e15 }), { code: 'E_BAD_REQUEST', field: 'input.now' });
  t.same(partition.parse({ type: 'retention', input: retentionInput({ now: NOW - 3_600_000 }) }).type, 'retention', 'a clock an hour off is accepted');
  const policy = { name: 'dup', category: 'raw_usage', type: 'time', action: 'delete', max_age_days: 1 };
  t.match(retention({ policies: [policy, { ...policy, action: 'archive' }] }), { code: 'E_BAD_REQUEST', field: 'input.policies.1', message: /policy name dup appears twice/ });
  const hold = { id: 'h1', reason: 'audit' };
  t.match(retention({ holds: [hold, hold] }), { code: 'E_BAD_REQUEST', field: 'input.holds.1', message: /hold id h1 appears twice/ });
  for (const day of ['2024-02-30', '2024-13-01', '2023-02-29', '0000-00-00']) {
    t.match(refusal(partition, { type: 'bucket_records', day, buckets: [1] }), { code: 'E_BAD_REQUEST', field: 'day', message: /day on the calendar/ }, `${day} is not on the calendar`);
  }
  t.match(refusal(partition, { type: 'records', query: { limit: 10, cursor: 'bm90IGEgY3Vyc29y' } }), { code: 'E_BAD_REQUEST', field: 'query.cursor', message: /not a cursor from a previous page/ });
  t.throws(() => partitionMessageSchema({ shard: 4, shards: 4, ...DIRS }), RangeError, 'a schema guards a shard that exists');
});
