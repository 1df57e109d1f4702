// The PostgreSQL mirror's migrations against a real server: applied once,
// in order, recorded with their checksums; nodes starting together apply
// each exactly once; an applied migration whose SQL changed, or one this
// release does not know, stops with a clear error and changes nothing.

import t from 'tap';
import pg from 'pg';
import { checksumOf, migratePostgres, POSTGRES_MIGRATIONS } from '../../src/sync/postgres-schema.js';
import { uniqueName } from '../helpers/node.js';

const POSTGRES_URL = process.env.USAGE_TRACKER_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 4 });
t.teardown(() => pool.end());

async function withClient<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    return await work(client);
  } finally {
    client.release();
  }
}

t.test('applied once, in order, with checksums; nodes starting together apply each once', async (t) => {
  const schema = uniqueName('mig');
  t.teardown(() => pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`));
  const runs = await Promise.all([1, 2, 3].map(() => withClient((client) => migratePostgres(client, schema))));
  t.same(runs.flat().sort(), POSTGRES_MIGRATIONS.map((m) => m.id).sort(), 'each migration applied by exactly one of three concurrent starts');
  const rows = (await pool.query(`SELECT id, checksum FROM "${schema}".schema_migrations ORDER BY id`)).rows;
  t.same(rows, POSTGRES_MIGRATIONS.map((m) => ({ id: m.id, checksum: checksumOf(m.up) })));
  t.same(await withClient((client) => migratePostgres(client, schema)), [], 'a later start applies nothing');
});

t.test('a changed or unknown migration stops with a clear error and changes nothing', async (t) => {
  const schema = uniqueName('mig');
  t.teardown(() => pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`));
  await withClient((client) => migratePostgres(client, schema, POSTGRES_MIGRATIONS.slice(0, 1)));
  const changed = [{ ...POSTGRES_MIGRATIONS[0]!, up: `${POSTGRES_MIGRATIONS[0]!.up}\n-- edited` }, ...POSTGRES_MIGRATIONS.slice(1)];
  await t.rejects(
    withClient((client) => migratePostgres(client, schema, changed)),
    { name: 'MigrationMismatch', message: /migration 0001_usage_records was applied with different SQL/ },
  );
  const ids = async () => (await pool.query(`SELECT id FROM "${schema}".schema_migrations ORDER BY id`)).rows.map((row) => row.id);
  t.same(await ids(), ['0001_usage_records'], 'nothing after it was applied');
  await withClient((client) => migratePostgres(client, schema));
  await pool.query(`INSERT INTO "${schema}".schema_migrations (id, checksum, description) VALUES ('9999_future', 'x', 'from a newer release')`);
  await t.rejects(
    withClient((client) => migratePostgres(client, schema)),
    { name: 'MigrationMismatch', message: /9999_future, which this release does not know/ },
  );
});

t.test('a failing migration rolls back whole: no half-applied schema', async (t) => {
  const schema = uniqueName('mig');
  t.teardown(() => pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`));
  const broken = [...POSTGRES_MIGRATIONS, { id: '0099_broken', description: 'fails', depends_on: ['0002_outside_edits'], targets: ['postgres' as const], strategy: 'online' as const, up: 'CREATE TABLE usage_records (x int);', down: '' }];
  await t.rejects(withClient((client) => migratePostgres(client, schema, broken)), /already exists/);
  const exists = (await pool.query(`SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = $1`, [schema])).rows[0].n;
  t.equal(Number(exists), 0, 'no table of any migration is left behind');
});
