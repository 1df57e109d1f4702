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
import { scanSegment, writeWhole } from '../storage/wal.js';
import { readManifest } from '../storage/manifest.js';
import { ROLLUP_DIR } from '../retention/rollup-file.js';
import { incarnationOf, type NodeMeta } from '../storage/node-meta.js';
import { ShardStore } from '../storage/shard-store.js';
import { BackupError, backupIdOf, eachBounded, incarnationOfBackup, refsOf, SYNCS_IN_FLIGHT, type BackupKind, type BackupManifest, type BackupStore, type ObjectRef, type ShardBackup } from './store.js';

export interface ShardSnapshot {
  metadata: Uint8Array;
  manifest: ShardManifest;
  wal: { name: string; data: Uint8Array }[];
  durableSeq: number;
  /** Records (current versions) the snapshot holds. */
  records?: number;
}

export interface CreateOptions {
  store: BackupStore;
  fs: FileSystem;
  dataDir: string;
  shards: number;
  kind: BackupKind;
  now: number;
  /** The clock, read again when the last snapshot is taken (the backup's completed_at). */
  clock?: () => number;
  snapshot: (shard: number) => Promise<ShardSnapshot>;
  progress?: (done: number, total: number) => void;
}

/** The backup an incremental or differential one is taken against: of the same incarnation, never another history's. */
function parentOf(kind: BackupKind, backups: readonly BackupManifest[], incarnation: string): BackupManifest | undefined {
  if (kind === 'full') return undefined;
  const own = backups.filter((backup) => incarnationOfBackup(backup) === incarnation);
  const candidates = kind === 'differential' ? own.filter((backup) => backup.kind === 'full') : own;
  const parent = candidates.at(-1);
  if (!parent || !own.some((backup) => backup.kind === 'full')) {
    throw new BackupError(`${kind === 'incremental' ? 'an' : 'a'} ${kind} backup needs a full backup of this data directory (incarnation ${incarnation}) to start from; take one with kind full first`);
  }
  return parent;
}

/** Unsynced object bytes a backup may have outstanding before it waits for them. */
const BATCH_BYTES_MAX = 256 * 2 ** 20;
/** Sealed files read ahead of the one being hashed and written. */
const READ_AHEAD = 4;

export const objectsOf = (manifest: BackupManifest): Set<string> => new Set([manifest.node_json.sha256, ...manifest.shards.flatMap((shard) => refsOf(shard).map((ref) => ref.sha256))]);

export async function createBackup(options: CreateOptions): Promise<BackupManifest> {
  const { store, fs, kind } = options;
  const nodeJson = await fs.readFile(join(options.dataDir, 'node.json'));
  const node = JSON.parse(new TextDecoder().decode(nodeJson)) as NodeMeta;
  const parent = parentOf(kind, await store.list(), incarnationOf(node));
  const parentObjects = parent ? objectsOf(parent) : new Set<string>();
  let written = 0;
  let bytesWritten = 0;
  const batch = store.batch();
  /** Writes an object as the kind says (durable at the next flush); returns its reference. */
  const put = async (name: string, bytes: Uint8Array): Promise<ObjectRef> => {
    const result = await batch.put(bytes, kind === 'full');
    if (batch.bytes >= BATCH_BYTES_MAX) await batch.flush();
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
  const shards: ShardBackup[] = [];
  for (let shard = 0; shard < options.shards; shard++) {
    const snapshot = await options.snapshot(shard);
    const partitions: ObjectRef[] = [];
    const files = snapshot.manifest.files;
    // Sealed files already in the store (by the hash the shard's manifest records) are not read again.
    const copy = await Promise.all(files.map(async (entry) => !(kind === 'incremental' && (await store.hasObject(entry.sha256)))));
    /** Reads run a few files ahead of hashing and writing, so the disk and the CPU both stay busy. */
    const reads = new Map<number, Promise<Uint8Array>>();
    const readAhead = (index: number) => {
      for (let next = index; next < files.length && next < index + READ_AHEAD; next++) {
        if (copy[next] && !reads.has(next)) reads.set(next, fs.readFile(join(options.dataDir, 'shards', String(shard), 'partitions', files[next]!.name)));
      }
    };
    for (const [index, entry] of files.entries()) {
      if (!copy[index]) {
        partitions.push({ name: entry.name, sha256: entry.sha256, bytes: entry.bytes });
        continue;
      }
      readAhead(index);
      const bytes = await reads.get(index)!;
      reads.delete(index);
      const ref = await put(entry.name, bytes);
      if (ref.sha256 !== entry.sha256) throw new BackupError(`shard ${shard}: sealed file ${entry.name} does not match its SHA-256 in metadata.json; the shard is damaged`);
      partitions.push(ref);
    }
    // Rollups are immutable like sealed files, and as small: read and stored the same way.
    const rollups: ObjectRef[] = [];
    for (const entry of snapshot.manifest.rollups ?? []) {
      const ref = await put(entry.name, await fs.readFile(join(options.dataDir, 'shards', String(shard), ROLLUP_DIR, entry.name)));
      if (ref.sha256 !== entry.sha256) throw new BackupError(`shard ${shard}: rollup file ${entry.name} does not match its SHA-256 in metadata.json; the shard is damaged`);
      rollups.push(ref);
    }
    const wal: ObjectRef[] = [];
    for (const segment of snapshot.wal) wal.push(await put(segment.name, segment.data));
    shards.push({
      shard,
      durable_seq: snapshot.durableSeq,
      ...(snapshot.records !== undefined ? { records: snapshot.records } : {}),
      metadata: await put('metadata.json', snapshot.metadata),
      partitions,
      ...(rollups.length > 0 ? { rollups } : {}),
      wal,
    });
    options.progress?.(shard + 1, options.shards);
  }
  const completedAt = options.clock?.() ?? options.now;
  const nodeJsonRef = await put('node.json', nodeJson);
  // Every object durable before the manifest that names them.
  await batch.flush();
  const manifest: BackupManifest = {
    backup_id: backupIdOf(options.now, kind),
    kind,
    incarnation: incarnationOf(node),
    parent: parent?.backup_id ?? null,
    created_at: new Date(options.now).toISOString(),
    completed_at: new Date(completedAt).toISOString(),
    node: { node_id: node.node_id, cluster_id: node.cluster_id, shards: node.shards, format_version: node.format_version },
    node_json: nodeJsonRef,
    shards,
    objects_written: written,
    bytes_written: bytesWritten,
  };
  await store.writeManifest(manifest);
  return manifest;
}

/** Writes a backup's files into `dir` (which must not exist yet). */
export async function materialise(store: BackupStore, fs: FileSystem, manifest: BackupManifest, dir: string): Promise<void> {
  // `dir` is a staging directory no node starts on: files go straight to their names, and are all made
  // durable together at the end (fdatasyncs in parallel, then each directory), before anyone renames it into place.
  const files: string[] = [];
  const write = async (path: string, bytes: Uint8Array) => {
    const handle = await fs.open(path, 'write');
    try {
      await writeWhole(handle, bytes, 0);
    } finally {
      await handle.close();
    }
    files.push(path);
  };
  await fs.mkdir(dir);
  await write(join(dir, 'node.json'), await store.readObject(manifest.node_json));
  const dirs = [dir, join(dir, 'shards')];
  for (const shard of manifest.shards) {
    const shardDir = join(dir, 'shards', String(shard.shard));
    await fs.mkdir(join(shardDir, 'partitions'));
    await fs.mkdir(join(shardDir, 'wal'));
    dirs.push(shardDir, join(shardDir, 'partitions'), join(shardDir, 'wal'));
    await write(join(shardDir, 'metadata.json'), await store.readObject(shard.metadata));
    for (const ref of shard.partitions) await write(join(shardDir, 'partitions', ref.name), await store.readObject(ref));
    if (shard.rollups?.length) {
      await fs.mkdir(join(shardDir, ROLLUP_DIR));
      dirs.push(join(shardDir, ROLLUP_DIR));
      for (const ref of shard.rollups) await write(join(shardDir, ROLLUP_DIR, ref.name), await store.readObject(ref));
    }
    for (const ref of shard.wal) await write(join(shardDir, 'wal', ref.name), await store.readObject(ref));
  }
  await eachBounded(files, SYNCS_IN_FLIGHT, async (path) => {
    const handle = await fs.open(path, 'read');
    try {
      await handle.datasync();
    } finally {
      await handle.close();
    }
  });
  await eachBounded(dirs.reverse(), SYNCS_IN_FLIGHT, (path) => fs.syncDir(path));
}

/**
 * Checks a restored directory; throws unless it will serve. Returns the
 * records it holds.
 *
 * - deep (verify, partial restore): opens every shard as a node would,
 *   reading and indexing every sealed file and replaying its WAL; it must
 *   serve and reach the backup's durable seq (unless `partial`: a partial
 *   restore keeps some records only).
 * - light (restore): every object was checked against its SHA-256 as it was
 *   read; each shard's manifest must parse, list exactly the files the
 *   backup holds with those hashes, and every WAL frame must be whole. The
 *   node's own open does the indexing at its start, so a restore does not do
 *   it twice. Backups from before record counts were kept get the deep check.
 */
export async function checkRestored(
  fs: FileSystem,
  manifest: BackupManifest,
  dir: string,
  log: Logger,
  options: { partial?: boolean; deep?: boolean; extraRecords?: Map<number, number> } = {},
): Promise<number> {
  let records = 0;
  for (const shard of manifest.shards) {
    const shardDir = join(dir, 'shards', String(shard.shard));
    if (!options.deep && shard.records !== undefined) {
      records += shard.records + (options.extraRecords?.get(shard.shard) ?? 0);
      await checkShardFiles(fs, manifest, shard, shardDir);
      continue;
    }
    const store = await ShardStore.open({
      dir: shardDir,
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
      if (!options.partial && store.durableSeq < shard.durable_seq) throw new BackupError(`shard ${shard.shard} of backup ${manifest.backup_id} ends at seq ${store.durableSeq}, not ${shard.durable_seq}`);
      records += store.index.size;
    } finally {
      await store.close();
    }
  }
  return records;
}

/** The light check of one restored shard (see checkRestored). */
async function checkShardFiles(fs: FileSystem, manifest: BackupManifest, shard: ShardBackup, shardDir: string): Promise<void> {
  const where = `shard ${shard.shard} of backup ${manifest.backup_id}`;
  let listed;
  try {
    listed = (await readManifest(fs, shardDir, shard.shard)).manifest;
  } catch (error) {
    throw new BackupError(`${where}: ${(error as Error).message}`, { cause: error });
  }
  const held = new Map(shard.partitions.map((ref) => [ref.name, ref.sha256]));
  if (listed.files.length !== held.size || listed.files.some((file) => held.get(file.name) !== file.sha256)) {
    throw new BackupError(`${where}: its metadata.json does not list the sealed files the backup holds`);
  }
  const heldRollups = new Map((shard.rollups ?? []).map((ref) => [ref.name, ref.sha256]));
  const listedRollups = listed.rollups ?? [];
  if (listedRollups.length !== heldRollups.size || listedRollups.some((file) => heldRollups.get(file.name) !== file.sha256)) {
    throw new BackupError(`${where}: its metadata.json does not list the rollup files the backup holds`);
  }
  let lastSeq = listed.sealed_seq;
  for (const name of (await fs.readdir(join(shardDir, 'wal'))).sort()) {
    const scan = scanSegment(await fs.readFile(join(shardDir, 'wal', name)));
    if (scan.tail.kind !== 'clean') throw new BackupError(`${where}: WAL ${name} is damaged at byte ${scan.validBytes}`);
    for (const entry of scan.entries) lastSeq = Math.max(lastSeq, entry.seq);
  }
  if (lastSeq < shard.durable_seq) throw new BackupError(`${where} ends at seq ${lastSeq}, not ${shard.durable_seq}`);
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
  const refs = [manifest.node_json, ...manifest.shards.flatMap(refsOf)];
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
      records = await checkRestored(fs, manifest, dir, log, { deep: true });
    } catch (error) {
      problems.push((error as Error).message);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  return { backup_id: backupId, valid: problems.length === 0, objects: refs.length, records, problems };
}
