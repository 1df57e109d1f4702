// admin.migration.status and admin.migration.plan: where the storage format
// and the PostgreSQL mirror's schema stand against the registry, read from
// a real server; an unreachable server or no mirror is said plainly. A
// dry run of apply with nothing pending says so, promises no backup, and is
// audited as a dry run.

import t from 'tap';
import pg from 'pg';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cli } from '../helpers/cli.js';
import { startTestNode, uniqueName } from '../helpers/node.js';
import { waitFor } from '../helpers/wait.js';

const POSTGRES_URL = process.env.USAGE_TRACKER_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

t.test('status and plan follow the mirror schema as it is migrated', async (t) => {
  const schema = uniqueName('migstat');
  const admin = new pg.Pool({ connectionString: POSTGRES_URL, max: 1 });
  t.teardown(async () => {
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await admin.end();
  });
  const node = await startTestNode(`cluster:\n  shards: 2\nbackends:\n  postgres:\n    url: ${POSTGRES_URL}\n    schema: ${schema}\n`);
  t.teardown(() => node.stop());
  let status: any;
  await waitFor(
    "the mirror to apply the schema's migrations when it connects",
    async () => {
      status = await node.call('admin.migration.status', {});
      return status.postgres?.pending?.length === 0;
    },
    { pollMs: 100, describe: () => status?.postgres },
  );
  t.equal(status.ok, true);
  t.same(status.postgres, { state: 'reachable', schema, applied: ['0001_usage_records', '0002_outside_edits'], pending: [] }, 'the mirror applied its migrations when it connected');
  t.same(status.storage, { format_version: 2, current: 2, readable: [1, 2], pending: [], files_by_format: {} }, 'a new data directory is at format 2');
  t.same(status.registry.map((m: any) => [m.id, m.depends_on, m.targets, m.strategy, m.state]), [
    ['0001_usage_records', [], ['postgres'], 'online', 'applied'],
    ['storage-0002_explicit_versions', [], ['storage'], 'online', 'applied'],
    ['0002_outside_edits', ['0001_usage_records'], ['postgres'], 'online', 'applied'],
  ]);
  await admin.query(`DELETE FROM "${schema}".schema_migrations WHERE id = '0002_outside_edits'`);
  const plan = await node.call('admin.migration.plan', {});
  t.same(plan.steps.map((step: any) => step.id), ['0002_outside_edits'], 'a migration not recorded is planned');
  const bad = await node.call('admin.migration.plan', { dry_run: true });
  t.equal(bad.error?.code, 'E_VALIDATION');
});

t.test('no mirror, or an unreachable one, is said plainly', async (t) => {
  const none = await startTestNode('cluster:\n  shards: 1\n');
  t.teardown(() => none.stop());
  const status = await none.call('admin.migration.status', {});
  t.same(status.postgres, { state: 'off' });
  t.same((await none.call('admin.migration.plan', {})).steps, []);

  const away = await startTestNode('cluster:\n  shards: 1\nbackends:\n  postgres:\n    url: postgres://postgres@127.0.0.1:1/postgres\n');
  t.teardown(() => away.stop());
  const unreachable = await away.call('admin.migration.status', {});
  t.equal(unreachable.postgres.state, 'unreachable');
  t.match(unreachable.postgres.error, /ECONNREFUSED|connect/);
});

t.test('apply --dry-run with nothing pending says "nothing to apply" and is audited as a dry run', async (t) => {
  const node = await startTestNode('cluster:\n  shards: 1\nbackup:\n  schedule: false\n  wal_archive: false\n');
  t.teardown(() => node.stop());
  const dataDir = node.config.node.data_dir;
  const audit = () =>
    readdirSync(join(dataDir, 'audit'))
      .flatMap((name) => readFileSync(join(dataDir, 'audit', name), 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line)))
      .filter((line) => line.actor === 'migration');

  const dry = await node.call('admin.migration.apply', { dry_run: true });
  t.equal(dry.ok, true, JSON.stringify(dry.error));
  t.same([dry.dry_run, dry.steps, dry.done], [true, [], []]);
  t.match(dry.note, /^nothing to apply/);
  t.equal(dry.backup, undefined, 'no backup is promised');
  const [record] = audit();
  t.same([record.action, record.outcome, record.details.dry_run, record.details.result], ['migration.apply', 'dry_run', true, 'nothing to apply'], 'audited as a dry run');

  const text = await cli(['migration', 'apply', '--dry-run'], node.config.transport.subject_prefix);
  t.equal(text.code, 0, text.stderr);
  t.match(text.stdout, /^dry run: nothing to apply/, `the CLI says so: ${text.stdout}`);
  t.notMatch(text.stdout, /backup/, 'and says nothing of a backup');

  const real = await node.call('admin.migration.apply', {});
  t.same([real.ok, real.dry_run, real.done], [true, false, []]);
  t.same(audit().map((line) => line.outcome), ['dry_run', 'dry_run', 'ok'], 'the CLI dry run is a dry run too; a real apply with nothing to do is ok');
  t.equal((await node.call('admin.backup.list', {})).backups.length, 0, 'and no backup was taken');
});
