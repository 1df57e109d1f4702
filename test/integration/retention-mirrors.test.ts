// Retention and the PostgreSQL mirror (real server): the ids a run removes
// locally disappear from usage_records too; when PostgreSQL is unreachable
// (a TCP proxy cut in front of it) local retention still runs, the
// deletions stay pending (retention.status shows them) and the next run
// after the outage applies them, so the mirror again equals local data.

import t from 'tap';
import pg from 'pg';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { caughtUp, compareMirror, localRecords, mirroredRows, proxiedPostgres } from '../helpers/mirror.js';
import { startTestNode, uniqueName, type TestNode } from '../helpers/node.js';

const POSTGRES_URL = process.env.USAGE_TRACKER_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const DAY_MS = 86_400_000;
const OLD = Date.now() - 70 * DAY_MS;

const admin = new pg.Pool({ connectionString: POSTGRES_URL, max: 2 });
t.teardown(() => admin.end());

function records(prefix: string, count: number, base: number) {
  return Array.from({ length: count }, (_, i) => ({
    id: `${prefix}-${i}`,
    ts: base + i * 60_000,
    user_id: `user-${i % 6}`,
    provider: 'anthropic',
    model: 'claude-sonnet-4',
    input_tokens: 100 + i,
    output_tokens: 10 + i,
    cost_usd: 0.002,
  }));
}

async function sealAll(node: TestNode) {
  for (let shard = 0; shard < node.config.cluster.shards; shard++) {
    await node.node.system.ref(`${node.config.node.id}/shards/partition-${shard}`).ask({ type: 'seal' }, { timeoutMs: 10_000, caller: 'test' });
  }
}

t.test('removed ids leave the PostgreSQL mirror; deletions a down mirror missed are retried by the next run', async (t) => {
  const { schema, proxy, url } = await proxiedPostgres(t, admin, POSTGRES_URL, 'ret');
  const yaml =
    `cluster:\n  shards: 2\nbackends:\n  postgres:\n    url: ${url.href}\n    schema: ${schema}\n    window_ms: 20\n    retry_base_ms: 50\n    retry_max_ms: 300\n` +
    `retention:\n  schedule_interval_hours: 0\n  policies:\n    - {name: old, category: raw_usage, type: time, action: delete, max_age_days: 30}\n`;
  const node = await startTestNode(yaml);
  t.teardown(() => node.stop());
  const prefix = uniqueName('m');
  await node.call('ingest', { records: records(`${prefix}-old`, 200, OLD) });
  await node.call('ingest', { records: records(`${prefix}-new`, 50, Date.now() - DAY_MS) });
  await sealAll(node);
  await caughtUp(node, 1, 30_000);
  t.equal((await mirroredRows(admin, schema)).size, 250);

  const first = await node.call('admin.retention.run', {});
  t.equal(first.totals.records_removed, 200, JSON.stringify(first.error ?? first.totals));
  t.same(first.mirrors.postgres, { removed: 200, pending: 0 });
  compareMirror(t, await localRecords(node), await mirroredRows(admin, schema));

  await node.call('ingest', { records: records(`${prefix}-later`, 100, OLD) });
  await sealAll(node);
  await caughtUp(node, 1, 30_000);
  t.equal((await mirroredRows(admin, schema)).size, 150);
  proxy.down();
  const cut = await node.call('admin.retention.run', {});
  t.equal(cut.totals.records_removed, 100, 'local retention runs while the mirror is down');
  t.equal(cut.mirrors.postgres.pending, 100, `the deletions stay pending: ${JSON.stringify(cut.mirrors)}`);
  t.ok(cut.mirrors.postgres.error, 'and the reply says why');
  t.equal((await localRecords(node)).size, 50);
  t.equal((await mirroredRows(admin, schema)).size, 150, 'the mirror still has them');
  const status = await node.call('admin.retention.status', {});
  t.same(status.pending_mirror_deletions, { postgres: 100 }, 'status shows the pending deletions');
  const pendingFile = JSON.parse(readFileSync(join(node.config.node.data_dir, 'retention', 'pending.json'), 'utf8'));
  t.equal(Object.values(pendingFile.postgres as Record<string, string[]>).flat().length, 100, 'kept durably in retention/pending.json');

  proxy.up();
  await caughtUp(node, 1, 30_000);
  const retried = await node.call('admin.retention.run', {});
  t.equal(retried.totals.records_removed, 0);
  t.same(retried.mirrors.postgres, { removed: 100, pending: 0 }, 'the next run applies them');
  compareMirror(t, await localRecords(node), await mirroredRows(admin, schema));
  t.same((await node.call('admin.retention.status', {})).pending_mirror_deletions, {});
  const audit = readdirSync(join(node.config.node.data_dir, 'audit')).flatMap((name) =>
    readFileSync(join(node.config.node.data_dir, 'audit', name), 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line)),
  );
  const mirrorAudit = audit.filter((record) => record.action === 'mirror_delete').map((record) => [record.outcome, record.details.records]);
  t.same(mirrorAudit, [['ok', 200], ['failed', 0], ['ok', 100]], 'every mirror deletion is audited');
});
