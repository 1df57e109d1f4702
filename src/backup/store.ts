// The backup target: content-addressed objects plus one manifest per backup.
//
//   <target>/objects/<sha256>            every file's bytes, named by their SHA-256
//                                        (early builds: objects/<first 2 hex>/<sha256>, still read)
//   <target>/backups/<backup_id>.json    the manifest: what each shard held, by object
//
// A file that did not change between backups is the same object, stored
// once: an incremental backup copies only objects the store lacks. Objects
// and manifests are written through temp file, fsync and rename (a
// backup's objects together: ObjectBatch), so a crash
// leaves no half object under its final name; an object is verified against
// its name whenever it is read.

import { dirname, join } from 'node:path';
import { BACKUP_ID, type BackupKind } from '../../protocols/requests.js';

export type { BackupKind };
import type { FileSystem } from '../ports/fs.js';
import { writeFileAtomic } from '../storage/atomic.js';
import { LEGACY_INCARNATION } from '../storage/node-meta.js';
import { sha256 as sha256Of } from '../storage/partition-file.js';
import { writeWhole } from '../storage/wal.js';


export interface ObjectRef {
  name: string;
  sha256: string;
  bytes: number;
}

export interface ShardBackup {
  shard: number;
  durable_seq: number;
  /** Records the shard held (absent in early backups). */
  records?: number;
  metadata: ObjectRef;
  partitions: ObjectRef[];
  /** Retention's rollup files (shards/<k>/rollups/); absent in early backups. */
  rollups?: ObjectRef[];
  wal: ObjectRef[];
}

/** Every file reference of a shard's backup. */
export const refsOf = (shard: ShardBackup): ObjectRef[] => [shard.metadata, ...shard.partitions, ...(shard.rollups ?? []), ...shard.wal];

export interface BackupManifest {
  backup_id: string;
  kind: BackupKind;
  /** The data directory's incarnation the backup was taken of (absent in early backups: legacy). */
  incarnation?: string;
  /** The backup this one was taken against (incremental: the newest; differential: the newest full). */
  parent: string | null;
  created_at: string;
  /** When the last shard's snapshot was taken: every version in the backup was written before it (absent in early backups). */
  completed_at?: string;
  node: { node_id: string; cluster_id: string; shards: number; format_version: number };
  node_json: ObjectRef;
  shards: ShardBackup[];
  /** Objects this backup wrote (the rest were already in the store). */
  objects_written: number;
  bytes_written: number;
}

/**
 * A backup operation refused for a reason the caller can fix (a bad id, a
 * missing parent, a damaged object, a target that exists); `notFound`
 * when what was asked for is not there (E_NOT_FOUND, else E_VALIDATION).
 */
export class BackupError extends Error {
  override readonly name = 'BackupError';
  readonly notFound: boolean;
  constructor(message: string, options: ErrorOptions & { notFound?: boolean } = {}) {
    super(message, options);
    this.notFound = options.notFound ?? false;
  }
}

/** The incarnation a backup was taken of. */
export const incarnationOfBackup = (manifest: BackupManifest): string => manifest.incarnation ?? LEGACY_INCARNATION;



export class BackupStore {
  constructor(
    private readonly fs: FileSystem,
    readonly dir: string,
  ) {}

  /** One flat directory: a backup's new objects then need one directory fsync, not one per fan-out directory. */
  private objectPath(sha256: string): string {
    return join(this.dir, 'objects', sha256);
  }

  /** Where early builds put objects (a 2-hex fan-out); still read. */
  private legacyPath(sha256: string): string {
    return join(this.dir, 'objects', sha256.slice(0, 2), sha256);
  }

  async hasObject(sha256: string): Promise<boolean> {
    return (await this.fs.exists(this.objectPath(sha256))) || (await this.fs.exists(this.legacyPath(sha256)));
  }

  /**
   * Objects written together: each is written to a temp file at once, and
   * `flush` makes them all durable with their fdatasyncs in parallel, then
   * renames them into place and fsyncs each directory once. Far fewer
   * waits on the disk than one atomic write per object; nothing may refer
   * to an object until the flush that wrote it has resolved.
   */
  batch(): ObjectBatch {
    return new ObjectBatch(this.fs, this);
  }

  /** @internal the final path of an object. */
  pathOf(sha256: string): string {
    return this.objectPath(sha256);
  }

  /** An object's bytes, verified against its name; BackupError when missing or damaged. */
  async readObject(ref: ObjectRef): Promise<Uint8Array> {
    let bytes: Uint8Array;
    try {
      bytes = await this.fs.readFile(this.objectPath(ref.sha256)).catch(() => this.fs.readFile(this.legacyPath(ref.sha256)));
    } catch (error) {
      throw new BackupError(`object ${ref.sha256} (${ref.name}) is missing from ${this.dir}`, { cause: error });
    }
    if (bytes.byteLength !== ref.bytes || sha256Of(bytes) !== ref.sha256) {
      throw new BackupError(`object ${ref.sha256} (${ref.name}) is damaged: its bytes do not match its SHA-256`);
    }
    return bytes;
  }

  async writeManifest(manifest: BackupManifest): Promise<void> {
    await this.fs.mkdir(join(this.dir, 'backups'));
    await writeFileAtomic(this.fs, join(this.dir, 'backups', `${manifest.backup_id}.json`), new TextEncoder().encode(JSON.stringify(manifest, null, 1)));
  }

  async manifest(backupId: string): Promise<BackupManifest> {
    if (!BACKUP_ID.test(backupId)) throw new BackupError(`${JSON.stringify(backupId)} is not a backup id (such as 20261126T143000123Z-full)`);
    const path = join(this.dir, 'backups', `${backupId}.json`);
    if (!(await this.fs.exists(path))) throw new BackupError(`no backup ${backupId} in ${this.dir}`, { notFound: true });
    try {
      return JSON.parse(new TextDecoder().decode(await this.fs.readFile(path))) as BackupManifest;
    } catch (error) {
      throw new BackupError(`the manifest of backup ${backupId} is not valid JSON`, { cause: error });
    }
  }

  async deleteManifest(backupId: string): Promise<void> {
    await this.fs.unlink(join(this.dir, 'backups', `${backupId}.json`));
  }

  /** The hash of every object in the store. */
  async objectHashes(): Promise<string[]> {
    const root = join(this.dir, 'objects');
    if (!(await this.fs.exists(root))) return [];
    const hashes: string[] = [];
    for (const name of await this.fs.readdir(root)) {
      if (/^[0-9a-f]{64}$/.test(name)) hashes.push(name);
      else if (/^[0-9a-f]{2}$/.test(name)) for (const inner of await this.fs.readdir(join(root, name))) if (/^[0-9a-f]{64}$/.test(inner)) hashes.push(inner);
    }
    return hashes;
  }

  async deleteObject(sha256: string): Promise<void> {
    await this.fs.unlink(this.objectPath(sha256)).catch(() => this.fs.unlink(this.legacyPath(sha256)));
  }

  /** Every backup, oldest first. */
  async list(): Promise<BackupManifest[]> {
    const dir = join(this.dir, 'backups');
    if (!(await this.fs.exists(dir))) return [];
    const ids = (await this.fs.readdir(dir))
      .filter((name) => name.endsWith('.json'))
      .map((name) => name.slice(0, -'.json'.length))
      .filter((id) => BACKUP_ID.test(id))
      .sort();
    return Promise.all(ids.map((id) => this.manifest(id)));
  }
}

/** Parallel fdatasyncs in flight at once: enough for the disk to merge them, bounded for file handles. */
export const SYNCS_IN_FLIGHT = 64;

export async function eachBounded<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await work(items[next++]!);
  });
  await Promise.all(lanes);
}

export class ObjectBatch {
  private readonly pending = new Map<string, string>();
  private pendingBytes = 0;
  /** Writes in flight (each: write, fdatasync, close), at most SYNCS_IN_FLIGHT. */
  private readonly inFlight = new Set<Promise<void>>();
  private failure: unknown;
  private madeDir = false;

  constructor(
    private readonly fs: FileSystem,
    private readonly store: BackupStore,
  ) {}

  /** Bytes put since the last flush, so a caller can flush before holding too much unsynced. */
  get bytes(): number {
    return this.pendingBytes;
  }

  /**
   * Starts writing `bytes` under their hash, to a temp file made durable in
   * the background; `force` writes them even when present. The object has
   * its final name once `flush` resolves.
   */
  async put(bytes: Uint8Array, force: boolean): Promise<{ sha256: string; written: boolean }> {
    const sha256 = sha256Of(bytes);
    if (this.pending.has(sha256)) return { sha256, written: false };
    if (!force && (await this.store.hasObject(sha256))) return { sha256, written: false };
    const path = this.store.pathOf(sha256);
    const temp = join(dirname(path), `.${sha256}.tmp`);
    if (!this.madeDir) {
      await this.fs.mkdir(dirname(path));
      this.madeDir = true;
    }
    while (this.inFlight.size >= SYNCS_IN_FLIGHT) await Promise.race(this.inFlight);
    if (this.failure) throw this.failure;
    const write = (async () => {
      const handle = await this.fs.open(temp, 'write');
      try {
        await writeWhole(handle, bytes, 0);
        await handle.datasync();
      } finally {
        await handle.close();
      }
    })().catch((error: unknown) => {
      this.failure ??= error;
    });
    const tracked = write.finally(() => this.inFlight.delete(tracked));
    this.inFlight.add(tracked);
    this.pending.set(sha256, temp);
    this.pendingBytes += bytes.byteLength;
    return { sha256, written: true };
  }

  /** Makes every object put since the last flush durable under its final name. */
  async flush(): Promise<void> {
    await Promise.all(this.inFlight);
    if (this.failure) throw this.failure;
    const written = [...this.pending];
    this.pending.clear();
    this.pendingBytes = 0;
    // Data was synced before the names change: a crash leaves a temp file, never an object whose bytes were lost.
    for (const [sha256, temp] of written) await this.fs.rename(temp, this.store.pathOf(sha256));
    if (written.length > 0) await this.fs.syncDir(dirname(this.store.pathOf(written[0]![0])));
  }
}

/** A backup id: its time (UTC, to the millisecond) and kind, so that ids sort in time order. */
export function backupIdOf(now: number, kind: BackupKind): string {
  return `${new Date(now).toISOString().replace(/[-:.]/g, '')}-${kind}`;
}
