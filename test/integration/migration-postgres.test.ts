// The PostgreSQL mirror's migrations through admin.migration.rollback and
// apply, against a real server: 0002 is undone by its down SQL (its
// columns and trigger gone, its schema_migrations row gone) and applied
// again; 0001 is refused with the reason; each run takes its backup first.

import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { startTestNode, uniqueName } from '../helpers/node.js';
import { waitFor } from '../helpers/wait.js';

const POSTGRES_URL = process.env.USAGE_TRACKER_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

t.test('postgres 0002 rolls back by its down SQL and is applied again; 0001 is refused', async (t) => {
  const schema = uniqueName('migpg');
  const backupDir = mkdtempSync(join(tmpdir(), 'usage-tracker-migpgbk-'));
  const admin = new pg.Pool({ connectionString: POSTGRES_URL, max: 1 });
  t.teardown(async () => {
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await admin.end();
    rmSync(backupDir, { recursive: true, force: true });
  });
  const node = await startTestNode(
    `cluster:\n  shards: 2\nbackup:\n  target_dir: ${backupDir}\n  schedule: false\n  wal_archive: false\nbackends:\n  postgres:\n    url: ${POSTGRES_URL}\n    schema: ${schema}\n`,
  );
  t.teardown(() => node.stop());
  let postgres: unknown;
  await waitFor(
    "the mirror to apply the schema's migrations when it connects",
    async () => {
      postgres = (await node.call('admin.migration.status', {})).postgres;
      return (postgres as { pending?: string[] } | undefined)?.pending?.length === 0;
    },
    { pollMs: 100, describe: () => postgres },
  );
  const ids = async () => (await admin.query(`SELECT id FROM "${schema}".schema_migrations ORDER BY id`)).rows.map((row) => row.id);
  const columns = async () =>
    (await admin.query(`SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'usage_records'`, [schema])).rows.map((row) => row.column_name);
  t.same(await ids(), ['0001_usage_records', '0002_outside_edits']);

  const refused = await node.call('admin.migration.rollback', { id: '0001_usage_records' });
  t.equal(refused.error?.code, 'E_VALIDATION');
  t.equal(refused.error?.field, 'id');
  t.match(refused.error?.message, /0001_usage_records cannot be rolled back: .*drop the schema/);

  const dry = await node.call('admin.migration.rollback', { id: '0002_outside_edits', dry_run: true });
  t.equal(dry.ok, true);
  t.same(dry.steps.map((step: any) => [step.id, step.sql]), [['0002_outside_edits', 'down']]);
  t.same(await ids(), ['0001_usage_records', '0002_outside_edits'], 'a dry run changes nothing');

  const rolled = await node.call('admin.migration.rollback', { id: '0002_outside_edits' }, { timeoutMs: 60_000 });
  t.equal(rolled.ok, true, JSON.stringify(rolled.error ?? ''));
  t.same(rolled.done, ['0002_outside_edits']);
  t.match(rolled.backup_id, /-full$/, 'a backup first');
  t.same(await ids(), ['0001_usage_records'], '0002 is no longer recorded');
  const without = await columns();
  t.notOk(without.includes('version_vector') || without.includes('edited_outside_at'), "0002's columns are gone");
  const trigger = await admin.query(`SELECT 1 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND t.tgname = 'usage_records_outside_edit'`, [schema]);
  t.equal(trigger.rowCount, 0, "0002's trigger is gone");
  t.same((await node.call('admin.migration.plan', {})).steps.map((step: any) => step.id), ['0002_outside_edits'], 'plan: 0002 pending again');

  const applied = await node.call('admin.migration.apply', { to: '0002_outside_edits' }, { timeoutMs: 60_000 });
  t.equal(applied.ok, true, JSON.stringify(applied.error ?? ''));
  t.same(applied.done, ['0002_outside_edits']);
  t.same(await ids(), ['0001_usage_records', '0002_outside_edits']);
  t.ok((await columns()).includes('version_vector'), "0002's columns are back");
  t.same((await node.call('admin.migration.status', {})).postgres.pending, []);
});
