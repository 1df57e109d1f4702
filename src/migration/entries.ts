// The migrations this release knows: the storage format migrations and the
// PostgreSQL mirror's SQL migrations (src/sync/postgres-schema.ts), one
// registry ordered by src/migration/registry.ts. Tests may run the runner
// with a registry of their own (a migration that fails half way, say).

import type { ShardRewriteReport } from './shard-rewrite.js';
import type { MigrationEntry } from './registry.js';
import { POSTGRES_MIGRATIONS, type SqlMigration } from '../sync/postgres-schema.js';

/** A shard's part of a storage migration, as the PartitionActor reports it. */
export type ShardStepReport = ShardRewriteReport & { health: string; format_version: number };

/** One shard's work: by default its PartitionActor rewrites its files (`rewrite`). */
export type ShardStep = (shard: number, rewrite: (shard: number) => Promise<ShardStepReport>) => Promise<ShardStepReport>;

/** A change of the storage format: every shard's sealed files rewritten from one format to the other, online. */
export interface StorageMigration extends MigrationEntry {
  from_format: number;
  to_format: number;
  /** Replaces the per-shard work (tests only). */
  shardStep?: ShardStep;
}

export type Migration = StorageMigration | SqlMigration;

export const isSqlMigration = (migration: Migration): migration is SqlMigration => 'up' in migration;

export const STORAGE_0002: StorageMigration = {
  id: 'storage-0002_explicit_versions',
  description: 'storage format 1 → 2: sealed files hold seq, updated_at and vv in every record; each manifest entry records its format',
  depends_on: [],
  targets: ['storage'],
  strategy: 'online',
  from_format: 1,
  to_format: 2,
};

export const MIGRATIONS: readonly Migration[] = [...POSTGRES_MIGRATIONS, STORAGE_0002];
