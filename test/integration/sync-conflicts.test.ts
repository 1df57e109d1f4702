// Rows edited directly in PostgreSQL, against each conflict strategy: the
// edit is detected (a trigger marks writes that are not usage-tracker's),
// the strategy decides, local data and the mirror converge on the winner,
// and every decision is recorded in sync_conflicts. Manual conflicts are
// listed and resolved with admin.sync.conflicts and admin.sync.resolve.

import t from 'tap';
import pg from 'pg';
import { cli } from '../helpers/cli.js';
import { startTestNode, uniqueName, type TestNode } from '../helpers/node.js';
import { waitFor } from '../helpers/wait.js';

const POSTGRES_URL = process.env.USAGE_TRACKER_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const admin = new pg.Pool({ connectionString: POSTGRES_URL, max: 2 });
t.teardown(() => admin.end());

interface Setup {
  node: TestNode;
  schema: string;
  records: { id: string; user_id: string; output_tokens: number }[];
}

async function setup(t: Tap, strategy: string, priority?: string): Promise<Setup> {
  const schema = uniqueName('conflict');
  const yaml =
    `cluster:\n  shards: 2\nbackends:\n  postgres:\n    url: ${POSTGRES_URL}\n    schema: ${schema}\n    window_ms: 20\n    conflict_strategy: ${strategy}\n` +
    (priority ? `    source_priority: [${priority}]\n` : '');
  const node = await startTestNode(yaml);
  t.teardown(async () => {
    await node.stop();
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  });
  const records = Array.from({ length: 6 }, (_, i) => ({
    id: `${schema}-r${i}`,
    ts: Date.now() - 3_600_000 + i,
    user_id: `user-${i % 3}`,
    provider: 'openai',
    model: 'gpt-4o',
    input_tokens: 1000 + i,
    output_tokens: 100 + i,
    latency_ms: 500,
    cost_usd: 0.01,
  }));
  await node.call('ingest', { records });
  await until(async () => Number((await admin.query(`SELECT count(*) AS n FROM "${schema}".usage_records`)).rows[0].n) === 6, 'the mirror has the records');
  return { node, schema, records };
}

type Tap = { teardown(fn: () => unknown): void };

async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  let last: unknown;
  // The schema may not exist yet while the mirror connects: a failed check is a no.
  await waitFor(
    what,
    () =>
      check().catch((error: unknown) => {
        last = (error as Error).message;
        return false;
      }),
    { pollMs: 100, describe: () => last ?? 'the check said no' },
  );
}

const row = async (schema: string, id: string) => (await admin.query(`SELECT * FROM "${schema}".usage_records WHERE id = $1`, [id])).rows[0];
const conflicts = async (schema: string, id: string) => (await admin.query(`SELECT * FROM "${schema}".sync_conflicts WHERE id = $1 ORDER BY conflict_id`, [id])).rows;
const localOf = async (node: TestNode, record: { id: string; user_id: string }) => (await node.call('record.get', { id: record.id, user_id: record.user_id })).record;

t.test('latest_wins: a later edit becomes the next local version, and the mirror follows', async (t) => {
  const { node, schema, records } = await setup(t, 'latest_wins');
  const target = records[0]!;
  await admin.query(`UPDATE "${schema}".usage_records SET output_tokens = 777, status = 'error' WHERE id = $1`, [target.id]);
  t.ok((await row(schema, target.id)).edited_outside_at, 'the trigger marked the edit');
  await until(async () => (await localOf(node, target)).version === 2, 'the edit is taken into local data');
  const local = await localOf(node, target);
  t.same([local.output_tokens, local.status, local.vv[node.config.node.id]], [777, 'error', 2], 'local data took the edit as version 2 made by this node');
  await until(async () => (await row(schema, target.id)).version === 2, 'the mirror has version 2');
  const mirrored = await row(schema, target.id);
  t.equal(mirrored.edited_outside_at, null, 'the row is usage-tracker\'s again');
  t.same(mirrored.version_vector, local.vv);
  await until(async () => (await conflicts(schema, target.id)).length === 1, 'the decision is recorded');
  const recorded = await conflicts(schema, target.id);
  t.match(recorded[0].resolution, /^remote: the edit .* is later than the local version/);

  // An edit older than the local version loses: the local version is written back over it.
  const other = records[1]!;
  await admin.query(`ALTER TABLE "${schema}".usage_records DISABLE TRIGGER usage_records_outside_edit`);
  await admin.query(`UPDATE "${schema}".usage_records SET output_tokens = 1, edited_outside_at = now() - interval '10 days' WHERE id = $1`, [other.id]);
  await admin.query(`ALTER TABLE "${schema}".usage_records ENABLE TRIGGER usage_records_outside_edit`);
  await until(async () => (await conflicts(schema, other.id)).length === 1, 'the older edit is dealt with');
  t.equal(Number((await row(schema, other.id)).output_tokens), other.output_tokens, 'the local value is back');
  t.equal((await localOf(node, other)).version, 1, 'local data is unchanged');
  t.match((await conflicts(schema, other.id))[0].resolution, /^local: the local version .* is later than the edit/);

  // A row inserted outside has no local record: it goes.
  await admin.query(
    `INSERT INTO "${schema}".usage_records (shard, id, user_id, ts, provider, model, input_tokens, output_tokens, cost_source, status, version, seq, ingested_at)
     VALUES (0, 'inserted-outside', 'user-x', now(), 'openai', 'gpt-4o', 1, 1, 'unknown', 'success', 1, 1, now())`,
  );
  await until(async () => (await conflicts(schema, 'inserted-outside')).length === 1, 'the row inserted outside is dealt with');
  t.equal(await row(schema, 'inserted-outside'), undefined, 'and removed');
  t.match((await conflicts(schema, 'inserted-outside'))[0].resolution, /^remove: no local record/);

  // An edit that is not a valid record is parked, whatever the strategy.
  const third = records[2]!;
  await admin.query(`UPDATE "${schema}".usage_records SET output_tokens = -5 WHERE id = $1`, [third.id]);
  await until(async () => (await conflicts(schema, third.id)).length === 1, 'the invalid edit is parked');
  const parked = (await conflicts(schema, third.id))[0];
  t.equal(parked.resolved_at, null, 'open');
  t.equal((await localOf(node, third)).output_tokens, third.output_tokens, 'local data keeps its valid value');
  const status = (await node.call('admin.sync.status', { backend: 'postgres' })).backends[0];
  t.ok(status.conflicts_resolved >= 3 && status.conflicts_parked >= 1, 'status counts the decisions');
});

t.test('merge: the fields the edit changed are taken in, the others stay', async (t) => {
  const { node, schema, records } = await setup(t, 'merge');
  const target = records[3]!;
  const updated = await node.call('record.update', { id: target.id, user_id: target.user_id, expected_version: 1, patch: { output_tokens: 555 } });
  t.equal(updated.version, 2);
  await until(async () => (await row(schema, target.id)).version === 2, 'the local update reached the mirror');
  await admin.query(`UPDATE "${schema}".usage_records SET status = 'timeout', latency_ms = 9999 WHERE id = $1`, [target.id]);
  await until(async () => (await localOf(node, target)).version === 3, 'the merge made version 3');
  const local = await localOf(node, target);
  t.same([local.output_tokens, local.status, local.latency_ms], [555, 'timeout', 9999], 'the local change and the edit, both kept');
  await until(async () => (await row(schema, target.id)).version === 3, 'the mirror has version 3');
  await until(async () => (await conflicts(schema, target.id)).length === 1, 'the merge is recorded');
  t.match((await conflicts(schema, target.id))[0].resolution, /^remote: merged (status, latency_ms|latency_ms, status) from the edit/);
});

t.test('source_priority: the first source listed wins', async (t) => {
  const mirrorFirst = await setup(t, 'source_priority', 'mirror, local');
  const a = mirrorFirst.records[0]!;
  await admin.query(`UPDATE "${mirrorFirst.schema}".usage_records SET output_tokens = 4242 WHERE id = $1`, [a.id]);
  await until(async () => (await localOf(mirrorFirst.node, a)).output_tokens === 4242, 'the mirror wins');

  const localFirst = await setup(t, 'source_priority', 'local, mirror');
  const b = localFirst.records[0]!;
  await admin.query(`UPDATE "${localFirst.schema}".usage_records SET output_tokens = 4242 WHERE id = $1`, [b.id]);
  await until(async () => (await conflicts(localFirst.schema, b.id)).length === 1, 'local wins');
  t.equal(Number((await row(localFirst.schema, b.id)).output_tokens), b.output_tokens);
  t.equal((await localOf(localFirst.node, b)).version, 1);
});

t.test('manual: conflicts are parked, listed, and resolved by an admin either way', async (t) => {
  const { node, schema, records } = await setup(t, 'manual');
  const [keep, take] = [records[4]!, records[5]!];
  await admin.query(`UPDATE "${schema}".usage_records SET output_tokens = 1234 WHERE id = ANY($1)`, [[keep.id, take.id]]);
  let listed: any[] = [];
  await until(async () => {
    listed = (await node.call('admin.sync.conflicts', { backend: 'postgres' })).conflicts;
    return listed.length === 2;
  }, 'both conflicts are listed');
  t.ok(listed.every((c) => c.strategy === 'manual' && c.resolved_at === null && c.remote_record.output_tokens === 1234));
  t.equal((await localOf(node, keep)).output_tokens, keep.output_tokens, 'nothing changes until an admin decides');
  const byId = new Map(listed.map((c) => [c.id, c.conflict_id]));
  const prefix = node.subjects.prefix;
  const shown = await cli(['sync', 'conflicts', 'postgres'], prefix);
  t.equal(shown.code, 0, shown.stderr);
  t.match(shown.stdout, new RegExp(`\\| +${byId.get(keep.id)} \\| .* \\| ${keep.id} \\| .* \\| manual .* \\| open +\\|`));
  const badTake = await cli(['sync', 'resolve', 'postgres', String(byId.get(keep.id)), '--take', 'both'], prefix);
  t.equal(badTake.code, 1);
  t.match(badTake.stderr, /E_VALIDATION: take: must be 'local' or 'remote'/);

  const kept = await cli(['sync', 'resolve', 'postgres', String(byId.get(keep.id)), '--take', 'local'], prefix);
  t.equal(kept.code, 0, kept.stderr);
  t.match(kept.stdout, new RegExp(`conflict ${byId.get(keep.id)} on ${keep.id}: local: by an admin`));
  t.equal(Number((await row(schema, keep.id)).output_tokens), keep.output_tokens, 'take local: the row is written back');

  const taken = await node.call('admin.sync.resolve', { backend: 'postgres', conflict_id: byId.get(take.id), take: 'remote' });
  t.equal(taken.ok, true);
  t.equal((await localOf(node, take)).output_tokens, 1234, 'take remote: local data takes the edit');
  await until(async () => (await row(schema, take.id)).version === 2, 'and the mirror gets the new version');
  t.same((await node.call('admin.sync.conflicts', { backend: 'postgres' })).conflicts, [], 'nothing is open any more');
  t.equal((await node.call('admin.sync.conflicts', { backend: 'postgres', open: false })).conflicts.length, 2, 'both stay on record');
  t.match((await cli(['sync', 'conflicts', 'postgres'], prefix)).stdout, /^postgres: no open conflict/);
  t.match((await cli(['sync', 'conflicts', 'postgres', '--all'], prefix)).stdout, /remote: by an admin/);

  const again = await node.call('admin.sync.resolve', { backend: 'postgres', conflict_id: byId.get(take.id), take: 'local' });
  t.equal(again.error?.code, 'E_CONFLICT', 'a resolved conflict cannot be resolved again');
  for (const [body, code, field] of [
    [{ backend: 'postgres', conflict_id: 999999, take: 'local' }, 'E_NOT_FOUND', 'conflict_id'],
    [{ backend: 'postgres', conflict_id: 1, take: 'both' }, 'E_VALIDATION', 'take'],
    [{ backend: 'postgres', conflict_id: -1, take: 'local' }, 'E_VALIDATION', 'conflict_id'],
    [{ backend: 'postgres', conflict_id: '1', take: 'local' }, 'E_VALIDATION', 'conflict_id'],
    [{ backend: 'chroma', conflict_id: 1, take: 'local' }, 'E_NOT_FOUND', 'backend'],
  ] as const) {
    const reply = await node.call('admin.sync.resolve', body);
    t.equal(reply.error?.code, code, `${JSON.stringify(body)}: ${code}`);
    t.equal(reply.error?.field, field);
  }
  for (const [body, field] of [
    [{ backend: 'postgres', limit: 0 }, 'limit'],
    [{ backend: 'postgres', open: 'yes' }, 'open'],
    [{ backend: 'postgres', extra: 1 }, undefined],
  ] as const) {
    const reply = await node.call('admin.sync.conflicts', body);
    t.equal(reply.error?.code, 'E_VALIDATION');
    if (field) t.equal(reply.error?.field, field);
  }
});
