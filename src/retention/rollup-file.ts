// Rollup files of a shard: `shards/<k>/rollups/<day>_<nnnn>.json.gz`, gzip
// of one JSON RollupRow per line, immutable, listed in the shard manifest
// (`rollups`) with their size and SHA-256 exactly like sealed partition
// files. Recovery verifies every listed one and deletes any it does not
// list (leftovers of a retention run that crashed before its manifest).

import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzip as gunzipCallback, gzip as gzipCallback } from 'node:zlib';
import type { FileSystem } from '../ports/fs.js';
import { writeFileAtomic } from '../storage/atomic.js';
import { sha256 } from '../storage/partition-file.js';
import type { RollupRow } from './rollup.js';

const gzip = promisify(gzipCallback);
const gunzip = promisify(gunzipCallback);

export const ROLLUP_DIR = 'rollups';

export interface RollupEntry {
  name: string;
  /** UTC day (YYYY-MM-DD) of every row's hour. */
  day: string;
  rows: number;
  bytes: number;
  sha256: string;
}

export function rollupName(day: string, n: number): string {
  return `${day}_${String(n).padStart(4, '0')}.json.gz`;
}

export async function writeRollupFile(fs: FileSystem, shardDir: string, name: string, day: string, rows: readonly RollupRow[]): Promise<RollupEntry> {
  const dir = join(shardDir, ROLLUP_DIR);
  await fs.mkdir(dir);
  const bytes = new Uint8Array(await gzip(rows.map((row) => JSON.stringify(row)).join('\n') + '\n', { level: 6 }));
  await writeFileAtomic(fs, join(dir, name), bytes);
  return { name, day, rows: rows.length, bytes: bytes.byteLength, sha256: sha256(bytes) };
}

export async function readRollupFile(fs: FileSystem, shardDir: string, entry: RollupEntry): Promise<RollupRow[]> {
  const path = join(shardDir, ROLLUP_DIR, entry.name);
  let bytes: Uint8Array;
  try {
    bytes = await fs.readFile(path);
  } catch (error) {
    throw new Error(`rollup ${entry.name}: cannot be read (${(error as NodeJS.ErrnoException).code ?? String(error)})`, { cause: error });
  }
  if (bytes.byteLength !== entry.bytes || sha256(bytes) !== entry.sha256) throw new Error(`rollup ${entry.name}: SHA-256 does not match the manifest`);
  const lines = (await gunzip(bytes)).toString('utf8').split('\n');
  if (lines.at(-1) === '') lines.pop();
  if (lines.length !== entry.rows) throw new Error(`rollup ${entry.name}: ${lines.length} rows, manifest says ${entry.rows}`);
  return lines.map((line) => JSON.parse(line) as RollupRow);
}

/**
 * At open: removes rollup files (and temp files) the manifest does not
 * list, then reads and verifies every listed one. Returns the rows by file
 * name, or why the shard must refuse to serve.
 */
export async function recoverRollups(fs: FileSystem, shardDir: string, entries: readonly RollupEntry[]): Promise<{ rows: Map<string, RollupRow[]> } | { corrupt: string }> {
  const dir = join(shardDir, ROLLUP_DIR);
  const listed = new Set(entries.map((entry) => entry.name));
  if (await fs.exists(dir)) {
    for (const name of await fs.readdir(dir)) if (!listed.has(name)) await fs.unlink(join(dir, name));
  }
  const rows = new Map<string, RollupRow[]>();
  for (const entry of entries) {
    try {
      rows.set(entry.name, await readRollupFile(fs, shardDir, entry));
    } catch (error) {
      return { corrupt: (error as Error).message };
    }
  }
  return { rows };
}
