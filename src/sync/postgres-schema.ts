// The PostgreSQL mirror's schema, as versioned migrations (entries of the
// migration registry) applied in dependency order and recorded in
// `schema_migrations` (id, checksum, applied_at). All pending ones run in
// one transaction under an advisory lock: several nodes starting at once
// apply each exactly once, and a failing one leaves no part of any applied. A migration already applied
// whose SQL has since changed is an error, never silently re-run: the
// database and this release disagree about the schema.

import { createHash } from 'node:crypto';
import type pg from 'pg';
import { pendingMigrations, type MigrationEntry } from '../migration/registry.js';

/** A migration of the PostgreSQL mirror: an entry of the migration registry with its SQL. */
export interface SqlMigration extends MigrationEntry {
  up: string;
  /** Undoes `up` (src/migration/postgres-steps.ts); absent when it cannot be undone, and `no_down` says why. */
  down?: string;
  no_down?: string;
}

export const POSTGRES_MIGRATIONS: readonly SqlMigration[] = [
  {
    id: '0001_usage_records',
    description: 'usage_records (latest version of each record), sync_checkpoints, sync_conflicts',
    depends_on: [],
    targets: ['postgres'],
    strategy: 'online',
    up: `
CREATE TABLE usage_records (
  shard          integer          NOT NULL,
  id             text             NOT NULL,
  user_id        text             NOT NULL,
  ts             timestamptz      NOT NULL,
  provider       text             NOT NULL,
  model          text             NOT NULL,
  input_tokens   bigint           NOT NULL,
  output_tokens  bigint           NOT NULL,
  cached_tokens  bigint,
  cost_usd       double precision,
  cost_source    text             NOT NULL,
  latency_ms     double precision,
  status         text             NOT NULL,
  error_code     text,
  session_id     text,
  campaign_id    text,
  operation      text,
  metadata       jsonb,
  version        integer          NOT NULL,
  seq            bigint           NOT NULL,
  ingested_at    timestamptz      NOT NULL,
  synced_at      timestamptz      NOT NULL DEFAULT now(),
  PRIMARY KEY (shard, id)
);
CREATE INDEX usage_records_user_ts ON usage_records (user_id, ts);
CREATE INDEX usage_records_ts ON usage_records (ts);
CREATE TABLE sync_checkpoints (
  shard       integer     PRIMARY KEY,
  seq         bigint      NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE sync_conflicts (
  conflict_id    bigserial   PRIMARY KEY,
  shard          integer     NOT NULL,
  id             text        NOT NULL,
  local_version  integer     NOT NULL,
  local_record   jsonb       NOT NULL,
  remote_record  jsonb       NOT NULL,
  strategy       text        NOT NULL,
  detected_at    timestamptz NOT NULL DEFAULT now(),
  resolved_at    timestamptz,
  resolution     text
);
CREATE INDEX sync_conflicts_open ON sync_conflicts (shard, id) WHERE resolved_at IS NULL;
`,
    no_down:
      'it would drop every mirrored row; to remove the mirror, stop the node, drop the schema (DROP SCHEMA <schema> CASCADE) and start it again: the mirror re-creates it and resyncs from local data',
  },
  {
    id: '0002_outside_edits',
    description: 'version vector, updated_at and the synced snapshot per row; a trigger that marks rows written outside usage-tracker',
    depends_on: ['0001_usage_records'],
    targets: ['postgres'],
    strategy: 'online',
    up: `
ALTER TABLE usage_records
  ADD COLUMN updated_at        timestamptz,
  ADD COLUMN version_vector    jsonb,
  ADD COLUMN synced_record     jsonb,
  ADD COLUMN edited_outside_at timestamptz;
CREATE INDEX usage_records_edited_outside ON usage_records (shard) WHERE edited_outside_at IS NOT NULL;
-- A row inserted outside has no local record to keep beside it.
ALTER TABLE sync_conflicts ALTER COLUMN local_record DROP NOT NULL;
-- usage-tracker's own writes run with usage_tracker.writer = 'sync' (SET LOCAL); any other write marks the row.
-- The WHEN clause keeps the function off usage-tracker's own (bulk) writes entirely.
CREATE FUNCTION usage_records_mark_outside_edit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.edited_outside_at := clock_timestamp();
  RETURN NEW;
END
$$;
CREATE TRIGGER usage_records_outside_edit BEFORE INSERT OR UPDATE ON usage_records
  FOR EACH ROW WHEN (current_setting('usage_tracker.writer', true) IS DISTINCT FROM 'sync')
  EXECUTE FUNCTION usage_records_mark_outside_edit();
`,
    down: `
DROP TRIGGER usage_records_outside_edit ON usage_records;
DROP FUNCTION usage_records_mark_outside_edit();
DROP INDEX usage_records_edited_outside;
ALTER TABLE sync_conflicts ALTER COLUMN local_record SET NOT NULL;
ALTER TABLE usage_records DROP COLUMN edited_outside_at, DROP COLUMN synced_record, DROP COLUMN version_vector, DROP COLUMN updated_at;
`,
  },
];

export const checksumOf = (sql: string) => createHash('sha256').update(sql).digest('hex');

/** Quotes an identifier for SQL (schema names come from configuration). */
export const quoteIdent = (name: string) => `"${name.replace(/"/g, '""')}"`;

export class MigrationMismatch extends Error {
  override readonly name = 'MigrationMismatch';
}

/** The advisory lock key of schema changes: one per schema, shared by every node. */
export const lockKey = (schema: string) => `usage-tracker:migrations:${schema}`;

/**
 * Creates the schema if needed and applies every pending migration.
 * Returns the ids applied now. Throws MigrationMismatch when an applied
 * migration differs from this release's, or the database has one this
 * release does not know.
 */
export async function migratePostgres(client: pg.ClientBase, schema: string, migrations: readonly SqlMigration[] = POSTGRES_MIGRATIONS): Promise<string[]> {
  const applied: string[] = [];
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [lockKey(schema)]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`);
    await client.query(`SET LOCAL search_path TO ${quoteIdent(schema)}`);
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      id text PRIMARY KEY, checksum text NOT NULL, description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const rows = (await client.query<{ id: string; checksum: string }>('SELECT id, checksum FROM schema_migrations ORDER BY id')).rows;
    const known = new Map(migrations.map((migration) => [migration.id, migration]));
    for (const row of rows) {
      const migration = known.get(row.id);
      if (!migration) throw new MigrationMismatch(`schema ${schema} has migration ${row.id}, which this release does not know (a newer release applied it?)`);
      if (checksumOf(migration.up) !== row.checksum) {
        throw new MigrationMismatch(`schema ${schema}: migration ${row.id} was applied with different SQL (checksum ${row.checksum.slice(0, 12)}…); restore the matching release or repair by hand`);
      }
    }
    const done = new Set(rows.map((row) => row.id));
    for (const migration of pendingMigrations(migrations, done)) {
      await client.query(migration.up);
      await client.query('INSERT INTO schema_migrations (id, checksum, description) VALUES ($1, $2, $3)', [migration.id, checksumOf(migration.up), migration.description]);
      applied.push(migration.id);
    }
    await client.query('COMMIT');
    return applied;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}
