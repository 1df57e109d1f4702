// The backup target: content-addressed objects plus one manifest per backup.
//
//   <target>/objects/<first 2 hex>/<sha256>   every file's bytes, named by their SHA-256
//   <target>/backups/<backup_id>.json         the manifest: what each shard held, by object
//
// A file that did not change between backups is the same object, stored
// once: an incremental backup copies only objects the store lacks. Objects
// and manifests are written through temp file, fsync and rename, so a crash
// leaves no half object under its final name; an object is verified against
// its name whenever it is read.

import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { BACKUP_ID, type BackupKind } from '../../protocols/requests.js';

export type { BackupKind };
import type { FileSystem } from '../ports/fs.js';
import { writeFileAtomic } from '../storage/atomic.js';


export interface ObjectRef {
  name: string;
  sha256: string;
  bytes: number;
}

export interface ShardBackup {
  shard: number;
  durable_seq: number;
  metadata: ObjectRef;
  partitions: ObjectRef[];
  wal: ObjectRef[];
}

export interface BackupManifest {
  backup_id: string;
  kind: BackupKind;
  /** The backup this one was taken against (incremental: the newest; differential: the newest full). */
  parent: string | null;
  created_at: string;
  node: { node_id: string; cluster_id: string; shards: number; format_version: number };
  node_json: ObjectRef;
  shards: ShardBackup[];
  /** Objects this backup wrote (the rest were already in the store). */
  objects_written: number;
  bytes_written: number;
}

export class BackupError extends Error {
  override readonly name = 'BackupError';
}

export const sha256Of = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');


export class BackupStore {
  constructor(
    private readonly fs: FileSystem,
    readonly dir: string,
  ) {}

  private objectPath(sha256: string): string {
    return join(this.dir, 'objects', sha256.slice(0, 2), sha256);
  }

  async hasObject(sha256: string): Promise<boolean> {
    return this.fs.exists(this.objectPath(sha256));
  }

  /** Stores `bytes` under their hash; `force` writes them even when present (a full backup's fresh copy). Returns whether it wrote. */
  async putObject(bytes: Uint8Array, force: boolean): Promise<{ sha256: string; written: boolean }> {
    const sha256 = sha256Of(bytes);
    if (!force && (await this.hasObject(sha256))) return { sha256, written: false };
    await this.fs.mkdir(join(this.dir, 'objects', sha256.slice(0, 2)));
    await writeFileAtomic(this.fs, this.objectPath(sha256), bytes);
    return { sha256, written: true };
  }

  /** An object's bytes, verified against its name; BackupError when missing or damaged. */
  async readObject(ref: ObjectRef): Promise<Uint8Array> {
    let bytes: Uint8Array;
    try {
      bytes = await this.fs.readFile(this.objectPath(ref.sha256));
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
    if (!(await this.fs.exists(path))) throw new BackupError(`no backup ${backupId} in ${this.dir}`);
    try {
      return JSON.parse(new TextDecoder().decode(await this.fs.readFile(path))) as BackupManifest;
    } catch (error) {
      throw new BackupError(`the manifest of backup ${backupId} is not valid JSON`, { cause: error });
    }
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

/** A backup id: its time (UTC, to the millisecond) and kind, so that ids sort in time order. */
export function backupIdOf(now: number, kind: BackupKind): string {
  return `${new Date(now).toISOString().replace(/[-:.]/g, '')}-${kind}`;
}
