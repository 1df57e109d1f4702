// Rewriting one shard's sealed files into another storage format, run by
// the shard's own PartitionActor (its single writer), and undoing it.
//
// On disk, for shard directory S and undo directory U = S/migration-undo
// (beside partitions/, so recovery's removal of unlisted files never
// touches it):
//
//   1. U gets a hard link to each file to rewrite, then a copy of the
//      current S/metadata.json, written last: a U with metadata.json is
//      complete, a U without it was cut short before anything changed.
//   2. Each file is rewritten under a new name in partitions/ (atomic
//      write), read back and compared record by record with the old one.
//   3. The new manifest replaces metadata.json atomically: the shard's
//      commit point. Old files are then unlisted; the next open removes them
//      from partitions/, and U still holds them.
//
// `restoreShardUndo` puts U back (old metadata.json, old files, new files
// removed) and is idempotent, so a crash during it is finished by the next
// start. `dropShardUndo` forgets U once the whole migration has committed.

import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzip as gzipCallback } from 'node:zlib';
import type { StoredRecord } from '../../protocols/record.js';
import type { FileSystem } from '../ports/fs.js';
import { writeFileAtomic } from '../storage/atomic.js';
import { STORAGE_FORMATS_READ, writeManifest, type ShardManifest } from '../storage/manifest.js';
import { readPartition, sha256, type PartitionEntry } from '../storage/partition-file.js';

const gzip = promisify(gzipCallback);

export const UNDO_DIR = 'migration-undo';
const UNDO_MANIFEST = 'metadata.json';

export const formatOf = (entry: PartitionEntry): number => entry.format ?? 1;

export class ShardRewriteError extends Error {
  override readonly name = 'ShardRewriteError';
}

/** What a shard's rewrite did; the digests cover every sealed copy rewritten (id and version), before and after. */
export interface ShardRewriteReport {
  shard: number;
  to: number;
  files: number;
  records: number;
  bytes_before: number;
  bytes_after: number;
  digest_before: string;
  digest_after: string;
}

/**
 * The text of a sealed file in `format`. Format 2 writes every field.
 * Format 1 leaves out a field equal to the stand-in readers fill for it
 * (seq = the file's max_seq, updated_at = ingested_at, vv = {}), as early
 * builds wrote it; reading it back gives the same records.
 */
export function encodeSealedText(records: readonly StoredRecord[], entry: PartitionEntry, format: number): string {
  const lines = records.map((record) => {
    if (format >= 2) return JSON.stringify(record);
    const copy: Partial<StoredRecord> = { ...record };
    if (copy.seq === entry.max_seq) delete copy.seq;
    if (copy.updated_at === copy.ingested_at) delete copy.updated_at;
    if (copy.vv !== undefined && Object.keys(copy.vv).length === 0) delete copy.vv;
    return JSON.stringify(copy);
  });
  return `${lines.join('\n')}\n`;
}

/** JSON with object keys sorted, so two equal records compare equal whatever order their fields were written in. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const keys = Object.keys(value as Record<string, unknown>)
    .filter((key) => (value as Record<string, unknown>)[key] !== undefined)
    .sort();
  return `{${keys.map((key) => `${JSON.stringify(key)}:${canonicalJson((value as Record<string, unknown>)[key])}`).join(',')}}`;
}

/** Count and SHA-256 over the sorted (id, version) pairs of the records given. */
export function versionDigest(records: Iterable<{ id: string; version: number }>): string {
  const pairs: string[] = [];
  for (const record of records) pairs.push(`${record.id}\u0000${record.version}`);
  pairs.sort();
  return `${pairs.length}:${createHash('sha256').update(pairs.join('\n')).digest('hex')}`;
}

/** A name for the rewritten file that neither the manifest nor the directory uses: `<day>_<n>.r<k>.json.gz`. */
function freshName(name: string, taken: ReadonlySet<string>): string {
  const stem = name.replace(/\.json\.gz$/, '').replace(/\.r\d+$/, '');
  for (let k = 1; ; k++) {
    const candidate = `${stem}.r${k}.json.gz`;
    if (!taken.has(candidate)) return candidate;
  }
}

export interface RewriteShardOptions {
  fs: FileSystem;
  /** The shard directory (holds metadata.json and partitions/). */
  dir: string;
  shard: number;
  manifest: ShardManifest;
  to: number;
  /** Pause after each file (only the crash test's fixture sets it, to have time to kill mid-migration). */
  fileDelayMs?: number;
}

/** Rewrites every sealed file not in format `to`, keeping the undo; returns the new manifest, already on disk. */
export async function rewriteShard(options: RewriteShardOptions): Promise<{ manifest: ShardManifest; report: ShardRewriteReport }> {
  const { fs, dir, manifest, to, shard } = options;
  if (!STORAGE_FORMATS_READ.includes(to)) throw new ShardRewriteError(`shard ${shard}: format ${to} is not one this release reads (${STORAGE_FORMATS_READ.join(', ')})`);
  const partitions = join(dir, 'partitions');
  const undo = join(dir, UNDO_DIR);
  if (await fs.exists(undo)) {
    throw new ShardRewriteError(`shard ${shard}: ${undo} exists, left by a migration that did not finish; restart the node, which rolls it back`);
  }
  const changing = manifest.files.filter((entry) => formatOf(entry) !== to);
  const report: ShardRewriteReport = { shard, to, files: changing.length, records: 0, bytes_before: 0, bytes_after: 0, digest_before: versionDigest([]), digest_after: versionDigest([]) };
  if (changing.length === 0 && manifest.format_version === to) return { manifest, report };

  await fs.mkdir(undo);
  for (const entry of changing) await fs.link(join(partitions, entry.name), join(undo, entry.name));
  await fs.syncDir(undo);
  // Written last: its presence says the undo is complete.
  await writeFileAtomic(fs, join(undo, UNDO_MANIFEST), await fs.readFile(join(dir, 'metadata.json')));
  await fs.syncDir(dir);

  const taken = new Set([...manifest.files.map((entry) => entry.name), ...(await fs.readdir(partitions))]);
  const replaced = new Map<string, PartitionEntry>();
  const before: StoredRecord[] = [];
  const after: StoredRecord[] = [];
  for (const entry of changing) {
    const records = await readPartition(fs, partitions, entry);
    const bytes = new Uint8Array(await gzip(encodeSealedText(records, entry, to), { level: 6 }));
    const name = freshName(entry.name, taken);
    taken.add(name);
    await writeFileAtomic(fs, join(partitions, name), bytes);
    const next: PartitionEntry = { ...entry, name, bytes: bytes.byteLength, sha256: sha256(bytes) };
    if (to === 1) delete next.format;
    else next.format = to;
    const reread = await readPartition(fs, partitions, next);
    for (let i = 0; i < records.length; i++) {
      if (canonicalJson(records[i]) !== canonicalJson(reread[i])) {
        throw new ShardRewriteError(`shard ${shard}: ${name} does not read back as ${entry.name} (record ${records[i]!.id}); nothing was switched`);
      }
    }
    before.push(...records);
    after.push(...reread);
    report.records += records.length;
    report.bytes_before += entry.bytes;
    report.bytes_after += next.bytes;
    replaced.set(entry.name, next);
    if (options.fileDelayMs) await new Promise((resolve) => setTimeout(resolve, options.fileDelayMs));
  }
  report.digest_before = versionDigest(before);
  report.digest_after = versionDigest(after);
  const next: ShardManifest = { ...manifest, format_version: to, files: manifest.files.map((entry) => replaced.get(entry.name) ?? entry) };
  await writeManifest(fs, dir, next);
  return { manifest: next, report };
}

/** Removes a directory and the files in it (the undo holds no subdirectory). */
async function removeDir(fs: FileSystem, dir: string): Promise<void> {
  if (!(await fs.exists(dir))) return;
  for (const name of await fs.readdir(dir)) await fs.unlink(join(dir, name));
  await fs.rmdir(dir);
}

/** Whether a shard directory holds an undo (a migration not committed or rolled back yet). */
export const hasShardUndo = (fs: FileSystem, dir: string): Promise<boolean> => fs.exists(join(dir, UNDO_DIR));

/**
 * Puts the shard back as it was before the rewrite: the old files linked back
 * into partitions/, the old metadata.json written atomically, every file it
 * does not list removed, then the undo. Returns false when there was no undo.
 * Run only while no ShardStore has the shard open.
 */
export async function restoreShardUndo(fs: FileSystem, dir: string): Promise<boolean> {
  const undo = join(dir, UNDO_DIR);
  if (!(await fs.exists(undo))) return false;
  const partitions = join(dir, 'partitions');
  const saved = join(undo, UNDO_MANIFEST);
  if (await fs.exists(saved)) {
    const old = JSON.parse(new TextDecoder().decode(await fs.readFile(saved))) as ShardManifest;
    const present = new Set(await fs.readdir(partitions));
    for (const name of await fs.readdir(undo)) {
      if (name === UNDO_MANIFEST || name.startsWith('.') || present.has(name)) continue;
      await fs.link(join(undo, name), join(partitions, name));
    }
    await fs.syncDir(partitions);
    await writeFileAtomic(fs, join(dir, 'metadata.json'), await fs.readFile(saved));
    const listed = new Set(old.files.map((entry) => entry.name));
    for (const name of await fs.readdir(partitions)) if (!listed.has(name)) await fs.unlink(join(partitions, name));
    await fs.syncDir(partitions);
  }
  // Without metadata.json the undo was cut short before the manifest changed: only new, unlisted files can exist, and recovery removes those.
  await removeDir(fs, undo);
  await fs.syncDir(dir);
  return true;
}

/** The migration committed: the old files are no longer needed. */
export async function dropShardUndo(fs: FileSystem, dir: string): Promise<boolean> {
  const undo = join(dir, UNDO_DIR);
  if (!(await fs.exists(undo))) return false;
  await removeDir(fs, undo);
  await fs.syncDir(dir);
  return true;
}
