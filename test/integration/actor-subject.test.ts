// The internal actor subject (`<prefix>.v1.node.<id>.actor`) against a real
// node over real NATS (issue 10): any NATS client can publish there, so a
// body of the wrong shape must be refused where it enters, as E_BAD_REQUEST
// naming the actor, the message type and the field, and must never reach
// (nor restart) the actor. Records written before and after are all kept.

import { resolve } from 'node:path';
import t from 'tap';
import { decode, encodeInternal } from '../../protocols/codec.js';
import { actorEnvelope } from '../../protocols/envelope.js';
import { shardOf } from '../../src/storage/node-meta.js';
import { startTestNode, type TestNode } from '../helpers/node.js';

interface StatusTree {
  path: string;
  restarts: number;
  children?: StatusTree[];
}

function find(tree: StatusTree, path: string): StatusTree | undefined {
  if (tree.path === path) return tree;
  for (const child of tree.children ?? []) {
    const found = find(child, path);
    if (found) return found;
  }
  return undefined;
}

async function restartsOf(tn: TestNode, path: string): Promise<number> {
  const status = await tn.call('admin.status', {});
  const node = find(status.tree as StatusTree, path);
  if (!node) throw new Error(`no ${path} in the status tree`);
  return node.restarts;
}

/** Asks an actor over the internal subject and returns the decoded reply envelope. */
async function askRaw(tn: TestNode, to: string, body: unknown): Promise<any> {
  const subject = tn.subjects.nodeActors(tn.config.node.id);
  const reply = await tn.client.request(subject, encodeInternal(actorEnvelope(to, 'ask', body, 5000)), { timeoutMs: 10_000 });
  return decode(reply.data, 'msgpack', { payloadBytesMax: 64 << 20, nestingDepthMax: 64 });
}

function tellRaw(tn: TestNode, to: string, body: unknown): void {
  tn.client.publish(tn.subjects.nodeActors(tn.config.node.id), encodeInternal(actorEnvelope(to, 'tell', body)));
}

function userOfShard(shard: number, shards: number): string {
  for (let i = 0; ; i++) if (shardOf(`peer-user-${i}`, shards) === shard) return `peer-user-${i}`;
}

const records = (stem: string, count: number) =>
  Array.from({ length: count }, (_, i) => ({
    id: `${stem}-${i}`,
    ts: Date.now() - i * 1000,
    user_id: `user-${i % 5}`,
    provider: 'anthropic',
    model: 'claude-sonnet-4',
    input_tokens: 10 + i,
    output_tokens: 5,
  }));

t.test('bodies of the wrong shape on the actor subject are refused at the boundary', async (t) => {
  const tn = await startTestNode('cluster:\n  shards: 2\n');
  t.teardown(() => tn.stop());
  const partition = `${tn.config.node.id}/shards/partition-0`;
  const before = await tn.call('ingest', { records: records('before', 20) });
  t.equal(before.ok, true, 'records written before');
  const restartsBefore = await restartsOf(tn, partition);

  // The flood: tells first (no answer), then the same as requests.
  for (let i = 0; i < 100; i++) tellRaw(tn, partition, { type: 'write', records: null });
  const replies = await Promise.all(Array.from({ length: 100 }, () => askRaw(tn, partition, { type: 'write', records: null })));
  for (const reply of replies) {
    if (reply.ok !== false || reply.error.code !== 'E_BAD_REQUEST' || reply.error.field !== 'records') {
      t.fail(`a write with records null: ${JSON.stringify(reply)}`);
      break;
    }
  }
  t.match(replies[0].error.message, /PartitionActor.*write.*records/, 'the message names the actor, the type and the field');

  const wrongShapes: [string, unknown, string | RegExp][] = [
    ['migrate_storage without to', { type: 'migrate_storage' }, 'to'],
    ['migrate_storage with a string to', { type: 'migrate_storage', to: 'three' }, 'to'],
    ['migrate_storage with a fixture delay', { type: 'migrate_storage', to: 2, file_delay_ms: 1e9 }, 'file_delay_ms'],
    ['retention without input', { type: 'retention' }, 'input'],
    ['retention with input null', { type: 'retention', input: null }, 'input'],
    ['retention with policies not a list', { type: 'retention', input: { run_id: 'r', now: Date.now(), dry_run: true, policies: 7, holds: [], aggregated_metrics_days: 30, archive_dir: '/tmp/a', export_dir: '/tmp/e' } }, 'input.policies'],
    ['a write of a record with no id', { type: 'write', records: [{ ts: 1 }] }, 'records.0.id'],
    ['an unknown field', { type: 'status', extra: 1 }, 'extra'],
    // msgpackr decodes the key __proto__ as __proto_; either way it is refused by name.
    ['a prototype key', JSON.parse('{"type":"status","__proto__":{"polluted":true}}'), /^__proto__?$/],
    ['a prototype key deep inside', { type: 'update', id: 'a', user_id: 'u', expected_version: 1, patch: { metadata: JSON.parse('{"constructor":{"prototype":1}}') } }, 'patch.metadata.constructor'],
    ['no type', { records: [] }, 'type'],
    ['a body that is not a map', [1, 2, 3], 'type'],
    ['an unknown type', { type: 'explode' }, 'type'],
    ['a local-only type', { type: 'tick' }, 'type'],
  ];
  for (const [what, body, field] of wrongShapes) {
    tellRaw(tn, partition, body);
    const reply = await askRaw(tn, partition, body);
    t.match(reply, { ok: false, error: { code: 'E_BAD_REQUEST', field } }, `${what}: E_BAD_REQUEST naming ${String(field)}`);
  }
  const unknown = await askRaw(tn, partition, { type: 'explode' });
  t.match(unknown.error.message, /PartitionActor.*explode.*write.*status/, 'an unknown type is answered with the allowed types');
  t.ok(!('polluted' in {}), 'no prototype was polluted');

  const ingestPath = `${tn.config.node.id}/ingest/ingest-0`;
  t.match(await askRaw(tn, ingestPath, { body: {} }), { ok: false, error: { code: 'E_BAD_REQUEST', field: 'to' } }, 'an actor with no remote schema is refused');

  // Good messages still go through, after every tell above was handled in order.
  t.match(await askRaw(tn, partition, { type: 'status' }), { ok: true }, 'a well-formed status ask is answered');
  const peerRecord = { ...records('peer', 1)[0]!, user_id: userOfShard(0, 2), status: 'success', ingested_at: Date.now(), cost_source: 'unknown' };
  t.match(await askRaw(tn, partition, { type: 'write', records: [peerRecord] }), { ok: true, body: { results: [{ status: 'stored' }] } }, 'a well-formed write from a peer is stored');
  t.equal(await restartsOf(tn, partition), restartsBefore, 'the PartitionActor never restarted');

  const after = await tn.call('ingest', { records: records('after', 20) });
  t.equal(after.ok, true, 'records written after');
  const page = await tn.call('query.records', { limit: 1000 });
  const ids = new Set((page.records as { id: string }[]).map((record) => record.id));
  for (const id of [...records('before', 20), ...records('after', 20)].map((record) => record.id)) {
    if (!ids.has(id)) t.fail(`record ${id} is missing`);
  }
  t.ok(ids.has('peer-0'), 'the record a peer wrote is there');
  t.equal(ids.size, 41, 'every record written before and after is there, and nothing else');
});

t.test('well-formed bodies that used to hurt a shard are refused or answered, and it never restarts', async (t) => {
  const tn = await startTestNode('cluster:\n  shards: 2\n');
  t.teardown(() => tn.stop());
  const partition = `${tn.config.node.id}/shards/partition-0`;
  const user = userOfShard(0, 2);
  const stored = records('sealed', 10).map((record) => ({ ...record, user_id: user }));
  t.equal((await tn.call('ingest', { records: stored })).ok, true, 'records written');
  t.match(await askRaw(tn, partition, { type: 'seal' }), { ok: true }, 'and sealed, so a rewrite has a file to rewrite');
  const restartsBefore = await restartsOf(tn, partition);

  // A second rewrite before the first commits or rolls back found the first one's undo and crashed the shard.
  t.match(await askRaw(tn, partition, { type: 'migrate_storage', to: 1 }), { ok: true, body: { files: 1 } }, 'a rewrite to format 1');
  t.match(await askRaw(tn, partition, { type: 'migrate_storage', to: 1 }), { ok: false, error: { code: 'E_CONFLICT', message: /a migration holds the shard/ } }, 'a second one is a conflict');
  t.match(await askRaw(tn, partition, { type: 'migration_finish', outcome: 'undo' }), { ok: true, body: { health: 'serving', format_version: 2 } }, 'the first is rolled back');

  // A retention run writing under /proc wedged the shard's filesystem calls for good; a run id with `..` wrote outside the archive.
  const input = { run_id: 'r1', now: Date.now(), dry_run: false, policies: [{ name: 'all', category: 'raw_usage', type: 'time', action: 'archive', max_age_days: 1 }], holds: [], aggregated_metrics_days: 30 };
  const dirs = { archive_dir: resolve(tn.config.retention.archive_dir), export_dir: resolve(tn.config.retention.export_dir) };
  t.match(await askRaw(tn, partition, { type: 'retention', input: { ...input, ...dirs, archive_dir: '/proc/usage-tracker' } }), { ok: false, error: { code: 'E_BAD_REQUEST', field: 'input.archive_dir' } }, 'an archive directory not the node\'s own');
  t.match(await askRaw(tn, partition, { type: 'retention', input: { ...input, ...dirs, run_id: '../../escape' } }), { ok: false, error: { code: 'E_BAD_REQUEST', field: 'input.run_id' } }, 'a run id that is a path');
  t.match(await askRaw(tn, partition, { type: 'retention', input: { ...input, ...dirs, now: Date.now() + 400 * 86_400_000 } }), { ok: false, error: { code: 'E_BAD_REQUEST', field: 'input.now' } }, 'a run dated a year ahead');
  t.match(await askRaw(tn, partition, { type: 'retention', input: { ...input, ...dirs, dry_run: true } }), { ok: true, body: { result: { shard: 0 } } }, "a run on the node's own directories is answered");

  const otherUser = userOfShard(1, 2);
  const stray = { ...records('stray', 1)[0]!, user_id: otherUser, status: 'success', ingested_at: Date.now(), cost_source: 'unknown' };
  t.match(await askRaw(tn, partition, { type: 'write', records: [stray] }), { ok: false, error: { code: 'E_BAD_REQUEST', field: 'records.0.user_id', message: /belongs to shard 1, not shard 0/ } }, "a record of another shard's user");
  t.match(await askRaw(tn, partition, { type: 'bucket_records', day: '2024-02-30', buckets: [1] }), { ok: false, error: { code: 'E_BAD_REQUEST', field: 'day' } }, 'a day not on the calendar');

  t.equal(await restartsOf(tn, partition), restartsBefore, 'the PartitionActor never restarted');
  const page = await tn.call('query.records', { user_id: user, limit: 100 });
  t.same((page.records as { id: string }[]).map((record) => record.id).sort(), stored.map((record) => record.id).sort(), 'every record written is there, and no stray one');
});
