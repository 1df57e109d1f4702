// Retention of one shard, run inside its PartitionActor (the single
// writer), so nothing seals or writes while it plans and commits.
//
// Order of a real run (the crash test relies on it):
//   1. wait until every applied write is durable; read every sealed file,
//      and lay the unsealed records (memtable) out as the files the next
//      seal writes, in memory only;
//   2. compute the plan (plan.ts) over both; when it touches an unsealed
//      file, seal (crash-safe on its own: ShardStore.seal) and plan again
//      over the sealed files, which are the ones planned with, so the
//      plan, names included, is the same;
//   3. write the new files durably: rewritten and recompressed partitions
//      (new names, never over a listed one), rollup files;
//   4. write archive and export output durably (outside the data directory);
//   5. ONE atomic manifest write listing the new set: the commit point;
//   6. unlink the files it no longer lists.
// A crash before 5 leaves the old manifest, and recovery deletes the
// unlisted new files; after 5 the new manifest, and recovery deletes the
// old files step 6 did not reach. The caller reopens the shard after a
// commit so that every index is rebuilt from the new manifest.

import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzip as gzipCallback } from 'node:zlib';
import type { StoredRecord } from '../../protocols/record.js';
import type { Logger } from '../log.js';
import type { FileSystem } from '../ports/fs.js';
import { writeFileAtomic } from '../storage/atomic.js';
import { writeManifest, type ShardManifest } from '../storage/manifest.js';
import { dayFileNumber, partitionName, sha256, type PartitionEntry } from '../storage/partition-file.js';
import type { ShardStore } from '../storage/shard-store.js';
import type { LegalHold, RetentionPolicy } from './config.js';
import { recordsToCsv, recordsToJsonl } from './export-format.js';
import { computePlan, DEFAULT_LEVEL, type PlanFile, type PolicyPlan, type ShardPlan } from './plan.js';
import { RollupBuilder } from './rollup.js';
import { ROLLUP_DIR, rollupName, writeRollupFile, type RollupEntry } from './rollup-file.js';

const gzip = promisify(gzipCallback);

export interface ShardRetentionInput {
  run_id: string;
  now: number;
  dry_run: boolean;
  policies: RetentionPolicy[];
  holds: LegalHold[];
  aggregated_metrics_days: number;
  archive_dir: string;
  export_dir: string;
}

/** What one shard's run did (or, dry, would do): exact names and counts. */
export interface ShardRetentionResult {
  shard: number;
  state: 'done' | 'dry_run' | 'nothing_to_do' | 'skipped';
  reason?: string;
  policies: (PolicyPlan & { outputs: string[] })[];
  files_dropped: string[];
  files_rewritten: { from: string; to: string; kept: number; removed_rows: number }[];
  files_compressed: { from: string; to: string; level: number; records: number }[];
  rollups_written: { name: string; rows: number }[];
  rollups_dropped: string[];
  records_removed: number;
  records_rolled_up: number;
  records_archived: number;
  records_exported: number;
}

export interface ShardRetentionOutcome {
  result: ShardRetentionResult;
  committed: boolean;
  /** Ids removed from the shard: the mirrors must drop them too. */
  removed_ids: string[];
}

/** A partition entry as retention writes it: with its gzip level when not the default. */
type LeveledEntry = PartitionEntry & { level?: number };

/** Writes records as a sealed partition file, in the same format as a seal, at `level`. */
async function writeRecords(fs: FileSystem, dir: string, name: string, like: LeveledEntry, records: readonly StoredRecord[], level: number): Promise<LeveledEntry> {
  const bytes = new Uint8Array(await gzip(records.map((record) => JSON.stringify(record)).join('\n') + '\n', { level }));
  await writeFileAtomic(fs, join(dir, name), bytes);
  let minSeq = Infinity;
  let maxSeq = -Infinity;
  let minTs = Infinity;
  let maxTs = -Infinity;
  for (const record of records) {
    minSeq = Math.min(minSeq, record.seq);
    maxSeq = Math.max(maxSeq, record.seq);
    minTs = Math.min(minTs, record.ts);
    maxTs = Math.max(maxTs, record.ts);
  }
  const entry: LeveledEntry = { name, day: like.day, records: records.length, bytes: bytes.byteLength, sha256: sha256(bytes), min_seq: minSeq, max_seq: maxSeq, min_ts: minTs, max_ts: maxTs };
  if (like.format !== undefined) entry.format = like.format;
  if (level !== DEFAULT_LEVEL) entry.level = level;
  return entry;
}

/** Hands out `<day>_<n>` names one past the highest of the day, never a listed one. */
function namer(names: Iterable<string>, make: (day: string, n: number) => string): (day: string) => string {
  const highest = new Map<string, number>();
  for (const name of names) {
    const parsed = dayFileNumber(name);
    if (parsed) highest.set(parsed.day, Math.max(highest.get(parsed.day) ?? 0, parsed.n));
  }
  return (day) => {
    const n = (highest.get(day) ?? 0) + 1;
    highest.set(day, n);
    return make(day, n);
  };
}

function emptyResult(shard: number, state: ShardRetentionResult['state']): ShardRetentionResult {
  return {
    shard,
    state,
    policies: [],
    files_dropped: [],
    files_rewritten: [],
    files_compressed: [],
    rollups_written: [],
    rollups_dropped: [],
    records_removed: 0,
    records_rolled_up: 0,
    records_archived: 0,
    records_exported: 0,
  };
}

/** The shard as retention plans it: every sealed file, then the files the next seal would write. */
interface ShardView {
  /** Manifest entries of both, sealed ones first. */
  entries: LeveledEntry[];
  files: PlanFile[];
  /** Names of the files that are not sealed yet. */
  unsealed: Set<string>;
  rollups: { name: string; day: string }[];
}

async function readShard(store: ShardStore): Promise<ShardView> {
  const entries: LeveledEntry[] = [...(store.manifest.files as LeveledEntry[])];
  const files: PlanFile[] = [];
  for (const [index, entry] of entries.entries()) files.push({ name: entry.name, day: entry.day, bytes: entry.bytes, level: entry.level, rows: await store.sealedFileRows(index) });
  const unsealed = new Set<string>();
  for (const { entry, records } of await store.unsealedFiles()) {
    entries.push(entry);
    unsealed.add(entry.name);
    // Every memtable record is its id's current version.
    files.push({ name: entry.name, day: entry.day, bytes: entry.bytes, rows: records.map((record) => ({ record, current: true })) });
  }
  return { entries, files, unsealed, rollups: store.manifest.rollups ?? [] };
}

function planShard(view: ShardView, input: ShardRetentionInput): ShardPlan {
  return computePlan({
    files: view.files,
    policies: input.policies,
    holds: input.holds,
    now: input.now,
    rollups: view.rollups,
    aggregatedMetricsDays: input.aggregated_metrics_days,
  });
}

/** Whether the plan drops, rewrites or recompresses a file that is not sealed yet. */
function touchesUnsealed(plan: ShardPlan, unsealed: ReadonlySet<string>): boolean {
  return [...plan.drop, ...plan.rewrite.map((item) => item.name), ...plan.compress.map((item) => item.name)].some((name) => unsealed.has(name));
}

export async function runShardRetention(store: ShardStore, input: ShardRetentionInput, log: Logger): Promise<ShardRetentionOutcome> {
  const shard = store.options.shard;
  if (store.health.state !== 'serving') {
    return { result: { ...emptyResult(shard, 'skipped'), reason: store.health.reason }, committed: false, removed_ids: [] };
  }
  const { fs, dir } = store.options;
  let view = await readShard(store);
  let plan = planShard(view, input);
  if (!input.dry_run && touchesUnsealed(plan, view.unsealed)) {
    // Unsealed records are removed the way sealed ones are, at the one manifest commit below:
    // the seal (crash-safe on its own) makes them the sealed files the plan was made with.
    await store.seal();
    view = await readShard(store);
    if (view.unsealed.size > 0) throw new Error(`shard ${shard}: ${view.unsealed.size} file(s) still unsealed after a seal inside the actor`);
    plan = planShard(view, input);
  }
  const { entries } = view;
  const manifest = store.manifest;
  const rollupEntries = manifest.rollups ?? [];

  // Names and contents of everything the run would write, computed the same way dry or not.
  const nextPartition = namer(entries.map((entry) => entry.name), partitionName);
  const nextRollup = namer(rollupEntries.map((entry) => entry.name), rollupName);
  const byName = new Map(entries.map((entry) => [entry.name, entry]));
  const rewrites = plan.rewrite.map((item) => ({ ...item, to: nextPartition(byName.get(item.name)!.day) }));
  const compressions = plan.compress.map((item) => ({ ...item, to: nextPartition(byName.get(item.name)!.day) }));
  const aggregatePolicies = new Set(input.policies.filter((policy) => policy.action === 'aggregate').map((policy) => policy.name));
  const builders = new Map<string, RollupBuilder>();
  let rolledUp = 0;
  for (const [policy, records] of plan.removed) {
    if (!aggregatePolicies.has(policy)) continue;
    for (const record of records) {
      const day = new Date(record.ts).toISOString().slice(0, 10);
      let builder = builders.get(day);
      if (!builder) builders.set(day, (builder = new RollupBuilder()));
      builder.addRecord(record);
      rolledUp++;
    }
  }
  // A day that already has rollups gets one merged file; the old ones go (unless they expire anyway).
  const rollupsReplaced: string[] = [];
  const rollupWrites: { day: string; name: string; builder: RollupBuilder }[] = [];
  for (const [day, builder] of [...builders].sort(([a], [b]) => a.localeCompare(b))) {
    for (const entry of rollupEntries) {
      if (entry.day !== day || plan.rollupsDrop.includes(entry.name)) continue;
      for (const row of store.rollups.get(entry.name) ?? []) builder.addRow(row);
      rollupsReplaced.push(entry.name);
    }
    rollupWrites.push({ day, name: nextRollup(day), builder });
  }

  const result = emptyResult(shard, input.dry_run ? 'dry_run' : 'done');
  result.files_dropped = plan.drop;
  result.files_rewritten = rewrites.map((item) => ({ from: item.name, to: item.to, kept: item.keep.length, removed_rows: item.removedRows }));
  result.files_compressed = compressions.map((item) => ({ from: item.name, to: item.to, level: item.level, records: item.keep.length }));
  result.rollups_written = rollupWrites.map((item) => ({ name: item.name, rows: item.builder.size }));
  result.rollups_dropped = [...plan.rollupsDrop, ...rollupsReplaced];
  result.records_removed = plan.removedIds.size;
  result.records_rolled_up = rolledUp;
  const outputs = new Map<string, string[]>();
  const actionOf = new Map(input.policies.map((policy) => [policy.name, policy]));
  for (const [name, records] of plan.removed) {
    const policy = actionOf.get(name)!;
    if (policy.action === 'archive') {
      result.records_archived += records.length;
      outputs.set(name, [join(input.archive_dir, input.run_id, `shard-${shard}`, `${name}.jsonl.gz`)]);
    } else if (policy.action === 'export') {
      result.records_exported += records.length;
      outputs.set(name, [join(input.export_dir, input.run_id, `shard-${shard}-${name}.${policy.export_format ?? 'jsonl'}`)]);
    }
  }
  result.policies = plan.policies.map((policy) => ({ ...policy, outputs: outputs.get(policy.name) ?? [] }));
  const changes = plan.drop.length + rewrites.length + compressions.length + rollupWrites.length + result.rollups_dropped.length;
  if (changes === 0) result.state = 'nothing_to_do';
  const removedIds = [...plan.removedIds];
  if (input.dry_run || changes === 0) return { result, committed: false, removed_ids: input.dry_run ? [] : removedIds };

  // 3. New files, durably, under names no listed file has.
  const replaced = new Map<string, LeveledEntry>();
  for (const item of rewrites) replaced.set(item.name, await writeRecords(fs, store.partitionDir, item.to, byName.get(item.name)!, item.keep, byName.get(item.name)!.level ?? DEFAULT_LEVEL));
  for (const item of compressions) replaced.set(item.name, await writeRecords(fs, store.partitionDir, item.to, byName.get(item.name)!, item.keep, item.level));
  const newRollups: RollupEntry[] = [];
  for (const item of rollupWrites) newRollups.push(await writeRollupFile(fs, dir, item.name, item.day, item.builder.rows()));
  // 4. Archive and export output, durably, before anything is removed.
  for (const [name, records] of plan.removed) {
    const policy = actionOf.get(name)!;
    const path = outputs.get(name)?.[0];
    if (!path) continue;
    await fs.mkdir(join(path, '..'));
    const data =
      policy.action === 'archive'
        ? new Uint8Array(await gzip(recordsToJsonl(records), { level: 9 }))
        : new TextEncoder().encode(policy.export_format === 'csv' ? recordsToCsv(records) : recordsToJsonl(records));
    await writeFileAtomic(fs, path, data);
  }
  // 5. The commit point.
  const dropped = new Set(plan.drop);
  const droppedRollups = new Set(result.rollups_dropped);
  const next: ShardManifest = {
    ...manifest,
    files: (manifest.files as LeveledEntry[]).filter((entry) => !dropped.has(entry.name)).map((entry) => replaced.get(entry.name) ?? entry),
    rollups: [...rollupEntries.filter((entry) => !droppedRollups.has(entry.name)), ...newRollups],
  };
  await writeManifest(fs, dir, next);
  // 6. What the manifest no longer lists; a crash here leaves them to recovery.
  try {
    for (const name of [...plan.drop, ...replaced.keys()]) await fs.unlink(join(store.partitionDir, name));
    await fs.syncDir(store.partitionDir);
    for (const name of droppedRollups) await fs.unlink(join(dir, ROLLUP_DIR, name));
    if (droppedRollups.size > 0) await fs.syncDir(join(dir, ROLLUP_DIR));
  } catch (error) {
    log.warn({ err: error, shard }, 'retention committed, but removing an old file failed; the next open removes it');
  }
  return { result, committed: true, removed_ids: removedIds };
}
