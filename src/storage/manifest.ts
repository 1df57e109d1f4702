// The shard manifest, metadata.json: the sealed files with their checksums,
// record counts and sequence ranges, and `sealed_seq`, the highest sequence
// number whose effect is in sealed files. Written atomically; the WAL is
// replayed from sealed_seq + 1.

import { join } from 'node:path';
import type { FileSystem } from '../ports/fs.js';
import { writeFileAtomic } from './atomic.js';
import type { PartitionEntry } from './partition-file.js';
import type { RollupEntry } from '../retention/rollup-file.js';

/**
 * The storage format this release writes into new data directories. Format
 * 2: each sealed file's manifest entry carries its `format`, and format-2
 * files hold every record with `seq`, `updated_at` and `vv` written out.
 * Format 1 (early builds) may lack them; readers fill stand-ins. Both are
 * read, so a directory can be migrated while it serves (src/migration/).
 */
export const STORAGE_FORMAT_VERSION = 2;
/** The formats this release reads, in data directories, manifests and sealed files. */
export const STORAGE_FORMATS_READ: readonly number[] = [1, 2];

export interface ShardManifest {
  format_version: number;
  shard: number;
  sealed_seq: number;
  files: PartitionEntry[];
  /** Rollup files of retention's aggregate action (src/retention/rollup-file.ts); absent = none. */
  rollups?: RollupEntry[];
}

export class ManifestError extends Error {
  override readonly name = 'ManifestError';
}

/** The manifest, and whether it was on disk (a new shard has none). Throws ManifestError when it is damaged. */
export async function readManifest(fs: FileSystem, dir: string, shard: number): Promise<{ manifest: ShardManifest; found: boolean }> {
  const path = join(dir, 'metadata.json');
  if (!(await fs.exists(path))) return { manifest: { format_version: STORAGE_FORMAT_VERSION, shard, sealed_seq: 0, files: [] }, found: false };
  let manifest: ShardManifest;
  try {
    manifest = JSON.parse(new TextDecoder().decode(await fs.readFile(path))) as ShardManifest;
  } catch (error) {
    throw new ManifestError(`${path} is not valid JSON: ${(error as Error).message}`, { cause: error });
  }
  if (!STORAGE_FORMATS_READ.includes(manifest.format_version)) {
    throw new ManifestError(`${path} has format version ${manifest.format_version}; this release reads ${STORAGE_FORMATS_READ.join(' and ')}`);
  }
  if (manifest.shard !== shard || !Array.isArray(manifest.files) || !Number.isInteger(manifest.sealed_seq)) {
    throw new ManifestError(`${path} does not describe shard ${shard}`);
  }
  // During an online migration a shard may list files of both formats; an entry without `format` is format 1.
  const unreadable = manifest.files.find((file) => file.format !== undefined && !STORAGE_FORMATS_READ.includes(file.format));
  if (unreadable) throw new ManifestError(`${path} lists ${unreadable.name} in format ${unreadable.format}; this release reads ${STORAGE_FORMATS_READ.join(' and ')}`);
  return { manifest, found: true };
}

export async function writeManifest(fs: FileSystem, dir: string, manifest: ShardManifest): Promise<void> {
  await writeFileAtomic(fs, join(dir, 'metadata.json'), new TextEncoder().encode(JSON.stringify(manifest, null, 1)));
}
