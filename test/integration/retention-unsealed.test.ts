// Retention of records that are not sealed yet, on a fresh node (real NATS
// and PostgreSQL): records old enough to match the policies, ingested and
// never sealed, are planned by a dry run (which still seals and changes
// nothing), exported and deleted by the real run, gone from the PostgreSQL
// mirror as sealed ones are, and still gone after a restart; query.records
// and query.aggregate agree with what is left.

import t from 'tap';
import pg from 'pg';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { caughtUp, compareMirror, localRecords, mirroredRows } from '../helpers/mirror.js';
import { startTestNode, uniqueName, type TestNode } from '../helpers/node.js';

const POSTGRES_URL = process.env.USAGE_TRACKER_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const DAY_MS = 86_400_000;
const NOW = Date.now();
const OLD = NOW - 70 * DAY_MS;
const SHARDS = 2;

const admin = new pg.Pool({ connectionString: POSTGRES_URL, max: 2 });
t.teardown(() => admin.end());

function records(prefix: string, count: number, base: number) {
  return Array.from({ length: count }, (_, i) => ({
    id: `${prefix}-${i}`,
    ts: base + i * 60_000,
    user_id: `user-${i % 4}`,
    provider: i % 3 === 0 ? 'openai' : 'anthropic',
    model: i % 3 === 0 ? 'gpt-4o' : 'claude-sonnet-4',
    input_tokens: 100 + i,
    output_tokens: 10 + i,
    cost_usd: 0.002,
  }));
}

/** Each shard's own status, as its PartitionActor reports it. */
async function shardStatus(node: TestNode): Promise<{ unsealed: number; sealed_files: number; records: number }[]> {
  const out = [];
  for (let shard = 0; shard < SHARDS; shard++) {
    out.push((await node.node.system.ref(`${node.config.node.id}/shards/partition-${shard}`).ask({ type: 'status' }, { timeoutMs: 30_000, caller: 'test' })) as any);
  }
  return out;
}

/** The parts of a shard result that must agree between a dry run and the real run. */
const planOf = (shards: any[]) =>
  shards.map((shard) => ({
    shard: shard.shard,
    policies: shard.policies.map((policy: any) => [policy.name, policy.records, policy.held]),
    files_dropped: shard.files_dropped,
    files_rewritten: shard.files_rewritten,
    records_removed: shard.records_removed,
    records_exported: shard.records_exported,
  }));

t.test('old records never sealed are planned, exported, deleted locally and in the mirror, and stay deleted after a restart', async (t) => {
  const schema = uniqueName('unsealed');
  t.teardown(() => admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`));
  const exportDir = mkdtempSync(join(tmpdir(), 'usage-tracker-unsealed-exports-'));
  t.teardown(() => rmSync(exportDir, { recursive: true, force: true }));
  const yaml =
    `cluster:\n  shards: ${SHARDS}\n` +
    // No seal happens during the test: the old records stay in the memtable (and the WAL) only.
    `storage:\n  seal_interval_s: 86400\n` +
    `backup:\n  schedule: false\n  wal_archive: false\n` +
    `backends:\n  postgres:\n    url: ${POSTGRES_URL}\n    schema: ${schema}\n    window_ms: 20\n` +
    `retention:\n  schedule_interval_hours: 0\n  export_dir: ${exportDir}\n  archive_dir: ${exportDir}/archive\n  policies:\n` +
    `    - {name: export-openai, category: raw_usage, type: conditional, action: export, max_age_days: 30, where: {provider: openai}}\n` +
    `    - {name: old, category: raw_usage, type: time, action: delete, max_age_days: 30}\n`;
  const first = await startTestNode(yaml, {}, { keepData: true });
  const dataDir = first.config.node.data_dir;
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  let second: TestNode | undefined;
  t.teardown(async () => {
    await first.stop().catch(() => undefined);
    await second?.stop();
  });

  const prefix = uniqueName('u');
  const old = records(`${prefix}-old`, 120, OLD);
  const fresh = records(`${prefix}-new`, 30, NOW - DAY_MS);
  t.equal((await first.call('ingest', { records: old })).results.filter((r: any) => r.status === 'stored').length, 120);
  t.equal((await first.call('ingest', { records: fresh })).results.filter((r: any) => r.status === 'stored').length, 30);
  await caughtUp(first, 1, 60_000);
  t.equal((await mirroredRows(admin, schema)).size, 150, 'the mirror holds every record');
  const before = await shardStatus(first);
  t.same(
    before.map((shard) => [shard.sealed_files, shard.unsealed]),
    before.map((shard) => [0, shard.records]),
    `no seal happened: every record is unsealed (${JSON.stringify(before)})`,
  );

  const exported = old.filter((r) => r.provider === 'openai').map((r) => r.id);
  const dry = await first.call('admin.retention.run', { dry_run: true });
  t.equal(dry.ok, true, JSON.stringify(dry.error));
  t.equal(dry.totals.records_removed, 120, `the dry run plans the 120 old unsealed records: ${JSON.stringify(dry.totals)}`);
  t.equal(dry.totals.records_exported, exported.length, 'and the export of the matching ones');
  t.ok(dry.shards.every((shard: any) => shard.files_dropped.length > 0), 'named as the files the seal would write, dropped whole');
  t.same(await shardStatus(first), before, 'a dry run seals nothing');
  t.same(readdirSync(exportDir), [], 'and writes no export');
  t.equal((await localRecords(first)).size, 150, 'every record still reads');

  const real = await first.call('admin.retention.run', {});
  t.equal(real.ok, true, JSON.stringify(real.error));
  t.same(planOf(real.shards), planOf(dry.shards), 'the real run does exactly what the dry run planned, file names included');
  t.equal(real.totals.records_removed, 120);
  t.same(real.mirrors.postgres, { removed: 120, pending: 0 }, 'the mirror is asked to delete them, as for sealed records');
  const lines = readdirSync(join(exportDir, real.run_id)).flatMap((name) =>
    readFileSync(join(exportDir, real.run_id, name), 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line).id as string),
  );
  t.same(lines.sort(), exported.sort(), 'the export holds exactly the exported unsealed records');

  const expectFresh = async (node: TestNode, label: string) => {
    const left = await localRecords(node);
    t.same([...left.keys()].sort(), fresh.map((r) => r.id).sort(), `${label}: query.records lists only the fresh records`);
    const aggregate = await node.call('query.aggregate', { from: OLD - DAY_MS, to: NOW + 60_000, metrics: ['count', 'input_tokens'] });
    t.same(
      [aggregate.rows[0]?.count, aggregate.rows[0]?.input_tokens],
      [30, fresh.reduce((sum, r) => sum + r.input_tokens, 0)],
      `${label}: query.aggregate counts only the fresh records`,
    );
    await caughtUp(node, 1, 60_000);
    compareMirror(t, left, await mirroredRows(admin, schema));
  };
  await expectFresh(first, 'after the run');

  await first.stop();
  second = await startTestNode(yaml, {}, { dataDir, nodeId: first.config.node.id, prefix: first.config.transport.subject_prefix, keepData: true });
  await expectFresh(second, 'after a restart');
  const again = await second.call('admin.retention.run', { dry_run: true });
  t.equal(again.totals.records_removed, 0, 'after the restart a dry run plans nothing: the WAL brought none of them back');
});
