// MigrationActor (issue 5, first part): reports where each migration
// target stands and what is left to apply, from the registry
// (src/migration/registry.ts). Read-only for now: `apply` and `rollback`
// are not built, and the PostgreSQL mirror applies its own migrations when
// it connects.

import { ProtocolError } from '../protocols/errors.js';
import { later, type ActorContext, type Behavior, type Later } from '../src/kernel/actor.js';
import { orderMigrations, type MigrationEntry } from '../src/migration/registry.js';
import type { FileSystem } from '../src/ports/fs.js';
import { STORAGE_FORMAT_VERSION } from '../src/storage/manifest.js';
import { POSTGRES_MIGRATIONS, quoteIdent } from '../src/sync/postgres-schema.js';
import { join } from 'node:path';
import pg from 'pg';

export type MigrationMessage = { type: 'status' } | { type: 'plan' };

export interface MigrationOptions {
  fs: FileSystem;
  dataDir: string;
  postgres: { url: string; schema: string } | undefined;
  connectTimeoutMs: number;
}

const summaryOf = (entry: MigrationEntry) => ({ id: entry.id, description: entry.description, depends_on: entry.depends_on, targets: entry.targets, strategy: entry.strategy });

/** The ids applied in the mirror's schema, or why they cannot be read. */
async function postgresApplied(options: NonNullable<MigrationOptions['postgres']>, connectTimeoutMs: number): Promise<{ applied: string[] } | { error: string }> {
  const client = new pg.Client({ connectionString: options.url, connectionTimeoutMillis: connectTimeoutMs, application_name: 'usage-tracker migrations' });
  try {
    await client.connect();
    const exists = (await client.query('SELECT to_regclass($1) AS name', [`${quoteIdent(options.schema)}.schema_migrations`])).rows[0]?.name;
    if (!exists) return { applied: [] };
    return { applied: (await client.query<{ id: string }>(`SELECT id FROM ${quoteIdent(options.schema)}.schema_migrations ORDER BY id`)).rows.map((row) => row.id) };
  } catch (error) {
    return { error: (error as Error).message };
  } finally {
    await client.end().catch(() => undefined);
  }
}

export function migrationBehavior(options: MigrationOptions, ctx: ActorContext): Behavior<MigrationMessage, unknown> {
  const ordered = orderMigrations(POSTGRES_MIGRATIONS);
  const status = async () => {
    const nodeJson = JSON.parse(new TextDecoder().decode(await options.fs.readFile(join(options.dataDir, 'node.json')))) as { format_version: number };
    const storage = { format_version: nodeJson.format_version, current: STORAGE_FORMAT_VERSION, pending: nodeJson.format_version === STORAGE_FORMAT_VERSION ? [] : [`format ${nodeJson.format_version} → ${STORAGE_FORMAT_VERSION}`] };
    if (!options.postgres) return { storage, postgres: { state: 'off' }, registry: ordered.map(summaryOf) };
    const read = await postgresApplied(options.postgres, options.connectTimeoutMs);
    const postgres =
      'error' in read
        ? { state: 'unreachable', error: read.error }
        : { state: 'reachable', schema: options.postgres.schema, applied: read.applied, pending: ordered.filter((entry) => !read.applied.includes(entry.id)).map((entry) => entry.id) };
    return { storage, postgres, registry: ordered.map(summaryOf) };
  };
  return {
    receive(message): unknown | Later<unknown> {
      switch (message.type) {
        case 'status':
          return later(status());
        case 'plan':
          return later(
            status().then((current) => {
              const postgres = current.postgres as { pending?: string[] };
              const steps = ordered.filter((entry) => postgres.pending?.includes(entry.id)).map(summaryOf);
              ctx.log.debug({ steps: steps.length }, 'migration plan');
              return { steps, storage: current.storage, postgres: current.postgres, note: 'the PostgreSQL mirror applies its pending migrations itself when it connects; apply and rollback commands are not built yet' };
            }),
          );
        default:
          throw new ProtocolError('E_BAD_REQUEST', `unknown migration message ${(message as { type?: unknown }).type}`);
      }
    },
  };
}
