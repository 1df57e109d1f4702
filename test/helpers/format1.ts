// Test helpers for storage migrations: turn a data directory written by this
// release into one as an early build (storage format 1) wrote it, and hash
// every file of a directory to tell whether anything changed.
//
// How a format-1 directory is made: a node of this release writes the data
// (format 2), is stopped, and then every sealed file is rewritten the way
// early builds sealed records: without `seq`, `updated_at` and `vv` (readers
// fill stand-ins: the file's max_seq, ingested_at, an empty vector), each
// manifest gets format_version 1 and entries without `format`, and node.json
// gets format_version 1. The node must be stopped.

import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';

export function toFormat1(dataDir: string): { files: number } {
  let files = 0;
  for (const shard of readdirSync(join(dataDir, 'shards'))) {
    const dir = join(dataDir, 'shards', shard);
    const manifestPath = join(dir, 'metadata.json');
    if (!existsSync(manifestPath)) continue;
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
    for (const entry of manifest.files) {
      const path = join(dir, 'partitions', entry.name);
      const lines = gunzipSync(readFileSync(path)).toString('utf8').split('\n').filter((line) => line.length > 0);
      const early = lines.map((line) => {
        const { seq: _seq, updated_at: _updatedAt, vv: _vv, ...rest } = JSON.parse(line);
        return JSON.stringify(rest);
      });
      const bytes = gzipSync(`${early.join('\n')}\n`, { level: 6 });
      writeFileSync(path, bytes);
      entry.bytes = bytes.byteLength;
      entry.sha256 = createHash('sha256').update(bytes).digest('hex');
      delete entry.format;
      files++;
    }
    manifest.format_version = 1;
    writeFileSync(manifestPath, JSON.stringify(manifest, null, 1));
  }
  const nodePath = join(dataDir, 'node.json');
  const node = JSON.parse(readFileSync(nodePath, 'utf8'));
  node.format_version = 1;
  writeFileSync(nodePath, JSON.stringify(node, null, 1));
  return { files };
}

/** SHA-256 of every file under `dir` by relative path, leaving out what `skip` names (relative paths or their first part). */
export function hashTree(dir: string, skip: readonly string[] = ['audit', 'LOCK']): Map<string, string> {
  const hashes = new Map<string, string>();
  const walk = (at: string) => {
    for (const name of readdirSync(at).sort()) {
      const path = join(at, name);
      const rel = relative(dir, path);
      if (skip.includes(rel) || skip.includes(rel.split('/')[0]!)) continue;
      if (statSync(path).isDirectory()) walk(path);
      else hashes.set(rel, createHash('sha256').update(readFileSync(path)).digest('hex'));
    }
  };
  walk(dir);
  return hashes;
}

/** Every shard's manifest as on disk. */
export function manifests(dataDir: string): { dir: string; shard: number; format_version: number; files: { name: string; format?: number }[] }[] {
  return readdirSync(join(dataDir, 'shards'))
    .filter((shard) => existsSync(join(dataDir, 'shards', shard, 'metadata.json')))
    .map((dir) => ({ dir, ...JSON.parse(readFileSync(join(dataDir, 'shards', dir, 'metadata.json'), 'utf8')) }));
}
