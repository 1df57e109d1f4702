// node.json: what a data directory belongs to, and which history it holds.
//
// - The shard count is fixed when the directory is created; a node
//   configured with another count refuses to start on it rather than
//   misplace every record.
// - The incarnation is the directory's identity: 16 random hex digits given
//   when it is created, and a new one when a restore creates it (with its
//   lineage: the incarnation and backup it came from, and to what time).
//   Backups and the WAL archive are kept per incarnation, so that a restore
//   never combines two histories, such as a node's life before and after
//   its data directory was deleted (docs/operations.md). A directory from
//   before incarnations existed is the `legacy` incarnation; node.json is
//   not rewritten for it.

import { randomBytes } from 'node:crypto';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { INCARNATION_ID } from '../../protocols/requests.js';
import type { FileSystem } from '../ports/fs.js';
import { writeFileAtomic } from './atomic.js';
import { STORAGE_FORMAT_VERSION, STORAGE_FORMATS_READ } from './manifest.js';

/** The incarnation of directories, backups and archive chunks written before incarnations existed. */
export const LEGACY_INCARNATION = 'legacy';

/** Where a restored directory's history comes from. */
export interface Lineage {
  parent_incarnation: string;
  backup_id: string;
  /** The point in time restored to; null for a backup restored as it was taken. */
  to_time: string | null;
  restored_at: string;
  /** A partial restore's selection. */
  partial?: { user_id?: string; from?: string; to?: string };
}

export interface NodeMeta {
  node_id: string;
  cluster_id: string;
  shards: number;
  format_version: number;
  created_at: string;
  /** Absent in directories created before incarnations: read as LEGACY_INCARNATION. */
  incarnation?: string;
  lineage?: Lineage;
}

/** A fresh random incarnation id. */
export function newIncarnation(): string {
  return randomBytes(8).toString('hex');
}

/** The incarnation a node.json (or a backup's copy of it) names. */
export function incarnationOf(meta: { incarnation?: string | undefined }): string {
  return meta.incarnation ?? LEGACY_INCARNATION;
}

export function isIncarnation(value: unknown): value is string {
  return typeof value === 'string' && INCARNATION_ID.test(value);
}

export class DataDirError extends Error {
  override readonly name = 'DataDirError';
}

export const encodeNodeMeta = (meta: NodeMeta): Uint8Array => new TextEncoder().encode(JSON.stringify(meta, null, 1));

/** node.json of `dataDir`; DataDirError when it cannot be read or is not a node's. */
export async function readNodeMeta(fs: FileSystem, dataDir: string): Promise<NodeMeta> {
  const path = join(dataDir, 'node.json');
  let meta: NodeMeta;
  try {
    meta = JSON.parse(new TextDecoder().decode(await fs.readFile(path))) as NodeMeta;
  } catch (error) {
    throw new DataDirError(`${path} is not valid JSON (${(error as Error).message}); restore it from a backup`, { cause: error });
  }
  if (meta.incarnation !== undefined && !isIncarnation(meta.incarnation)) {
    throw new DataDirError(`${path} names incarnation ${JSON.stringify(meta.incarnation)}, which is not 16 hex digits; restore it from a backup`);
  }
  return meta;
}

/**
 * Opens (or creates) a data directory for a node; `created` says whether
 * this call wrote its node.json, so that a start that fails later can
 * leave the directory as it found it (forgetCreatedDataDir).
 */
export async function openDataDir(
  fs: FileSystem,
  dataDir: string,
  wanted: Omit<NodeMeta, 'format_version' | 'created_at' | 'incarnation' | 'lineage'>,
  now: number,
): Promise<NodeMeta & { created: boolean }> {
  await makeDataDir(fs, dataDir);
  const path = join(dataDir, 'node.json');
  if (!(await fs.exists(path))) {
    const meta: NodeMeta = { ...wanted, format_version: STORAGE_FORMAT_VERSION, created_at: new Date(now).toISOString(), incarnation: newIncarnation() };
    await writeFileAtomic(fs, path, encodeNodeMeta(meta));
    return { ...meta, created: true };
  }
  const meta = await readNodeMeta(fs, dataDir);
  if (meta.node_id !== wanted.node_id) {
    throw new DataDirError(`${dataDir} belongs to node ${meta.node_id}, not ${wanted.node_id}; set node.id: ${meta.node_id}, or use another data_dir`);
  }
  if (meta.shards !== wanted.shards) {
    throw new DataDirError(
      `${dataDir} was created with ${meta.shards} shards but cluster.shards is ${wanted.shards}; ` +
        `the shard count is fixed when the data directory is created (set cluster.shards: ${meta.shards}, or use another data_dir)`,
    );
  }
  if (meta.cluster_id !== wanted.cluster_id) {
    throw new DataDirError(`${dataDir} belongs to cluster ${meta.cluster_id}, not ${wanted.cluster_id}`);
  }
  // Format 1 opens and serves; `usage-tracker migration apply` rewrites it to the current format while it serves.
  if (!STORAGE_FORMATS_READ.includes(meta.format_version)) {
    throw new DataDirError(`${dataDir} has storage format ${meta.format_version}; this release reads formats ${STORAGE_FORMATS_READ.join(' and ')}`);
  }
  return { ...meta, created: false };
}

/** mkdir -p, with a sentence when the path (or a parent) is not a directory. */
export async function makeDataDir(fs: FileSystem, dataDir: string): Promise<void> {
  try {
    await fs.mkdir(dataDir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' || code === 'ENOTDIR') {
      throw new DataDirError(`data_dir ${dataDir} is not a directory (a file of that name, or in its path, is in the way); set node.data_dir to a directory`, { cause: error });
    }
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
      throw new DataDirError(`data_dir ${dataDir} cannot be created (${code}); set node.data_dir to a directory this user may write`, { cause: error });
    }
    throw error;
  }
}

/** Stable shard of a user: FNV-1a (32 bit) of the UTF-8 bytes of user_id, modulo the shard count. */
export function shardOf(userId: string, shards: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < userId.length; i++) {
    const code = userId.charCodeAt(i);
    if (code >= 0x80) return fnvBytes(Buffer.from(userId, 'utf8')) % shards;
    hash = Math.imul(hash ^ code, 0x01000193) >>> 0;
  }
  return hash % shards;
}

function fnvBytes(bytes: Uint8Array): number {
  let hash = 0x811c9dc5;
  for (const byte of bytes) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  return hash;
}

/** The names in a data directory (null: it does not exist), taken before a start touches it. */
export async function dataDirEntries(fs: FileSystem, dataDir: string): Promise<Set<string> | null> {
  return (await fs.exists(dataDir)) ? new Set(await fs.readdir(dataDir).catch(() => [])) : null;
}

/**
 * Undoes what a start that created node.json wrote, so that a failed first
 * start (NATS unreachable, a bad price file) leaves the directory as it
 * found it: a later start with other settings is then not refused. Such a
 * directory held no node.json, so nothing of ours was in it before.
 */
export async function forgetFailedStart(dataDir: string, before: Set<string> | null): Promise<void> {
  if (before === null) {
    await rm(dataDir, { recursive: true, force: true });
    return;
  }
  for (const name of await readdir(dataDir).catch(() => [])) {
    if (!before.has(name)) await rm(join(dataDir, name), { recursive: true, force: true });
  }
}
