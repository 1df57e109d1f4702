// BackupActor: takes, lists, verifies and restores backups of this node's
// data directory into `backup.target_dir` (src/backup/). One long job at a
// time (create, verify or restore): a second one while it runs is
// E_CONFLICT, not a queue that could grow without bound. Listing answers at
// once. Every job is logged with its outcome (the audit trail until the
// retention issue's audit records land).

import { ProtocolError } from '../protocols/errors.js';
import { later, type ActorContext, type Behavior, type Later } from '../src/kernel/actor.js';
import type { ActorRef } from '../src/kernel/system.js';
import type { FileSystem } from '../src/ports/fs.js';
import { createBackup, restoreBackup, verifyBackup, type ShardSnapshot } from '../src/backup/backup.js';
import { BackupError, BackupStore, type BackupKind, type BackupManifest } from '../src/backup/store.js';
import type { PartitionMessage, PartitionReply } from './partition.js';

export type BackupMessage =
  | { type: 'create'; kind: BackupKind }
  | { type: 'list' }
  | { type: 'verify'; backup_id: string }
  | { type: 'restore'; backup_id: string; target_dir: string };

export interface BackupOptions {
  fs: FileSystem;
  dataDir: string;
  targetDir: string;
  shards: number;
  partition: (shard: number) => ActorRef<PartitionMessage, PartitionReply>;
  /** Bound on one shard's snapshot. */
  snapshotTimeoutMs: number;
}

/** A backup as listed: the manifest without its per-file detail. */
function summaryOf(manifest: BackupManifest): Record<string, unknown> {
  return {
    backup_id: manifest.backup_id,
    kind: manifest.kind,
    parent: manifest.parent,
    created_at: manifest.created_at,
    shards: manifest.shards.length,
    files: manifest.shards.reduce((sum, shard) => sum + shard.partitions.length + shard.wal.length + 1, 1),
    objects_written: manifest.objects_written,
    bytes_written: manifest.bytes_written,
    durable_seqs: manifest.shards.map((shard) => shard.durable_seq),
  };
}

/** BackupError (bad id, missing parent, damaged object, target exists) is the caller's to fix: E_VALIDATION or E_NOT_FOUND. */
function asProtocolError(error: unknown): never {
  if (error instanceof BackupError) {
    const notFound = /^no backup /.test(error.message);
    throw new ProtocolError(notFound ? 'E_NOT_FOUND' : 'E_VALIDATION', error.message);
  }
  throw error;
}

export function backupBehavior(options: BackupOptions, ctx: ActorContext): Behavior<BackupMessage, unknown> {
  const store = new BackupStore(options.fs, options.targetDir);
  let running: string | undefined;
  const job = (name: string, work: () => Promise<Record<string, unknown>>): Later<unknown> => {
    if (running) throw new ProtocolError('E_CONFLICT', `${running} is running; try again when it is done`);
    running = name;
    const started = ctx.clock.monotonicMs();
    return later(
      work()
        .then((result) => {
          ctx.log.info({ job: name, ms: Math.round(ctx.clock.monotonicMs() - started), ...result }, 'backup job done');
          return result;
        })
        .catch((error: unknown) => {
          ctx.log.warn({ job: name, err: error }, 'backup job failed');
          return asProtocolError(error);
        })
        .finally(() => (running = undefined)),
    );
  };
  const snapshot = async (shard: number) =>
    (await options.partition(shard).ask({ type: 'snapshot' }, { timeoutMs: options.snapshotTimeoutMs, caller: 'BackupActor (snapshot)' })) as unknown as ShardSnapshot;
  return {
    receive(message): unknown | Later<unknown> {
      switch (message.type) {
        case 'create':
          return job(`a ${message.kind} backup`, async () =>
            summaryOf(await createBackup({ store, fs: options.fs, dataDir: options.dataDir, shards: options.shards, kind: message.kind, now: ctx.clock.now(), snapshot })),
          );
        case 'list':
          return later(
            store
              .list()
              .then((backups) => ({ target_dir: options.targetDir, backups: backups.map(summaryOf) }))
              .catch(asProtocolError),
          );
        case 'verify':
          return job(`verifying ${message.backup_id}`, async () => ({ ...(await verifyBackup(store, options.fs, message.backup_id, ctx.log)) }));
        case 'restore':
          return job(`restoring ${message.backup_id}`, async () => ({ ...(await restoreBackup(store, options.fs, message.backup_id, message.target_dir, ctx.log)) }));
        default:
          throw new ProtocolError('E_BAD_REQUEST', `unknown backup message ${(message as { type?: unknown }).type}`);
      }
    },
  };
}
