// Sealed partition files: immutable JSON lines of stored records, gzip
// compressed (node:zlib), named `<day>_<n>.json.gz`, recorded with their
// SHA-256 in the shard manifest. A file whose bytes do not match its
// checksum is never decoded, let alone served.

import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzip as gunzipCallback, gzip as gzipCallback } from 'node:zlib';
import type { StoredRecord } from '../../protocols/record.js';
import type { FileSystem } from '../ports/fs.js';
import { writeFileAtomic } from './atomic.js';
import { withStandIns } from './record-codec.js';

const gzip = promisify(gzipCallback);
const gunzip = promisify(gunzipCallback);

export interface PartitionEntry {
  name: string;
  day: string;
  records: number;
  bytes: number;
  sha256: string;
  min_seq: number;
  max_seq: number;
  min_ts: number;
  max_ts: number;
  /** The file's storage format: absent = 1 (records may lack seq, updated_at, vv); 2 = every record has them. */
  format?: number;
}

export class PartitionCorrupt extends Error {
  override readonly name = 'PartitionCorrupt';
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export function partitionName(day: string, n: number): string {
  return `${day}_${String(n).padStart(4, '0')}.json.gz`;
}

/**
 * The day and number of a `<day>_<n>.json.gz` name as partitionName (and
 * retention's rollupName) write it, a rewrite's `.r<k>` suffix allowed;
 * undefined for any other name.
 */
export function dayFileNumber(name: string): { day: string; n: number } | undefined {
  const match = /^(\d{4}-\d{2}-\d{2})_(\d+)(?:\.r\d+)?\.json\.gz$/.exec(name);
  return match ? { day: match[1]!, n: Number(match[2]) } : undefined;
}

/**
 * One sealed partition's bytes and manifest entry, in memory. gzip at a
 * fixed level is deterministic, so these are the bytes `writePartition`
 * writes: retention's dry run plans unsealed records with them.
 */
export async function encodePartition(
  name: string,
  day: string,
  slots: readonly { record: StoredRecord; seq: number }[],
  format = 1,
): Promise<{ bytes: Uint8Array; entry: PartitionEntry }> {
  const text = slots.map((slot) => JSON.stringify(slot.record)).join('\n') + '\n';
  const bytes = new Uint8Array(await gzip(text, { level: 6 }));
  let minSeq = Infinity;
  let maxSeq = -Infinity;
  let minTs = Infinity;
  let maxTs = -Infinity;
  for (const { record, seq } of slots) {
    minSeq = Math.min(minSeq, seq);
    maxSeq = Math.max(maxSeq, seq);
    minTs = Math.min(minTs, record.ts);
    maxTs = Math.max(maxTs, record.ts);
  }
  const entry: PartitionEntry = { name, day, records: slots.length, bytes: bytes.byteLength, sha256: sha256(bytes), min_seq: minSeq, max_seq: maxSeq, min_ts: minTs, max_ts: maxTs };
  if (format !== 1) entry.format = format;
  return { bytes, entry };
}

/** Writes one sealed partition durably; returns its manifest entry. */
export async function writePartition(
  fs: FileSystem,
  dir: string,
  name: string,
  day: string,
  slots: readonly { record: StoredRecord; seq: number }[],
  format = 1,
): Promise<PartitionEntry> {
  const { bytes, entry } = await encodePartition(name, day, slots, format);
  await writeFileAtomic(fs, join(dir, name), bytes);
  return entry;
}

/** Reads and verifies a sealed partition. Throws PartitionCorrupt on a checksum, gzip or JSON failure. */
export async function readPartition(fs: FileSystem, dir: string, entry: PartitionEntry): Promise<StoredRecord[]> {
  let bytes: Uint8Array;
  try {
    bytes = await fs.readFile(join(dir, entry.name));
  } catch (error) {
    throw new PartitionCorrupt(`${entry.name}: cannot be read (${(error as NodeJS.ErrnoException).code ?? String(error)})`, { cause: error });
  }
  if (bytes.byteLength !== entry.bytes || sha256(bytes) !== entry.sha256) {
    throw new PartitionCorrupt(`${entry.name}: SHA-256 does not match the manifest (${bytes.byteLength} bytes, expected ${entry.bytes})`);
  }
  let text: string;
  try {
    text = (await gunzip(bytes)).toString('utf8');
  } catch (error) {
    throw new PartitionCorrupt(`${entry.name}: not valid gzip`, { cause: error });
  }
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  if (lines.length !== entry.records) throw new PartitionCorrupt(`${entry.name}: ${lines.length} records, manifest says ${entry.records}`);
  let records: StoredRecord[];
  try {
    records = lines.map((line) => JSON.parse(line) as StoredRecord);
  } catch (error) {
    throw new PartitionCorrupt(`${entry.name}: a line is not valid JSON`, { cause: error });
  }
  if ((entry.format ?? 1) >= 2) {
    const lacking = records.find((record) => record.seq === undefined || record.updated_at === undefined || record.vv === undefined);
    if (lacking) throw new PartitionCorrupt(`${entry.name}: format ${entry.format} but record ${lacking.id} lacks seq, updated_at or vv`);
  }
  // Format-1 files sealed before records carried seq: the file's highest stands in for each.
  for (const record of records) withStandIns(record, entry.max_seq);
  return records;
}
