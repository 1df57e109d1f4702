// Request bodies as a client sends them: the ingest body (one record or a
// batch) split into per-record results, the schemas of the other endpoints
// with their defaults, the subjects they go to, and the internal actor envelope.

import t from 'tap';
import type { z } from 'zod';
import { decode, encode } from '../../protocols/codec.js';
import { actorEnvelope, checkActorEnvelope, errorEnvelope, okReply, openReply } from '../../protocols/envelope.js';
import { ProtocolError } from '../../protocols/errors.js';
import { DEFAULT_LIMITS } from '../../protocols/limits.js';
import { recordValidator } from '../../protocols/record.js';
import {
  AGGREGATE_METRICS,
  GROUP_BY_KEYS,
  RECORDS_PAGE_DEFAULT,
  RECORDS_PAGE_MAX,
  parseIngest,
  requestSchemas,
  validateRequest,
  type IngestItem,
} from '../../protocols/requests.js';
import { DEFAULT_SUBJECT_PREFIX, ENDPOINTS, PROTOCOL_HEADER, PROTOCOL_VERSION, subjects } from '../../protocols/subjects.js';

const NOW = Date.UTC(2025, 5, 15, 12, 0, 0);
const validator = recordValidator(DEFAULT_LIMITS, () => NOW);
const schemas = requestSchemas(DEFAULT_LIMITS, () => NOW);

const record = (id: string, extra: Record<string, unknown> = {}) => ({
  id,
  ts: NOW - 60_000,
  user_id: 'u-1',
  provider: 'Anthropic',
  model: 'claude-sonnet',
  input_tokens: 100,
  output_tokens: 20,
  ...extra,
});

function thrown(fn: () => unknown): ProtocolError | undefined {
  try {
    fn();
  } catch (error) {
    if (error instanceof ProtocolError) return error;
    throw error;
  }
  return undefined;
}

/** What a client sees of one ingest item: index, id, and for a rejection its code and field. */
const summary = (item: IngestItem) =>
  item.ok
    ? { index: item.index, ok: true, id: item.record.id }
    : { index: item.index, ok: false, id: item.id, code: item.error.code, field: item.error.field };

t.test('ingest: a single record is item 0, normalised', async (t) => {
  const items = parseIngest(record('r-1'), validator);
  t.equal(items.length, 1);
  const [only] = items;
  t.ok(only?.ok);
  if (only?.ok) {
    t.equal(only.index, 0);
    t.equal(only.record.provider, 'anthropic');
    t.equal(only.record.status, 'success');
  }
});

t.test('ingest: a single bad record is a per-record rejection, not a failed request', async (t) => {
  const items = parseIngest(record('r-1', { input_tokens: -5 }), validator);
  t.strictSame(items.map(summary), [{ index: 0, ok: false, id: 'r-1', code: 'E_VALIDATION', field: 'input_tokens' }]);
  const noId = parseIngest({}, validator);
  t.strictSame(noId.map(summary), [{ index: 0, ok: false, id: undefined, code: 'E_VALIDATION', field: 'id' }]);
});

t.test('ingest: a batch with bad records keeps the good ones and names each bad one', async (t) => {
  const body = {
    records: [
      record('r-1'),
      record('r-2', { input_tokens: -1 }),
      record('r-3'),
      'not a record',
      record('bad\u0000id'),
      record('r-4', { colour: 'red' }),
      record('r-5', { ts: '1999-12-31T23:59:59Z' }),
      record('r-6', { metadata: { deep: { x: 1 } } }),
      record('r-7', { ts: '2025-06-15T11:00:00Z' }),
    ],
  };
  const items = parseIngest(body, validator);
  t.strictSame(items.map(summary), [
    { index: 0, ok: true, id: 'r-1' },
    { index: 1, ok: false, id: 'r-2', code: 'E_VALIDATION', field: 'input_tokens' },
    { index: 2, ok: true, id: 'r-3' },
    { index: 3, ok: false, id: undefined, code: 'E_VALIDATION', field: undefined },
    { index: 4, ok: false, id: undefined, code: 'E_VALIDATION', field: 'id' },
    { index: 5, ok: false, id: 'r-4', code: 'E_VALIDATION', field: 'colour' },
    { index: 6, ok: false, id: 'r-5', code: 'E_VALIDATION', field: 'ts' },
    { index: 7, ok: false, id: 'r-6', code: 'E_VALIDATION', field: 'metadata.deep' },
    { index: 8, ok: true, id: 'r-7' },
  ]);
  const last = items[8];
  t.equal(last?.ok ? last.record.ts : undefined, Date.UTC(2025, 5, 15, 11), 'good records in a batch are normalised too');
  const hostile = items[4];
  t.notOk(hostile !== undefined && 'id' in hostile, 'a hostile id is not echoed back');
});

t.test('ingest: the same body through msgpack and through JSON gives the same results', async (t) => {
  const body = { records: [record('r-1', { ts: '2025-06-15T11:00:00+02:00' }), record('r-2', { output_tokens: 1.5 })] };
  const viaMsgpack = parseIngest(decode(encode(body)), validator).map(summary);
  const viaJson = parseIngest(decode(encode(body, 'json'), 'json'), validator).map(summary);
  t.strictSame(viaMsgpack, viaJson);
  t.strictSame(viaJson, [
    { index: 0, ok: true, id: 'r-1' },
    { index: 1, ok: false, id: 'r-2', code: 'E_VALIDATION', field: 'output_tokens' },
  ]);
});

t.test('ingest: an empty batch is E_VALIDATION on records', async (t) => {
  const error = thrown(() => parseIngest({ records: [] }, validator));
  t.equal(error?.code, 'E_VALIDATION');
  t.equal(error?.field, 'records');
});

t.test('ingest: a batch over batchRecordsMax is E_TOO_LARGE with limit_records', async (t) => {
  const max = DEFAULT_LIMITS.batchRecordsMax;
  const full = Array.from({ length: max }, (_, i) => record(`r-${i}`));
  t.equal(parseIngest({ records: full }, validator).length, max, 'exactly the limit is accepted');

  const error = thrown(() => parseIngest({ records: [...full, record('one-more')] }, validator));
  t.equal(error?.code, 'E_TOO_LARGE');
  t.equal(error?.field, 'records');
  t.strictSame(error?.toBody(), {
    limit_records: max,
    code: 'E_TOO_LARGE',
    message: `records: ${max + 1} records; the limit is ${max}`,
    field: 'records',
  });

  const small = { ...DEFAULT_LIMITS, batchRecordsMax: 2 };
  t.equal(parseIngest({ records: [record('a'), record('b')] }, validator, small).length, 2);
  t.equal(thrown(() => parseIngest({ records: [record('a'), record('b'), record('c')] }, validator, small))?.toBody().limit_records, 2);
});

t.test('ingest: records must be an array', async (t) => {
  for (const records of ['r-1', { 0: record('r-1') }, null, 3, true]) {
    const error = thrown(() => parseIngest({ records }, validator));
    t.equal(error?.code, 'E_VALIDATION', JSON.stringify(records));
    t.equal(error?.field, 'records', JSON.stringify(records));
  }
});

t.test('ingest: a batch has no other keys', async (t) => {
  const error = thrown(() => parseIngest({ records: [record('r-1')], dry_run: true }, validator));
  t.equal(error?.code, 'E_VALIDATION');
  t.equal(error?.field, 'dry_run');
  const mixed = thrown(() => parseIngest({ ...record('r-1'), records: [record('r-2')] }, validator));
  t.equal(mixed?.code, 'E_VALIDATION', 'a record with a records key is neither a record nor a batch');
});

t.test('ingest: a body that is neither a record nor a batch is E_VALIDATION', async (t) => {
  for (const body of [null, undefined, [record('r-1')], [], 'record', 42]) {
    const error = thrown(() => parseIngest(body, validator));
    t.equal(error?.code, 'E_VALIDATION', JSON.stringify(body));
    t.equal(error?.field, undefined);
  }
});

type Test = Parameters<Parameters<typeof t.test>[0]>[0];

function valid<T>(t: Test, result: ReturnType<typeof validateRequest<T>>, what: string): T | undefined {
  if (!result.ok) {
    t.fail(`${what} should be valid: ${result.error.message}`);
    return undefined;
  }
  t.pass(what);
  return result.value;
}

function invalid(t: Test, result: { ok: boolean; error?: ProtocolError }, field: string | undefined, what: string): void {
  t.notOk(result.ok, `${what} is refused`);
  t.equal(result.error?.code, 'E_VALIDATION', `${what}: code`);
  t.equal(result.error?.field, field, `${what}: field`);
}

t.test('record.get: {id, user_id}', async (t) => {
  t.strictSame(valid(t, validateRequest(schemas.recordGet, { id: 'r-1', user_id: 'u-1' }), 'both'), { id: 'r-1', user_id: 'u-1' });
  invalid(t, validateRequest(schemas.recordGet, { id: 'r-1' }), 'user_id', 'without user_id');
  invalid(t, validateRequest(schemas.recordGet, { user_id: 'u-1' }), 'id', 'without id');
  invalid(t, validateRequest(schemas.recordGet, {}), 'id', 'an empty body');
  invalid(t, validateRequest(schemas.recordGet, { id: 'r-1', user_id: 'u-1', version: 2 }), 'version', 'an unknown key');
  invalid(t, validateRequest(schemas.recordGet, { id: 'r\u202e1', user_id: 'u-1' }), 'id', 'a bidi override');
  invalid(t, validateRequest(schemas.recordGet, { id: 'x'.repeat(129), user_id: 'u-1' }), 'id', 'an id over 128');
  invalid(t, validateRequest(schemas.recordGet, { id: 1, user_id: 'u-1' }), 'id', 'a numeric id');
});

t.test('record.update: {id, user_id, expected_version, patch}', async (t) => {
  const body = { id: 'r-1', user_id: 'u-1', expected_version: 1, patch: { cost_usd: 0.5 } };
  t.strictSame(valid(t, validateRequest(schemas.recordUpdate, body), 'a full update'), body);
  for (const version of [0, -1, 1.5, '1', null]) {
    invalid(t, validateRequest(schemas.recordUpdate, { ...body, expected_version: version }), 'expected_version', `expected_version ${JSON.stringify(version)}`);
  }
  const { patch: _patch, ...noPatch } = body;
  invalid(t, validateRequest(schemas.recordUpdate, noPatch), 'patch', 'without patch');
  const { expected_version: _version, ...noVersion } = body;
  invalid(t, validateRequest(schemas.recordUpdate, noVersion), 'expected_version', 'without expected_version');
  invalid(t, validateRequest(schemas.recordUpdate, { ...body, force: true }), 'force', 'an unknown key');

  // The patch itself is checked by the record validator: a client sees the patch field named.
  const request = validateRequest(schemas.recordUpdate, { ...body, patch: { ts: NOW } });
  t.ok(request.ok, 'the request shape is fine');
  const patch = validator.validatePatch(request.ok ? request.value.patch : undefined);
  t.equal(patch.ok ? undefined : patch.error.field, 'ts', 'ts is not patchable');
});

t.test('query.records: filters, limit 100 by default, cursor', async (t) => {
  t.strictSame(valid(t, validateRequest(schemas.queryRecords, {}), 'an empty query'), { limit: RECORDS_PAGE_DEFAULT });
  t.equal(RECORDS_PAGE_DEFAULT, 100);
  const query = {
    user_id: 'u-1',
    provider: 'OpenAI',
    model: 'gpt-4o',
    status: 'error',
    from: '2025-06-01T00:00:00Z',
    to: NOW,
    limit: 50,
    cursor: 'opaque',
  };
  t.strictSame(valid(t, validateRequest(schemas.queryRecords, query), 'every filter'), {
    ...query,
    provider: 'openai',
    from: Date.UTC(2025, 5, 1),
  });
  t.equal(valid(t, validateRequest(schemas.queryRecords, { limit: 1 }), 'limit 1')?.limit, 1);
  t.equal(valid(t, validateRequest(schemas.queryRecords, { limit: RECORDS_PAGE_MAX }), 'limit 1000')?.limit, 1000);
  for (const limit of [0, -1, RECORDS_PAGE_MAX + 1, 2.5, '10']) {
    invalid(t, validateRequest(schemas.queryRecords, { limit }), 'limit', `limit ${JSON.stringify(limit)}`);
  }
  t.ok(validateRequest(schemas.queryRecords, { cursor: 'c'.repeat(1024) }).ok, 'a cursor of 1024 characters');
  invalid(t, validateRequest(schemas.queryRecords, { cursor: 'c'.repeat(1025) }), 'cursor', 'a cursor of 1025 characters');
  invalid(t, validateRequest(schemas.queryRecords, { group_by: ['day'] }), 'group_by', 'group_by belongs to query.aggregate');
  invalid(t, validateRequest(schemas.queryRecords, { userId: 'u-1' }), 'userId', 'a misspelt filter');
});

t.test('query filters: from and to are timestamps in range, from not after to', async (t) => {
  for (const schema of [schemas.queryRecords, schemas.queryAggregate] as z.ZodType<unknown>[]) {
    t.ok(validateRequest(schema, { from: NOW, to: NOW }).ok, 'from equal to to');
    invalid(t, validateRequest(schema, { from: NOW, to: NOW - 1 }), 'from', 'from after to');
    invalid(t, validateRequest(schema, { from: '2025-06-02', to: '2025-06-01' }), 'from', 'ISO from after ISO to');
    invalid(t, validateRequest(schema, { to: Date.UTC(2100, 0, 1) }), 'to', 'to far in the future');
    invalid(t, validateRequest(schema, { from: Date.UTC(1999, 0, 1) }), 'from', 'from before 2000');
    invalid(t, validateRequest(schema, { from: 'last week' }), 'from', 'from not a date');
    invalid(t, validateRequest(schema, { provider: 'a\u0000' }), 'provider', 'a NUL in a filter');
  }
});

t.test('query filters: status is one of the record statuses', async (t) => {
  invalid(t, validateRequest(schemas.queryRecords, { status: 'sucess' }), 'status', 'a misspelt status');
  invalid(t, validateRequest(schemas.queryAggregate, { status: 'failed' }), 'status', 'an unknown status');
});

t.test('query.aggregate: group_by and metrics with their defaults', async (t) => {
  t.strictSame(valid(t, validateRequest(schemas.queryAggregate, {}), 'an empty query'), { group_by: [], metrics: ['count', 'tokens', 'cost'] });
  t.strictSame([...GROUP_BY_KEYS], ['user_id', 'provider', 'model', 'day', 'hour']);
  t.strictSame([...AGGREGATE_METRICS], ['count', 'input_tokens', 'output_tokens', 'tokens', 'cost', 'latency_p50', 'latency_p95']);
  const all = valid(t, validateRequest(schemas.queryAggregate, { user_id: 'u-1', group_by: [...GROUP_BY_KEYS], metrics: [...AGGREGATE_METRICS] }), 'every key and metric');
  t.strictSame(all?.group_by, [...GROUP_BY_KEYS]);
  t.strictSame(all?.metrics, [...AGGREGATE_METRICS]);
  t.equal(valid(t, validateRequest(schemas.queryAggregate, { provider: 'Google', group_by: ['model'] }), 'a filter')?.provider, 'google');

  invalid(t, validateRequest(schemas.queryAggregate, { group_by: ['week'] }), 'group_by.0', 'an unknown group_by');
  invalid(t, validateRequest(schemas.queryAggregate, { group_by: ['day', 'minute'] }), 'group_by.1', 'the second group_by unknown');
  invalid(t, validateRequest(schemas.queryAggregate, { group_by: 'day' }), 'group_by', 'group_by not a list');
  invalid(t, validateRequest(schemas.queryAggregate, { metrics: ['sum'] }), 'metrics.0', 'an unknown metric');
  invalid(t, validateRequest(schemas.queryAggregate, { metrics: [] }), 'metrics', 'no metrics');
  invalid(t, validateRequest(schemas.queryAggregate, { limit: 10 }), 'limit', 'limit belongs to query.records');
});

t.test('admin.status: an empty body and nothing else', async (t) => {
  t.strictSame(valid(t, validateRequest(schemas.adminStatus, {}), 'an empty body'), {});
  t.strictSame(valid(t, validateRequest(schemas.adminStatus, decode(new Uint8Array(0))), 'no body at all'), {});
  invalid(t, validateRequest(schemas.adminStatus, { node_id: 'node-a' }), 'node_id', 'a node is chosen by its subject, not by a key');
  invalid(t, validateRequest(schemas.adminStatus, { verbose: true }), 'verbose', 'an unknown key');
});

t.test('subjects: the default prefix and every endpoint', async (t) => {
  const s = subjects();
  t.equal(s.prefix, DEFAULT_SUBJECT_PREFIX);
  t.strictSame(
    (Object.keys(ENDPOINTS) as (keyof typeof ENDPOINTS)[]).map((name) => s.endpoint(name)),
    ['usage.v1.ingest', 'usage.v1.record.get', 'usage.v1.record.update', 'usage.v1.query.records', 'usage.v1.query.aggregate', 'usage.v1.query.similar', 'usage.v1.query.anomalies', 'usage.v1.admin.status', 'usage.v1.admin.sync.status', 'usage.v1.admin.sync.resync', 'usage.v1.admin.sync.verify', 'usage.v1.admin.sync.conflicts', 'usage.v1.admin.sync.resolve', 'usage.v1.admin.backup.create', 'usage.v1.admin.backup.list', 'usage.v1.admin.backup.verify', 'usage.v1.admin.backup.restore', 'usage.v1.admin.migration.status', 'usage.v1.admin.migration.plan', 'usage.v1.admin.migration.apply', 'usage.v1.admin.migration.rollback', 'usage.v1.admin.retention.run', 'usage.v1.admin.retention.status'],
  );
  t.equal(s.nodeEndpoint('node-a', 'ingest'), 'usage.v1.node.node-a.ingest');
  t.equal(s.nodeEndpoint('node_b', 'query.aggregate'), 'usage.v1.node.node_b.query.aggregate');
  t.equal(s.nodeActors('node-a'), 'usage.v1.node.node-a.actor');
  t.equal(PROTOCOL_VERSION, 1);
  t.equal(PROTOCOL_HEADER, 'Usage-Protocol');
});

t.test('subjects: a custom prefix, and prefixes and node ids that would break subjects', async (t) => {
  t.equal(subjects('acme.usage').endpoint('record.get'), 'acme.usage.v1.record.get');
  t.equal(subjects('test-run_42').nodeActors('n1'), 'test-run_42.v1.node.n1.actor');
  for (const prefix of ['', 'usage.*', 'usage.>', '>', 'us age', '.usage', 'usage.', 'usage..x', 'x'.repeat(129)]) {
    t.throws(() => subjects(prefix), TypeError, `prefix ${JSON.stringify(prefix.slice(0, 20))}`);
  }
  const s = subjects();
  for (const nodeId of ['', 'a.b', '*', '>', 'a b', 'n'.repeat(65)]) {
    t.throws(() => s.nodeActors(nodeId), TypeError, `node id ${JSON.stringify(nodeId.slice(0, 20))}`);
    t.throws(() => s.nodeEndpoint(nodeId, 'ingest'), TypeError);
  }
  t.equal(s.nodeActors('n'.repeat(64)), `usage.v1.node.${'n'.repeat(64)}.actor`, 'a 64-character node id');
});

t.test('actor envelope (internal): shape, checks, and replies', async (t) => {
  const envelope = actorEnvelope('node-a/shards/3', 'ask', { op: 'get', id: 'r-1' });
  t.strictSame(envelope, { v: 1, to: 'node-a/shards/3', kind: 'ask', body: { op: 'get', id: 'r-1' } });
  t.strictSame(checkActorEnvelope(decode(encode(envelope))), envelope, 'survives the wire');

  const refused = (value: unknown, field: string | undefined, what: string) => {
    const error = thrown(() => checkActorEnvelope(value));
    t.equal(error?.code, 'E_BAD_REQUEST', `${what}: code`);
    t.equal(error?.field, field, `${what}: field`);
  };
  refused(null, undefined, 'null');
  refused('envelope', undefined, 'a string');
  refused([1, 'node-a/shards/3', 'ask'], undefined, 'a list');
  refused(new Uint8Array(4), undefined, 'bytes');
  refused({ ...envelope, v: 2 }, 'v', 'protocol version 2');
  refused({ ...envelope, v: '1' }, 'v', 'version as text');
  refused({ to: envelope.to, kind: 'ask' }, 'v', 'no version');
  refused({ ...envelope, to: '' }, 'to', 'an empty target');
  refused({ ...envelope, to: 'x'.repeat(513) }, 'to', 'a target over 512');
  refused({ ...envelope, kind: 'call' }, 'kind', 'an unknown kind');
  t.strictSame(checkActorEnvelope({ ...envelope, kind: 'tell' }).kind, 'tell');

  t.strictSame(okReply({ version: 2 }), { v: 1, ok: true, body: { version: 2 } });
  t.strictSame(openReply(decode(encode(okReply({ version: 2 })))), { version: 2 });
  const conflict = new ProtocolError('E_CONFLICT', 'stale version', { field: 'expected_version', details: { current_version: 3 } });
  const wire = decode(encode(errorEnvelope(conflict)));
  t.strictSame(wire, { v: 1, ok: false, error: { current_version: 3, code: 'E_CONFLICT', message: 'stale version', field: 'expected_version' } });
  const back = thrown(() => openReply(wire));
  t.equal(back?.code, 'E_CONFLICT');
  t.equal(back?.field, 'expected_version');
  t.strictSame(back?.details, { current_version: 3 });
  t.equal(thrown(() => openReply({ v: 1 }))?.code, 'E_INTERNAL', 'a malformed reply');
  t.equal(thrown(() => openReply(null))?.code, 'E_INTERNAL');
});
