// The shard manifest, metadata.json: the sealed files with their checksums,
// record counts and sequence ranges, and `sealed_seq`, the highest sequence
// number whose effect is in sealed files. Written atomically; the WAL is
// replayed from sealed_seq + 1.

import { join } from 'node:path';
import type { FileSystem } from '../ports/fs.js';
import { writeFileAtomic } from './atomic.js';
import type { PartitionEntry } from './partition-file.js';

export const STORAGE_FORMAT_VERSION = 1;

export interface ShardManifest {
  format_version: number;
  shard: number;
  sealed_seq: number;
  files: PartitionEntry[];
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
  if (manifest.format_version !== STORAGE_FORMAT_VERSION) {
    throw new ManifestError(`${path} has format version ${manifest.format_version}; this release reads ${STORAGE_FORMAT_VERSION}`);
  }
  if (manifest.shard !== shard || !Array.isArray(manifest.files) || !Number.isInteger(manifest.sealed_seq)) {
    throw new ManifestError(`${path} does not describe shard ${shard}`);
  }
  return { manifest, found: true };
}

export async function writeManifest(fs: FileSystem, dir: string, manifest: ShardManifest): Promise<void> {
  await writeFileAtomic(fs, join(dir, 'metadata.json'), new TextEncoder().encode(JSON.stringify(manifest, null, 1)));
}
