// Taking, checking and restoring backups of a data directory
// (docs/operations.md).
//
// - create: each shard gives a consistent snapshot (its manifest and the
//   durable bytes of its WAL, taken inside its actor); the sealed files the
//   manifest lists are immutable and copied as they are, after checking
//   their SHA-256 against the manifest. A full backup writes every object
//   afresh; an incremental one only those the store lacks; a differential
//   one those its full backup does not have. The manifest is written last:
//   a backup exists once its manifest does.
// - verify: every object re-read and checked against its hash, then a test
//   restore into a temporary directory whose shards must open and serve.
// - restore: into a fresh directory, verified the same way before it is
//   renamed to the target, so a restore never leaves half a data directory
//   under the name a node would start on.

import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import type { FileSystem } from '../ports/fs.js';
import type { ShardManifest } from '../storage/manifest.js';
import { writeFileAtomic } from '../storage/atomic.js';
import { ShardStore } from '../storage/shard-store.js';
import { BackupError, backupIdOf, type BackupKind, type BackupManifest, type BackupStore, type ObjectRef, type ShardBackup } from './store.js';

export interface ShardSnapshot {
  metadata: Uint8Array;
  manifest: ShardManifest;
  wal: { name: string; data: Uint8Array }[];
  durableSeq: number;
}

export interface CreateOptions {
  store: BackupStore;
  fs: FileSystem;
  dataDir: string;
  shards: number;
  kind: BackupKind;
  now: number;
  snapshot: (shard: number) => Promise<ShardSnapshot>;
  progress?: (done: number, total: number) => void;
}

/** The backup an incremental or differential one is taken against. */
function parentOf(kind: BackupKind, backups: readonly BackupManifest[]): BackupManifest | undefined {
  if (kind === 'full') return undefined;
  const candidates = kind === 'differential' ? backups.filter((backup) => backup.kind === 'full') : backups;
  const parent = candidates.at(-1);
  if (!parent) throw new BackupError(`a ${kind} backup needs a full backup to start from; take one with kind full first`);
  return parent;
}

const objectsOf = (manifest: BackupManifest): Set<string> =>
  new Set([manifest.node_json.sha256, ...manifest.shards.flatMap((shard) => [shard.metadata, ...shard.partitions, ...shard.wal].map((ref) => ref.sha256))]);

export async function createBackup(options: CreateOptions): Promise<BackupManifest> {
  const { store, fs, kind } = options;
  const parent = parentOf(kind, await store.list());
  const parentObjects = parent ? objectsOf(parent) : new Set<string>();
  let written = 0;
  let bytesWritten = 0;
  /** Writes an object as the kind says; returns its reference. */
  const put = async (name: string, bytes: Uint8Array): Promise<ObjectRef> => {
    const result = await store.putObject(bytes, kind === 'full');
    const ref = { name, sha256: result.sha256, bytes: bytes.byteLength };
    if (kind === 'differential' && !result.written && !parentObjects.has(ref.sha256)) {
      // Present in the store from an incremental, but not in the full this differential builds on: counted as its own.
      bytesWritten += bytes.byteLength;
      written++;
    } else if (result.written) {
      bytesWritten += bytes.byteLength;
      written++;
    }
    return ref;
  };
  const nodeJson = await fs.readFile(join(options.dataDir, 'node.json'));
  const node = JSON.parse(new TextDecoder().decode(nodeJson)) as BackupManifest['node'];
  const shards: ShardBackup[] = [];
  for (let shard = 0; shard < options.shards; shard++) {
    const snapshot = await options.snapshot(shard);
    const partitions: ObjectRef[] = [];
    for (const entry of snapshot.manifest.files) {
      // Sealed files already in the store (by the hash the shard's manifest records) are not read again.
      if (kind === 'incremental' && (await store.hasObject(entry.sha256))) {
        partitions.push({ name: entry.name, sha256: entry.sha256, bytes: entry.bytes });
        continue;
      }
      const bytes = await fs.readFile(join(options.dataDir, 'shards', String(shard), 'partitions', entry.name));
      const ref = await put(entry.name, bytes);
      if (ref.sha256 !== entry.sha256) throw new BackupError(`shard ${shard}: sealed file ${entry.name} does not match its SHA-256 in metadata.json; the shard is damaged`);
      partitions.push(ref);
    }
    const wal: ObjectRef[] = [];
    for (const segment of snapshot.wal) wal.push(await put(segment.name, segment.data));
    shards.push({ shard, durable_seq: snapshot.durableSeq, metadata: await put('metadata.json', snapshot.metadata), partitions, wal });
    options.progress?.(shard + 1, options.shards);
  }
  const manifest: BackupManifest = {
    backup_id: backupIdOf(options.now, kind),
    kind,
    parent: parent?.backup_id ?? null,
    created_at: new Date(options.now).toISOString(),
    node: { node_id: node.node_id, cluster_id: node.cluster_id, shards: node.shards, format_version: node.format_version },
    node_json: await put('node.json', nodeJson),
    shards,
    objects_written: written,
    bytes_written: bytesWritten,
  };
  await store.writeManifest(manifest);
  return manifest;
}

/** Writes a backup's files into `dir` (which must not exist yet). */
async function materialise(store: BackupStore, fs: FileSystem, manifest: BackupManifest, dir: string): Promise<void> {
  await fs.mkdir(dir);
  await writeFileAtomic(fs, join(dir, 'node.json'), await store.readObject(manifest.node_json));
  for (const shard of manifest.shards) {
    const shardDir = join(dir, 'shards', String(shard.shard));
    await fs.mkdir(join(shardDir, 'partitions'));
    await fs.mkdir(join(shardDir, 'wal'));
    // Each file durably (temp, fsync, rename, directory fsync), so a restored directory survives a crash as it was checked.
    await writeFileAtomic(fs, join(shardDir, 'metadata.json'), await store.readObject(shard.metadata));
    for (const ref of shard.partitions) await writeFileAtomic(fs, join(shardDir, 'partitions', ref.name), await store.readObject(ref));
    for (const ref of shard.wal) await writeFileAtomic(fs, join(shardDir, 'wal', ref.name), await store.readObject(ref));
    await fs.syncDir(join(dir, 'shards'));
  }
  await fs.syncDir(dir);
}

/** Opens every shard of a restored directory; throws unless each serves. Returns the records found. */
async function checkRestored(fs: FileSystem, manifest: BackupManifest, dir: string, log: Logger): Promise<number> {
  let records = 0;
  for (const shard of manifest.shards) {
    const store = await ShardStore.open({
      dir: join(dir, 'shards', String(shard.shard)),
      shard: shard.shard,
      nodeId: manifest.node.node_id,
      now: Date.now,
      fs,
      fsync: false,
      log,
      memtableRecordsMax: Number.MAX_SAFE_INTEGER,
      cacheBytesMax: 1 << 20,
    });
    try {
      if (store.health.state !== 'serving') throw new BackupError(`shard ${shard.shard} of backup ${manifest.backup_id} does not open: ${store.health.reason}`);
      if (store.durableSeq < shard.durable_seq) throw new BackupError(`shard ${shard.shard} of backup ${manifest.backup_id} ends at seq ${store.durableSeq}, not ${shard.durable_seq}`);
      records += store.index.size;
    } finally {
      await store.close();
    }
  }
  return records;
}

export interface VerifyReport {
  backup_id: string;
  /** Every object matched its hash and the test restore served. */
  valid: boolean;
  objects: number;
  records: number;
  problems: string[];
}

/** Re-reads every object of a backup, then test-restores it into a temporary directory. */
export async function verifyBackup(store: BackupStore, fs: FileSystem, backupId: string, log: Logger): Promise<VerifyReport> {
  const manifest = await store.manifest(backupId);
  const refs = [manifest.node_json, ...manifest.shards.flatMap((shard) => [shard.metadata, ...shard.partitions, ...shard.wal])];
  const problems: string[] = [];
  for (const ref of refs) {
    try {
      await store.readObject(ref);
    } catch (error) {
      problems.push((error as Error).message);
    }
  }
  let records = 0;
  if (problems.length === 0) {
    const dir = join(tmpdir(), `usage-tracker-verify-${randomBytes(6).toString('hex')}`);
    try {
      await materialise(store, fs, manifest, dir);
      records = await checkRestored(fs, manifest, dir, log);
    } catch (error) {
      problems.push((error as Error).message);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  return { backup_id: backupId, valid: problems.length === 0, objects: refs.length, records, problems };
}

/**
 * Restores a backup into `targetDir`, which must not exist: written beside
 * it, checked by opening every shard, then renamed into place.
 */
export async function restoreBackup(store: BackupStore, fs: FileSystem, backupId: string, targetDir: string, log: Logger): Promise<{ backup_id: string; target_dir: string; records: number }> {
  if (await fs.exists(targetDir)) throw new BackupError(`${targetDir} exists; restore into a new directory, then point data_dir at it`);
  const manifest = await store.manifest(backupId);
  const staging = `${targetDir}.restoring-${randomBytes(4).toString('hex')}`;
  try {
    await materialise(store, fs, manifest, staging);
    const records = await checkRestored(fs, manifest, staging, log);
    await fs.rename(staging, targetDir);
    return { backup_id: backupId, target_dir: targetDir, records };
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
}
