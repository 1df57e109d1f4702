// Restore (docs/operations.md): always into a directory that does not exist
// yet, built beside it, opened and checked shard by shard, and only then
// renamed into place. Three forms, which combine:
//
// - full: a backup as it was taken.
// - point in time (`toTime`): the newest backup of the chosen incarnation
//   completed at or before T, then every entry of that incarnation's WAL
//   archive after that backup whose version was written at or before T
//   (its `updated_at`, by the node's clock), replayed as a WAL segment the
//   node recovers at start. A gap in the archive after the base backup is
//   refused, never skipped. What was acknowledged after the archive's last
//   round is not in the archive: the reply says how far it reaches (the
//   recovery point).
// - partial (`userId`, `from`, `to` on record time): the current versions
//   of the matching records only, versions and sequence numbers kept, in a
//   data directory of the same node and shard count, so that a node can
//   serve it beside the live one.
//
// One history at a time: a restore combines a backup and archive chunks
// of one incarnation of the data directory only (src/storage/node-meta.ts),
// chosen as the request's `incarnation`, else the named backup's, else
// (a point in time alone) the running node's own. The restored directory
// is a new incarnation whose node.json records its lineage: the
// incarnation and backup it came from, and the time restored to.

import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { StoredRecord } from '../../protocols/record.js';
import type { Logger } from '../log.js';
import type { FileSystem } from '../ports/fs.js';
import { writeFileAtomic } from '../storage/atomic.js';
import { encodeNodeMeta, newIncarnation, readNodeMeta, type Lineage } from '../storage/node-meta.js';
import { ShardStore } from '../storage/shard-store.js';
import { encodeFrames, segmentName, type WalEntry } from '../storage/wal.js';
import { checkRestored, materialise } from './backup.js';
import { BackupError, incarnationOfBackup, type BackupManifest, type BackupStore } from './store.js';
import { WalArchive } from './wal-archive.js';

export interface RestoreRequest {
  /** The backup to restore, or with `toTime` the base to replay from (default: the newest completed by then). */
  backupId?: string;
  /** Epoch ms: restore the state as of this moment. */
  toTime?: number;
  /** Partial: this user's records only. */
  userId?: string;
  /** Partial: records with ts in [from, to). */
  from?: number;
  to?: number;
  /** The history to restore from (default: the backup's; with toTime alone, `ownIncarnation`). */
  incarnation?: string;
  targetDir: string;
}

export interface RestoreReport {
  backup_id: string;
  /** The history restored: the base backup's incarnation, whose archive was replayed. */
  incarnation: string;
  /** The restored directory's own incarnation, and where it came from. */
  new_incarnation: string;
  lineage: Lineage;
  target_dir: string;
  records: number;
  to_time?: string;
  /** WAL entries replayed from the archive. */
  replayed?: number;
  /** The archive held every acknowledged write up to here; a to_time after it gets what the archive has. */
  recovery_point?: string | null;
  partial?: { user_id?: string; from?: string; to?: string };
  notes: string[];
}

/** When a backup's contents were complete; early backups knew only their start. */
export const completedAtOf = (manifest: BackupManifest) => Date.parse(manifest.completed_at ?? manifest.created_at);

const iso = (ms: number) => new Date(ms).toISOString();

/** The backup a restore starts from, of one incarnation. */
async function baseOf(store: BackupStore, request: RestoreRequest, ownIncarnation: string): Promise<BackupManifest> {
  const { toTime } = request;
  if (request.backupId !== undefined) {
    const chosen = await store.manifest(request.backupId);
    const of = incarnationOfBackup(chosen);
    if (request.incarnation !== undefined && request.incarnation !== of) {
      throw new BackupError(`backup ${chosen.backup_id} is of incarnation ${of}, not ${request.incarnation}; a restore combines one history only`);
    }
    if (toTime !== undefined && completedAtOf(chosen) > toTime) {
      throw new BackupError(`backup ${chosen.backup_id} completed at ${iso(completedAtOf(chosen))}, after to_time ${iso(toTime)}; pick an earlier backup or leave backup_id out`);
    }
    return chosen;
  }
  if (toTime === undefined) throw new BackupError('give backup_id, to_time, or both');
  const incarnation = request.incarnation ?? ownIncarnation;
  const backups = await store.list();
  const own = backups.filter((backup) => incarnationOfBackup(backup) === incarnation);
  const base = own.filter((backup) => completedAtOf(backup) <= toTime).at(-1);
  if (base) return base;
  const elsewhere = backups.filter((backup) => incarnationOfBackup(backup) !== incarnation && completedAtOf(backup) <= toTime).at(-1);
  const oldest = own[0];
  throw new BackupError(
    `no backup of incarnation ${incarnation} completed at or before ${iso(toTime)}` +
      (oldest ? `; its oldest, ${oldest.backup_id}, completed at ${iso(completedAtOf(oldest))}` : backups.length === 0 ? `; there are no backups in ${store.dir} yet, and a point-in-time restore starts from one` : '; it has no backups yet') +
      (elsewhere ? `; incarnation ${incarnationOfBackup(elsewhere)} (another history of this node) has ${elsewhere.backup_id}: pass incarnation ${incarnationOfBackup(elsewhere)} to restore that history` : ''),
    { notFound: true },
  );
}

/** Appends each shard's archived versions written by `toTime` as one WAL segment after the base's. */
async function replayArchive(
  fs: FileSystem,
  store: BackupStore,
  base: BackupManifest,
  staging: string,
  toTime: number,
): Promise<{ replayed: number; recoveryPoint: number | null; newRecords: Map<number, number> }> {
  const archive = new WalArchive(fs, store.dir, base.node.node_id, incarnationOfBackup(base));
  let replayed = 0;
  /** Version 1 is a record's first write: new records beside the base's, per shard. */
  const newRecords = new Map<number, number>();
  for (const shard of base.shards) {
    const kept: WalEntry[] = [];
    await archive.replayAfter(shard.shard, shard.durable_seq, (entry) => {
      if (entry.record.updated_at <= toTime) kept.push(entry);
    });
    if (kept.length === 0) continue;
    const walDir = join(staging, 'shards', String(shard.shard), 'wal');
    await writeFileAtomic(fs, join(walDir, segmentName(kept[0]!.seq)), encodeFrames(kept));
    replayed += kept.length;
    newRecords.set(shard.shard, kept.filter((entry) => entry.record.version === 1).length);
  }
  const state = await archive.readState();
  const times = base.shards.map((shard) => state?.shards[String(shard.shard)]?.archived_at).map((at) => (at === undefined ? Number.NaN : Date.parse(at)));
  const recoveryPoint = times.length > 0 && times.every((time) => !Number.isNaN(time)) ? Math.min(...times) : null;
  return { replayed, recoveryPoint, newRecords };
}

/** Rebuilds `source` (a restored directory) as `dest` with only the records the filters select. */
async function keepOnly(fs: FileSystem, base: BackupManifest, source: string, dest: string, request: RestoreRequest, log: Logger): Promise<number> {
  await fs.mkdir(dest);
  await writeFileAtomic(fs, join(dest, 'node.json'), await fs.readFile(join(source, 'node.json')));
  let kept = 0;
  for (const shard of base.shards) {
    const shardStore = await ShardStore.open({
      dir: join(source, 'shards', String(shard.shard)),
      shard: shard.shard,
      nodeId: base.node.node_id,
      now: Date.now,
      fs,
      fsync: false,
      log,
      memtableRecordsMax: Number.MAX_SAFE_INTEGER,
      cacheBytesMax: 64 << 20,
    });
    const records: StoredRecord[] = [];
    try {
      const filters = { ...(request.userId !== undefined ? { user_id: request.userId } : {}), ...(request.from !== undefined ? { from: request.from } : {}), ...(request.to !== undefined ? { to: request.to } : {}) };
      for await (const record of shardStore.scan(filters)) records.push(record);
    } finally {
      await shardStore.close();
    }
    const shardDir = join(dest, 'shards', String(shard.shard));
    await fs.mkdir(join(shardDir, 'partitions'));
    await fs.mkdir(join(shardDir, 'wal'));
    if (records.length > 0) {
      records.sort((a, b) => a.seq - b.seq);
      // The records keep their versions and seqs; the node seals them from its WAL as usual.
      await writeFileAtomic(fs, join(shardDir, 'wal', segmentName(records[0]!.seq)), encodeFrames(records.map((record) => ({ seq: record.seq, op: 'put', record }))));
    }
    kept += records.length;
  }
  await fs.syncDir(join(dest, 'shards'));
  await fs.syncDir(dest);
  return kept;
}

/** Gives a restored directory its own incarnation, recording where it came from. */
async function newLineage(fs: FileSystem, dir: string, lineage: Lineage): Promise<string> {
  const meta = await readNodeMeta(fs, dir);
  const incarnation = newIncarnation();
  await writeFileAtomic(fs, join(dir, 'node.json'), encodeNodeMeta({ ...meta, incarnation, lineage }));
  return incarnation;
}

/**
 * Restores into `request.targetDir`. `ownIncarnation` is the running
 * node's: the history a point-in-time restore chooses by default.
 */
export async function restore(store: BackupStore, fs: FileSystem, request: RestoreRequest, log: Logger, ownIncarnation: string, now: number = Date.now()): Promise<RestoreReport> {
  const { targetDir, toTime } = request;
  if (await fs.exists(targetDir)) throw new BackupError(`${targetDir} exists; restore into a new directory, then point data_dir at it`);
  const base = await baseOf(store, request, ownIncarnation);
  const incarnation = incarnationOfBackup(base);
  const partial = request.userId !== undefined || request.from !== undefined || request.to !== undefined;
  const suffix = randomBytes(4).toString('hex');
  const staging = `${targetDir}.restoring-${suffix}`;
  const filtered = `${targetDir}.selecting-${suffix}`;
  const notes: string[] = [];
  try {
    await materialise(store, fs, base, staging);
    let replay: Awaited<ReturnType<typeof replayArchive>> | undefined;
    if (toTime !== undefined) {
      replay = await replayArchive(fs, store, base, staging, toTime);
      if (replay.recoveryPoint === null) notes.push('the WAL archive has no record of its rounds; the recovery point is unknown');
      else if (replay.recoveryPoint < toTime) notes.push(`the WAL archive reaches ${iso(replay.recoveryPoint)}; writes acknowledged after it and before to_time were not archived`);
    }
    let records = await checkRestored(fs, base, staging, log, replay ? { extraRecords: replay.newRecords } : {});
    const selection = {
      ...(request.userId !== undefined ? { user_id: request.userId } : {}),
      ...(request.from !== undefined ? { from: iso(request.from) } : {}),
      ...(request.to !== undefined ? { to: iso(request.to) } : {}),
    };
    const lineage: Lineage = {
      parent_incarnation: incarnation,
      backup_id: base.backup_id,
      to_time: toTime === undefined ? null : iso(toTime),
      restored_at: iso(now),
      ...(partial ? { partial: selection } : {}),
    };
    // Before a partial selection copies node.json: the selected directory is a new history too.
    const newIncarnationId = await newLineage(fs, staging, lineage);
    let ready = staging;
    if (partial) {
      records = await keepOnly(fs, base, staging, filtered, request, log);
      await checkRestored(fs, base, filtered, log, { partial: true, deep: true });
      ready = filtered;
    }
    await fs.rename(ready, targetDir);
    await fs.syncDir(dirname(targetDir));
    return {
      backup_id: base.backup_id,
      incarnation,
      new_incarnation: newIncarnationId,
      lineage,
      target_dir: targetDir,
      records,
      ...(toTime !== undefined ? { to_time: iso(toTime), replayed: replay!.replayed, recovery_point: replay!.recoveryPoint === null ? null : iso(replay!.recoveryPoint) } : {}),
      ...(partial ? { partial: selection } : {}),
      notes,
    };
  } finally {
    await rm(staging, { recursive: true, force: true });
    await rm(filtered, { recursive: true, force: true });
  }
}
