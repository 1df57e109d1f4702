// The backup schedule and backup retention, per incarnation of the data
// directory (src/storage/node-meta.ts): another history's backups never
// stand in for this one's.
//
// - dueBackup: a full backup when this incarnation has none or its newest
//   full is older than full_interval_hours; otherwise an incremental one
//   when its newest backup of any kind is older than
//   incremental_interval_hours.
// - pruneBackups (retention.backups_days): for each incarnation, keeps
//   every backup completed within the window, the newest one completed
//   before it (so that any moment of the window stays restorable to a
//   point in time) and the newest full backup (so that an earlier life of
//   the directory stays restorable until an operator removes it by hand);
//   removes the other manifests, then the objects no kept manifest names,
//   then the archived WAL chunks that only an older base than every kept
//   backup of their incarnation could replay (all of them, for an
//   incarnation other than the node's own with no backup left). Manifests
//   go first: a crash half way leaves unreferenced objects (removed by the
//   next prune), never a manifest naming a removed object.

import { incarnationOfBackup, type BackupKind, type BackupManifest, type BackupStore } from './store.js';
import { objectsOf } from './backup.js';
import { completedAtOf } from './restore.js';
import type { WalArchive } from './wal-archive.js';

const DAY_MS = 86_400_000;

export function dueBackup(all: readonly BackupManifest[], incarnation: string, now: number, schedule: { fullIntervalMs: number; incrementalIntervalMs: number }): BackupKind | undefined {
  const backups = all.filter((backup) => incarnationOfBackup(backup) === incarnation);
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

/** The backups retention keeps (oldest first), the rule applied to each incarnation's backups apart. */
export function keptBackups(backups: readonly BackupManifest[], now: number, keepDays: number): BackupManifest[] {
  const windowStart = now - keepDays * DAY_MS;
  const keep = new Set<BackupManifest>();
  for (const incarnation of new Set(backups.map(incarnationOfBackup))) {
    const own = backups.filter((backup) => incarnationOfBackup(backup) === incarnation);
    for (const backup of own) if (completedAtOf(backup) >= windowStart) keep.add(backup);
    const before = own.filter((backup) => completedAtOf(backup) < windowStart).at(-1);
    if (before) keep.add(before);
    const newestFull = own.filter((backup) => backup.kind === 'full').at(-1);
    if (newestFull) keep.add(newestFull);
  }
  return backups.filter((backup) => keep.has(backup));
}

export interface PruneTarget {
  store: BackupStore;
  /** The archive of an incarnation. */
  archiveOf: (incarnation: string) => WalArchive;
  /** Incarnations with an archive in the target. */
  incarnations: readonly string[];
  /** The running node's incarnation: its archive is kept whole while it has no backup yet. */
  ownIncarnation: string;
  shards: number;
}

export async function pruneBackups(target: PruneTarget, now: number, keepDays: number): Promise<PruneReport> {
  const { store } = target;
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
  for (const incarnation of target.incarnations) {
    const bases = kept.filter((backup) => incarnationOfBackup(backup) === incarnation);
    if (bases.length === 0 && incarnation === target.ownIncarnation) continue;
    const archive = target.archiveOf(incarnation);
    for (let shard = 0; shard < target.shards; shard++) {
      // A replay starts after a kept backup's durable seq: chunks wholly before the oldest such start are never read.
      const oldestStart = bases.length === 0 ? Number.MAX_SAFE_INTEGER : Math.min(...bases.map((backup) => backup.shards.find((entry) => entry.shard === shard)?.durable_seq ?? 0));
      chunksRemoved += await archive.pruneThrough(shard, oldestStart);
    }
  }
  return { backups_removed: removed.map((backup) => backup.backup_id), objects_removed: objectsRemoved, wal_chunks_removed: chunksRemoved };
}
