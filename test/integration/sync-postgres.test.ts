// The PostgreSQL mirror against a real server: it converges to exactly the
// local data (ids, versions, content), survives an outage under load
// without stalling ingest, replays idempotently after a restart and a
// resync, and the admin commands refuse bad input clearly. Each test has a
// schema of its own; an outage goes through a TCP proxy in front of the
// real server, so other tests keep their database.

import t, { type Test } from 'tap';
import pg from 'pg';
import { createGenerator } from '../../src/demo/generate.js';
import { cli } from '../helpers/cli.js';
import { caughtUp as allCaughtUp, compareMirror, localRecords, mirroredRows, mirrorReaches } from '../helpers/mirror.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';
import { startTestNode, uniqueName, type TestNode } from '../helpers/node.js';
import { WAIT_DEADLINE_MS, within } from '../helpers/wait.js';

const POSTGRES_URL = process.env.USAGE_TRACKER_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const DAY_MS = 86_400_000;

const admin = new pg.Pool({ connectionString: POSTGRES_URL, max: 2 });
t.teardown(() => admin.end());

function yamlFor(url: string, schema: string): string {
  return `cluster:\n  shards: 4\nbackends:\n  postgres:\n    url: ${url}\n    schema: ${schema}\n    window_ms: 20\n    retry_base_ms: 50\n    retry_max_ms: 400\n    batch_records_max: 500\n`;
}

async function dropSchema(schema: string) {
  await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
}

/** The one mirror of these tests, caught up: its status. */
const caughtUp = async (node: TestNode) => (await allCaughtUp(node))[0];

async function assertMirrorEqualsLocal(t: Test, node: TestNode, schema: string) {
  compareMirror(t, await localRecords(node), await mirroredRows(admin, schema));
}

function records(count: number, seed: number, extra: Record<string, unknown> = {}) {
  const generator = createGenerator({ seed, users: 50, fromMs: Date.now() - 3 * DAY_MS, days: 3, idPrefix: uniqueName('s') });
  return Array.from({ length: count }, (_, i) => ({ ...generator.recordAt(i), ...extra }));
}

t.test('ingested records and updates reach PostgreSQL exactly, and a restart replays nothing twice', async (t) => {
  const schema = uniqueName('sync_a');
  t.teardown(() => dropSchema(schema));
  const first = await startTestNode(yamlFor(POSTGRES_URL, schema), {}, { keepData: true });
  const batch = records(1200, 1);
  batch[5] = { ...batch[5]!, metadata: { scene: 'tavern', round: 2, crit: true } };
  let storedCount = 0;
  for (const part of [batch.slice(0, 600), batch.slice(600)]) {
    const ingested = await first.call('ingest', { records: part });
    storedCount += ingested.results.filter((r: any) => r.status === 'stored').length;
  }
  t.equal(storedCount, 1200);
  const target = batch[7]!;
  const updated = await first.call('record.update', { id: target.id, user_id: target.user_id, expected_version: 1, patch: { output_tokens: 4242 } });
  t.equal(updated.version, 2);
  await caughtUp(first);
  await assertMirrorEqualsLocal(t, first, schema);
  const migrations = (await admin.query(`SELECT id FROM "${schema}".schema_migrations`)).rows.map((row) => row.id);
  t.same(migrations.sort(), ['0001_usage_records', '0002_outside_edits'], 'the schema was created by its recorded migrations');
  const row = (await admin.query(`SELECT version, output_tokens FROM "${schema}".usage_records WHERE id = $1`, [target.id])).rows[0];
  t.same({ version: row.version, output_tokens: Number(row.output_tokens) }, { version: 2, output_tokens: 4242 });

  const dataDir = first.node.config.node.data_dir;
  const { prefix } = first.subjects;
  const nodeId = first.node.config.node.id;
  await first.stop();
  const second = await startTestNode(yamlFor(POSTGRES_URL, schema), {}, { dataDir, prefix, nodeId });
  t.teardown(() => second.stop());
  const status = await caughtUp(second);
  t.equal(status.applied_records, 0, 'after a restart the checkpoints say everything is there: nothing is re-applied');
  await second.call('ingest', { records: records(50, 2) });
  await caughtUp(second);
  await assertMirrorEqualsLocal(t, second, schema);

  const resync = await second.call('admin.sync.resync', { backend: 'postgres', from_seq: 0 });
  t.equal(resync.ok, true);
  const after = await caughtUp(second);
  t.ok(after.applied_records >= 1250, 'a resync from scratch replays every record');
  await assertMirrorEqualsLocal(t, second, schema);
});

t.test('PostgreSQL refusing connections under load: ingest never stalls, the mirror catches up, nothing lost or doubled', async (t) => {
  const schema = uniqueName('sync_b');
  t.teardown(() => dropSchema(schema));
  const target = new URL(POSTGRES_URL);
  const proxy = await startTcpProxy(target.hostname, Number(target.port || 5432));
  t.teardown(() => proxy.close());
  const proxied = new URL(POSTGRES_URL);
  proxied.port = String(proxy.port);
  proxied.hostname = '127.0.0.1';
  const node = await startTestNode(yamlFor(proxied.toString(), schema));
  t.teardown(() => node.stop());
  await node.call('ingest', { records: records(300, 3) });
  await caughtUp(node);

  proxy.down();
  // PostgreSQL stays unreachable until every ingest below is acknowledged, so
  // an ingest that waited on the mirror would never be: the wait fails naming
  // it (the request's own timeout is longer, so that the wait is what fails).
  let stored = 300;
  for (let round = 0; round < 10; round++) {
    const ingest = node.call('ingest', { records: records(100, 10 + round) }, { timeoutMs: 2 * WAIT_DEADLINE_MS });
    const reply = await within(`ingest round ${round + 1} of 10 acknowledged while PostgreSQL is down`, ingest);
    stored += reply.results.filter((r: any) => r.status === 'stored').length;
  }
  t.equal(stored, 1300, 'every record ingested while PostgreSQL was down was stored');
  const during = await mirrorReaches(node, 'postgres', 'the PostgreSQL mirror retrying', (status) => status.state === 'retrying');
  t.equal(during.state, 'retrying', 'status says the mirror is retrying');
  t.match(during.last_error, /.+/, 'and why');
  t.ok(during.shards.reduce((sum: number, s: any) => sum + s.lag_records, 0) > 0, 'and how far behind it is');
  await t.rejects(node.call('admin.sync.resync', { backend: 'postgres', from_seq: 0 }).then((r) => (r.ok ? r : Promise.reject(r.error))), {
    code: 'E_UNAVAILABLE',
  });

  proxy.up();
  await caughtUp(node);
  await assertMirrorEqualsLocal(t, node, schema);
});

t.test('verify finds rows missing, at another version or extra in PostgreSQL, bucket by bucket, and repairs them', async (t) => {
  const schema = uniqueName('sync_v');
  t.teardown(() => dropSchema(schema));
  const node = await startTestNode(yamlFor(POSTGRES_URL, schema));
  t.teardown(() => node.stop());
  const batch = records(800, 21);
  for (const part of [batch.slice(0, 400), batch.slice(400)]) await node.call('ingest', { records: part });
  await caughtUp(node);
  const clean = await node.call('admin.sync.verify', { backend: 'postgres' });
  t.equal(clean.ok, true);
  t.equal(clean.equal, true, 'a mirror that caught up is equal');
  t.equal(clean.shards.length, 4);
  t.ok(clean.shards.every((s: any) => s.days_differ === 0 && s.days_equal > 0), 'every day of every shard compares equal');

  // Damage the mirror behind the node's back.
  const [gone, bumped] = [batch[3]!, batch[500]!];
  await admin.query(`DELETE FROM "${schema}".usage_records WHERE id = $1`, [gone.id]);
  await admin.query(`UPDATE "${schema}".usage_records SET version = version + 5, output_tokens = 1 WHERE id = $1`, [bumped.id]);
  await admin.query(
    `INSERT INTO "${schema}".usage_records (shard, id, user_id, ts, provider, model, input_tokens, output_tokens, cost_source, status, version, seq, ingested_at)
     SELECT shard, 'not-local-1', user_id, ts, provider, model, 1, 1, 'unknown', 'success', 1, 999999, ingested_at FROM "${schema}".usage_records LIMIT 1`,
  );
  const found = await node.call('admin.sync.verify', { backend: 'postgres', repair: false });
  t.equal(found.equal, false);
  const total = (key: string) => found.shards.reduce((sum: number, s: any) => sum + s[key], 0);
  t.same({ missing: total('missing'), stale: total('stale'), extra: total('extra') }, { missing: 1, stale: 1, extra: 1 });
  t.ok(total('buckets_differ') >= 2 && total('buckets_differ') <= 3, 'only the damaged buckets are compared row by row');
  const still = Number((await admin.query(`SELECT count(*) AS n FROM "${schema}".usage_records WHERE id = 'not-local-1'`)).rows[0].n);
  t.equal(still, 1, 'repair: false changes nothing');

  const repaired = await node.call('admin.sync.verify', { backend: 'postgres' });
  t.equal(repaired.repair, true);
  t.equal(repaired.equal, false, 'the repairing run reports what it found');
  const again = await node.call('admin.sync.verify', { backend: 'postgres', repair: false });
  t.equal(again.equal, true, 'after the repair the mirror is equal again');
  await assertMirrorEqualsLocal(t, node, schema);
  const bad = await node.call('admin.sync.verify', { backend: 'postgres', repair: 'yes' });
  t.equal(bad.error?.code, 'E_VALIDATION');
  t.equal(bad.error?.field, 'repair');
});

t.test('admin.sync commands refuse bad input clearly', async (t) => {
  const schema = uniqueName('sync_c');
  t.teardown(() => dropSchema(schema));
  const node = await startTestNode(yamlFor(POSTGRES_URL, schema));
  t.teardown(() => node.stop());
  const cases: [string, 'admin.sync.status' | 'admin.sync.resync', unknown, string, string?][] = [
    ['unknown backend', 'admin.sync.status', { backend: 'mysql' }, 'E_VALIDATION', 'backend'],
    ['backend not configured', 'admin.sync.status', { backend: 'chroma' }, 'E_NOT_FOUND', 'backend'],
    ['unknown key', 'admin.sync.status', { verbose: true }, 'E_VALIDATION'],
    ['not a map', 'admin.sync.status', [1, 2], 'E_VALIDATION'],
    ['missing backend', 'admin.sync.resync', { from_seq: 0 }, 'E_VALIDATION', 'backend'],
    ['negative seq', 'admin.sync.resync', { backend: 'postgres', from_seq: -1 }, 'E_VALIDATION', 'from_seq'],
    ['fractional seq', 'admin.sync.resync', { backend: 'postgres', from_seq: 1.5 }, 'E_VALIDATION', 'from_seq'],
    ['seq as text', 'admin.sync.resync', { backend: 'postgres', from_seq: '0' }, 'E_VALIDATION', 'from_seq'],
    ['shard out of range', 'admin.sync.resync', { backend: 'postgres', shards: [99] }, 'E_VALIDATION', 'shards'],
    ['empty shard list', 'admin.sync.resync', { backend: 'postgres', shards: [] }, 'E_VALIDATION', 'shards'],
    ['hostile key', 'admin.sync.resync', JSON.parse('{"backend":"postgres","__proto__":{"x":1}}'), 'E_VALIDATION'],
  ];
  await caughtUp(node);
  for (const [label, endpoint, body, code, field] of cases) {
    const reply = await node.call(endpoint, body);
    t.equal(reply.ok, false, `${label}: refused`);
    t.equal(reply.error?.code, code, `${label}: ${code}`);
    if (field) t.match(reply.error?.field ?? '', field, `${label}: names ${field}`);
    t.match(reply.error?.message, /.{10,}/, `${label}: says why`);
  }
  const status = await node.call('admin.sync.status', {});
  t.equal(status.backends[0].state, 'realtime', 'the mirror is untouched by bad commands');
});

t.test('a node without backends has no sync actors and says so', async (t) => {
  const node = await startTestNode('cluster:\n  shards: 2\n');
  t.teardown(() => node.stop());
  t.same(await node.call('admin.sync.status', {}), { ok: true, backends: [] });
  const reply = await node.call('admin.sync.resync', { backend: 'postgres' });
  t.equal(reply.error?.code, 'E_NOT_FOUND');
});

t.test('the CLI shows sync status and runs a resync to the end', async (t) => {
  const schema = uniqueName('sync_d');
  t.teardown(() => dropSchema(schema));
  const node = await startTestNode(yamlFor(POSTGRES_URL, schema));
  t.teardown(() => node.stop());
  await node.call('ingest', { records: records(200, 4) });
  await caughtUp(node);
  const prefix = node.subjects.prefix;

  const status = await cli(['sync', 'status'], prefix);
  t.equal(status.code, 0, status.stderr);
  t.match(status.stdout, /^postgres: realtime, 0 records behind/m);
  t.match(status.stdout, /\| shard \| checkpoint \|/);

  const json = await cli(['sync', 'status', '--json', '--backend', 'postgres'], prefix);
  const parsed = JSON.parse(json.stdout);
  t.equal(parsed[0].backend, 'postgres');
  t.equal(parsed[0].shards.length, 4);

  const resync = await cli(['sync', 'resync', 'postgres', '--from-seq', '0', '--quiet'], prefix);
  t.equal(resync.code, 0, resync.stderr);
  t.match(resync.stdout, /postgres: caught up; \d+ records applied/);
  await assertMirrorEqualsLocal(t, node, schema);

  const verified = await cli(['sync', 'verify', 'postgres', '--quiet'], prefix);
  t.equal(verified.code, 0, verified.stderr);
  t.match(verified.stdout, /^postgres: equal to local data on 4 shard\(s\)/);
  await admin.query(`DELETE FROM "${schema}".usage_records WHERE id IN (SELECT id FROM "${schema}".usage_records LIMIT 2)`);
  const checkOnly = await cli(['sync', 'verify', 'postgres', '--no-repair', '--quiet'], prefix);
  t.match(checkOnly.stdout, /^postgres: 2 missing, 0 at another version, 0 extra, in \d+ bucket\(s\); not repaired/);
  t.match(checkOnly.stdout, /\| shard \| days equal \|/);
  const fixed = await cli(['sync', 'verify', 'postgres', '--quiet'], prefix);
  t.match(fixed.stdout, /repaired/);
  await assertMirrorEqualsLocal(t, node, schema);

  const badSeq = await cli(['sync', 'resync', 'postgres', '--from-seq', '-3'], prefix);
  t.equal(badSeq.code, 1);
  t.match(badSeq.stderr, /--from-seq must be a whole number/);
  const unknown = await cli(['sync', 'resync', 'mysql'], prefix);
  t.equal(unknown.code, 1);
  t.match(unknown.stderr, /E_VALIDATION: backend: must be one of postgres, chroma/);
  const notConfigured = await cli(['sync', 'status', '--backend', 'chroma'], prefix);
  t.equal(notConfigured.code, 1);
  t.match(notConfigured.stderr, /E_NOT_FOUND: backend chroma is not configured/);
});
