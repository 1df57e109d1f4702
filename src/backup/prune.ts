// The backup schedule and backup retention.
//
// - dueBackup: a full backup when none exists or the newest full is older
//   than full_interval_hours; otherwise an incremental one when the newest
//   backup of any kind is older than incremental_interval_hours.
// - pruneBackups (retention.backups_days): keeps every backup completed
//   within the window, the newest one completed before it (so that any
//   moment of the window stays restorable to a point in time) and the
//   newest full backup; removes the other manifests, then the objects no
//   kept manifest names, then the archived WAL chunks that only an older
//   base than every kept backup could replay. Manifests go first: a crash
//   half way leaves unreferenced objects (removed by the next prune), never
//   a manifest naming a removed object.

import type { BackupKind, BackupManifest, BackupStore } from './store.js';
import { objectsOf } from './backup.js';
import { completedAtOf } from './restore.js';
import type { WalArchive } from './wal-archive.js';

const DAY_MS = 86_400_000;

export function dueBackup(backups: readonly BackupManifest[], now: number, schedule: { fullIntervalMs: number; incrementalIntervalMs: number }): BackupKind | undefined {
  const newestFull = backups.filter((backup) => backup.kind === 'full').at(-1);
  if (!newestFull || now - completedAtOf(newestFull) >= schedule.fullIntervalMs) return 'full';
  const newest = backups.at(-1)!;
  return now - completedAtOf(newest) >= schedule.incrementalIntervalMs ? 'incremental' : undefined;
}

export interface PruneReport {
  backups_removed: string[];
  objects_removed: number;
  wal_chunks_removed: number;
}

/** The backups retention keeps (oldest first). */
export function keptBackups(backups: readonly BackupManifest[], now: number, keepDays: number): BackupManifest[] {
  const windowStart = now - keepDays * DAY_MS;
  const keep = new Set(backups.filter((backup) => completedAtOf(backup) >= windowStart));
  const before = backups.filter((backup) => completedAtOf(backup) < windowStart).at(-1);
  if (before) keep.add(before);
  const newestFull = backups.filter((backup) => backup.kind === 'full').at(-1);
  if (newestFull) keep.add(newestFull);
  return backups.filter((backup) => keep.has(backup));
}

export async function pruneBackups(store: BackupStore, archive: WalArchive, shards: number, now: number, keepDays: number): Promise<PruneReport> {
  const backups = await store.list();
  const kept = keptBackups(backups, now, keepDays);
  const removed = backups.filter((backup) => !kept.includes(backup));
  for (const backup of removed) await store.deleteManifest(backup.backup_id);
  const referenced = new Set(kept.flatMap((backup) => [...objectsOf(backup)]));
  let objectsRemoved = 0;
  for (const hash of await store.objectHashes()) {
    if (referenced.has(hash)) continue;
    await store.deleteObject(hash);
    objectsRemoved++;
  }
  let chunksRemoved = 0;
  if (kept.length > 0) {
    for (let shard = 0; shard < shards; shard++) {
      // A replay starts after a kept backup's durable seq: chunks wholly before the oldest such start are never read.
      const oldestStart = Math.min(...kept.map((backup) => backup.shards.find((entry) => entry.shard === shard)?.durable_seq ?? 0));
      chunksRemoved += await archive.pruneThrough(shard, oldestStart);
    }
  }
  return { backups_removed: removed.map((backup) => backup.backup_id), objects_removed: objectsRemoved, wal_chunks_removed: chunksRemoved };
}
