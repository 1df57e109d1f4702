// The MaintenanceSupervisor's children (DESIGN §2): the BackupActor, the
// MigrationActor and the RetentionActor, each with the settings of
// cluster.yml, and the functions the endpoints call to reach them.

import { resolve } from 'node:path';
import { backupBehavior, type BackupMessage } from '../actors/backup.js';
import type { BackupApi, EndpointDependencies, MigrationApi } from '../actors/endpoints.js';
import { migrationBehavior, type MigrationMessage, type MigrationSeams } from '../actors/migration.js';
import type { PartitionMessage, PartitionReply } from '../actors/partition.js';
import { retentionBehavior, retentionMirrors, retentionSettings, type RetentionMessage } from '../actors/retention.js';
import type { BackupRestoreRequest, SyncBackend } from '../protocols/requests.js';
import { AuditLog } from '../src/audit/audit-log.js';
import type { BackupKind } from '../src/backup/store.js';
import type { Config } from '../src/config/schema.js';
import type { ActorRef, ActorSystem } from '../src/kernel/system.js';
import type { FileSystem } from '../src/ports/fs.js';
import type { Lineage } from '../src/storage/node-meta.js';
import type { ChildSpec } from './spec.js';
import { actorChild } from './worker.js';

export interface MaintenanceDependencies {
  fs: FileSystem;
  dataDir: string;
  /** The data directory's incarnation (node.json): its backups and WAL archive are kept under it; and its lineage. */
  incarnation: string;
  lineage: Lineage | null;
  partition: (shard: number) => ActorRef<PartitionMessage, PartitionReply>;
  /** The mirrors this node syncs, for retention's deletions. */
  syncBackends: SyncBackend[];
  /** The migration registry, the fixture-only pause per rewritten file and the stage seam (tests). */
  migrations?: MigrationSeams;
}

export interface MaintenanceWiring {
  children: ChildSpec[];
  backup: BackupApi;
  migration: MigrationApi;
  retention: EndpointDependencies['retention'];
}

export function maintenanceWiring(config: Config, system: ActorSystem, deps: MaintenanceDependencies): MaintenanceWiring {
  const backupChild = actorChild<BackupMessage, unknown>({
    id: 'backup',
    mailboxCapacity: 64,
    shutdownMs: config.supervision.shutdown_ms,
    behavior: (ctx) =>
      backupBehavior(
        {
          fs: deps.fs,
          dataDir: deps.dataDir,
          targetDir: resolve(config.backup.target_dir),
          nodeId: config.node.id,
          incarnation: deps.incarnation,
          lineage: deps.lineage,
          shards: config.cluster.shards,
          partition: deps.partition,
          snapshotTimeoutMs: config.limits.query_timeout_ms,
          ...(config.backup.wal_archive ? { walArchiveIntervalMs: config.backup.wal_archive_interval_s * 1000 } : {}),
          ...(config.backup.schedule
            ? {
                schedule: {
                  fullIntervalMs: config.backup.full_interval_hours * 3_600_000,
                  incrementalIntervalMs: config.backup.incremental_interval_hours * 3_600_000,
                  keepDays: config.retention.backups_days,
                  checkIntervalMs: 60_000,
                },
              }
            : {}),
          self: () => backupRef,
        },
        ctx,
      ),
  });
  const backupRef = system.ref<BackupMessage, Record<string, unknown>>(`${config.node.id}/maintenance/backup`);
  /** Backups of a large store take long: an hour before an admin call gives up. */
  const backupAsk = (message: BackupMessage) => backupRef.ask(message, { timeoutMs: 3_600_000, caller: `admin.backup.${message.type}` });
  const backup = {
    create: (kind: BackupKind) => backupAsk({ type: 'create', kind }),
    list: () => backupAsk({ type: 'list' }),
    verify: (backupId: string) => backupAsk({ type: 'verify', backup_id: backupId }),
    restore: (request: BackupRestoreRequest) =>
      backupAsk({
        type: 'restore',
        request: {
          targetDir: resolve(request.target_dir),
          ...(request.backup_id !== undefined ? { backupId: request.backup_id } : {}),
          ...(request.to_time !== undefined ? { toTime: request.to_time } : {}),
          ...(request.user_id !== undefined ? { userId: request.user_id } : {}),
          ...(request.from !== undefined ? { from: request.from } : {}),
          ...(request.to !== undefined ? { to: request.to } : {}),
          ...(request.incarnation !== undefined ? { incarnation: request.incarnation } : {}),
        },
      }),
  };
  const migrationChild = actorChild<MigrationMessage, unknown>({
    id: 'migration',
    mailboxCapacity: 64,
    shutdownMs: config.supervision.shutdown_ms,
    behavior: (ctx) =>
      migrationBehavior(
        {
          fs: deps.fs,
          dataDir: deps.dataDir,
          shards: config.cluster.shards,
          postgres: config.backends.postgres ? { url: config.backends.postgres.url, schema: config.backends.postgres.schema } : undefined,
          connectTimeoutMs: 5000,
          // A shard's rewrite reads and writes all its sealed files: an hour before the runner gives up on it.
          shard: (shard, message) =>
            deps.partition(shard).ask(message, { timeoutMs: message.type === 'status' ? config.limits.ask_timeout_ms : 3_600_000, caller: `MigrationActor (${message.type})` }) as Promise<Record<string, unknown>>,
          backup: async () => ({ backup_id: String((await backupAsk({ type: 'create', kind: 'full' })).backup_id) }),
          audit: new AuditLog(deps.fs, deps.dataDir),
          ...(deps.migrations?.registry ? { registry: deps.migrations.registry } : {}),
          ...(deps.migrations?.fileDelayMs !== undefined ? { fileDelayMs: deps.migrations.fileDelayMs } : {}),
          ...(deps.migrations?.onStage ? { onStage: deps.migrations.onStage } : {}),
        },
        ctx,
      ),
  });
  const migrationRef = system.ref<MigrationMessage, Record<string, unknown>>(`${config.node.id}/maintenance/migration`);
  const migration = {
    status: () => migrationRef.ask({ type: 'status' }, { timeoutMs: config.limits.query_timeout_ms, caller: 'admin.migration.status' }),
    plan: () => migrationRef.ask({ type: 'plan' }, { timeoutMs: config.limits.query_timeout_ms, caller: 'admin.migration.plan' }),
    /** A run rewrites every sealed file: an hour before an admin call gives up (status shows its progress meanwhile). */
    apply: (request: { dry_run: boolean; to?: string | undefined }) => migrationRef.ask({ type: 'apply', ...request }, { timeoutMs: 3_600_000, caller: 'admin.migration.apply' }),
    rollback: (request: { dry_run: boolean; id?: string | undefined }) => migrationRef.ask({ type: 'rollback', ...request }, { timeoutMs: 3_600_000, caller: 'admin.migration.rollback' }),
  };
  const retentionRef = system.ref<RetentionMessage, Record<string, unknown>>(`${config.node.id}/maintenance/retention`);
  const retentionChild = actorChild<RetentionMessage, unknown>({
    id: 'retention',
    mailboxCapacity: 64,
    shutdownMs: config.supervision.shutdown_ms,
    behavior: (ctx) =>
      retentionBehavior(
        {
          fs: deps.fs,
          dataDir: deps.dataDir,
          shards: config.cluster.shards,
          partition: deps.partition,
          settings: retentionSettings(config),
          mirrors: retentionMirrors(config, system, deps.syncBackends),
          // A shard's run reads all its sealed files and may rewrite them.
          shardTimeoutMs: 3_600_000,
          self: () => retentionRef,
        },
        ctx,
      ),
  });
  const retention = {
    run: (dryRun: boolean) => retentionRef.ask({ type: 'run', dry_run: dryRun, trigger: 'admin' }, { timeoutMs: 3_600_000 * 4, caller: 'admin.retention.run' }),
    status: () => retentionRef.ask({ type: 'status' }, { timeoutMs: config.limits.query_timeout_ms, caller: 'admin.retention.status' }),
  };
  return { children: [backupChild, migrationChild, retentionChild], backup, migration, retention };
}
