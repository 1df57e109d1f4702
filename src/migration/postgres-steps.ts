// The PostgreSQL mirror's migrations as steps of the migration runner:
// which are applied (schema_migrations), applying pending ones through
// migratePostgres (one transaction, advisory lock), and undoing one with
// its `down` SQL under the same lock, in one transaction with the removal
// of its schema_migrations row. A migration without `down` is refused.

import pg from 'pg';
import { checksumOf, lockKey, migratePostgres, quoteIdent, type SqlMigration } from '../sync/postgres-schema.js';

export interface PostgresTarget {
  url: string;
  schema: string;
}

export class RollbackRefused extends Error {
  override readonly name = 'RollbackRefused';
}

async function withClient<T>(target: PostgresTarget, connectTimeoutMs: number, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: target.url, connectionTimeoutMillis: connectTimeoutMs, application_name: 'usage-tracker migrations' });
  // A server that goes away mid-call surfaces as the query's error; without a listener it would crash the process.
  client.on('error', () => undefined);
  try {
    await client.connect();
    return await work(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** The ids applied in the mirror's schema, or why they cannot be read. */
export async function postgresApplied(target: PostgresTarget, connectTimeoutMs: number): Promise<{ applied: string[] } | { error: string }> {
  try {
    return await withClient(target, connectTimeoutMs, async (client) => {
      const exists = (await client.query('SELECT to_regclass($1) AS name', [`${quoteIdent(target.schema)}.schema_migrations`])).rows[0]?.name;
      if (!exists) return { applied: [] };
      return { applied: (await client.query<{ id: string }>(`SELECT id FROM ${quoteIdent(target.schema)}.schema_migrations ORDER BY id`)).rows.map((row) => row.id) };
    });
  } catch (error) {
    return { error: (error as Error).message };
  }
}

/** Applies every migration of `known` that the schema lacks, in one transaction; returns the ids applied. */
export function applyPostgres(target: PostgresTarget, connectTimeoutMs: number, known: readonly SqlMigration[]): Promise<string[]> {
  return withClient(target, connectTimeoutMs, (client) => migratePostgres(client, target.schema, known));
}

/** Undoes one applied migration with its `down` SQL; the whole undo commits or nothing does. */
export async function rollbackPostgres(target: PostgresTarget, connectTimeoutMs: number, migration: SqlMigration): Promise<void> {
  if (migration.down === undefined) throw new RollbackRefused(`${migration.id} cannot be rolled back: ${migration.no_down ?? 'it has no down migration'}`);
  const down = migration.down;
  await withClient(target, connectTimeoutMs, async (client) => {
    await client.query('BEGIN');
    try {
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [lockKey(target.schema)]);
      await client.query(`SET LOCAL search_path TO ${quoteIdent(target.schema)}`);
      const row = (await client.query<{ checksum: string }>('SELECT checksum FROM schema_migrations WHERE id = $1', [migration.id])).rows[0];
      if (!row) throw new RollbackRefused(`${migration.id} is not applied in schema ${target.schema}`);
      if (row.checksum !== checksumOf(migration.up)) {
        throw new RollbackRefused(`${migration.id} was applied in schema ${target.schema} with different SQL; its down SQL does not match it, so it is not run`);
      }
      await client.query(down);
      await client.query('DELETE FROM schema_migrations WHERE id = $1', [migration.id]);
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    }
  });
}
