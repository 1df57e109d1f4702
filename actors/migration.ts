// MigrationActor (issue 5): where each migration target stands (status),
// what is left to apply (plan), and apply and rollback with dry runs,
// progress, an automatic backup first and automatic rollback on failure
// (src/migration/runner.ts). One run at a time: a second apply or rollback
// while one runs is E_CONFLICT. Status answers during a run and shows its
// stage and progress.

import { ProtocolError } from '../protocols/errors.js';
import { later, type ActorContext, type Behavior, type Later } from '../src/kernel/actor.js';
import type { AuditLog } from '../src/audit/audit-log.js';
import { MIGRATIONS, type Migration } from '../src/migration/entries.js';
import { MigrationRunner, type ShardAsk, type StageHook } from '../src/migration/runner.js';
import type { FileSystem } from '../src/ports/fs.js';

export type MigrationMessage =
  | { type: 'status' }
  | { type: 'plan' }
  | { type: 'apply'; dry_run: boolean; to?: string | undefined }
  | { type: 'rollback'; dry_run: boolean; id?: string | undefined };

export interface MigrationOptions {
  fs: FileSystem;
  dataDir: string;
  shards: number;
  postgres: { url: string; schema: string } | undefined;
  connectTimeoutMs: number;
  /** Asks a shard's PartitionActor. */
  shard: ShardAsk;
  /** Takes the automatic full backup before a run. */
  backup: () => Promise<{ backup_id: string }>;
  audit: AuditLog;
  /** The registry (default: this release's); tests give their own. */
  registry?: readonly Migration[];
  /** Pause after each rewritten file (the crash test's fixture only). */
  fileDelayMs?: number;
  /** Called and awaited as a run enters each stage: a test seam to hold a run at a stage (src/migration/runner.ts). */
  onStage?: StageHook;
}

/** What tests may give the MigrationActor through the node's options: their registry, the fixture's pause, the stage seam. */
export type MigrationSeams = Pick<MigrationOptions, 'registry' | 'fileDelayMs' | 'onStage'>;

export function migrationBehavior(options: MigrationOptions, ctx: ActorContext): Behavior<MigrationMessage, unknown> {
  const runner = new MigrationRunner({
    fs: options.fs,
    dataDir: options.dataDir,
    shards: options.shards,
    registry: options.registry ?? MIGRATIONS,
    shard: options.shard,
    postgres: options.postgres,
    connectTimeoutMs: options.connectTimeoutMs,
    backup: options.backup,
    audit: options.audit,
    log: ctx.log,
    now: () => ctx.clock.now(),
    ...(options.fileDelayMs !== undefined ? { fileDelayMs: options.fileDelayMs } : {}),
    ...(options.onStage ? { onStage: options.onStage } : {}),
  });
  return {
    receive(message): unknown | Later<unknown> {
      switch (message.type) {
        case 'status':
          return later(runner.status());
        case 'plan':
          return later(
            Promise.all([runner.status(), runner.pending()]).then(([status, pending]) => ({
              ...pending,
              storage: status.storage,
              postgres: status.postgres,
              note: 'usage-tracker migration apply --dry-run shows the files and bytes each step rewrites',
            })),
          );
        case 'apply':
          // start() refuses at once (E_CONFLICT) while a run is under way; the reply comes when the run is over.
          return later(runner.start('apply', { dry_run: message.dry_run, target: message.to }));
        case 'rollback':
          return later(runner.start('rollback', { dry_run: message.dry_run, target: message.id }));
        default:
          throw new ProtocolError('E_BAD_REQUEST', `unknown migration message ${(message as { type?: unknown }).type}`);
      }
    },
  };
}
