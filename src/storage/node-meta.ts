// node.json: what a data directory belongs to. The shard count is fixed when
// the directory is created; a node configured with another count refuses to
// start on it rather than misplace every record.

import { open as openFile, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { FileSystem } from '../ports/fs.js';
import { writeFileAtomic } from './atomic.js';
import { STORAGE_FORMAT_VERSION, STORAGE_FORMATS_READ } from './manifest.js';

export interface NodeMeta {
  node_id: string;
  cluster_id: string;
  shards: number;
  format_version: number;
  created_at: string;
}

export class DataDirError extends Error {
  override readonly name = 'DataDirError';
}

export async function openDataDir(fs: FileSystem, dataDir: string, wanted: Omit<NodeMeta, 'format_version' | 'created_at'>, now: number): Promise<NodeMeta> {
  await fs.mkdir(dataDir);
  const path = join(dataDir, 'node.json');
  if (!(await fs.exists(path))) {
    const meta: NodeMeta = { ...wanted, format_version: STORAGE_FORMAT_VERSION, created_at: new Date(now).toISOString() };
    await writeFileAtomic(fs, path, new TextEncoder().encode(JSON.stringify(meta, null, 1)));
    return meta;
  }
  let meta: NodeMeta;
  try {
    meta = JSON.parse(new TextDecoder().decode(await fs.readFile(path))) as NodeMeta;
  } catch (error) {
    throw new DataDirError(`${path} is not valid JSON (${(error as Error).message}); restore it from a backup`, { cause: error });
  }
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
  return meta;
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

/** Held while a node runs on a data directory; `release` gives it up. */
export interface DataDirLock {
  path: string;
  release(): Promise<void>;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * One node per data directory: a second writer of the same shards would
 * corrupt them. The lock file holds the owner's pid; a lock whose process
 * is gone (a crash, SIGKILL) is taken over.
 */
const heldHere = new Set<string>();

export async function lockDataDir(dataDir: string): Promise<DataDirLock> {
  const path = join(dataDir, 'LOCK');
  if (heldHere.has(path)) throw new DataDirError(`${dataDir} is already in use by another node in this process; one node per data directory`);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await openFile(path, 'wx');
      await handle.writeFile(`${process.pid}\n`);
      await handle.close();
      heldHere.add(path);
      return {
        path,
        release: async () => {
          heldHere.delete(path);
          await unlink(path).catch(() => undefined);
        },
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const owner = Number.parseInt(await readFile(path, 'utf8').catch(() => ''), 10);
      // Our own pid and not held here: a lock left by this process's earlier run of a node.
      if (Number.isInteger(owner) && owner !== process.pid && alive(owner)) {
        throw new DataDirError(`${dataDir} is in use by another usage-tracker process (pid ${owner}); one node per data directory`);
      }
      await unlink(path).catch(() => undefined);
    }
  }
  throw new DataDirError(`${dataDir}: cannot take the lock file ${path}`);
}
