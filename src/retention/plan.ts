// The retention plan of one shard: which records each policy removes,
// which sealed files go whole, which are rewritten without the removed
// rows, which are recompressed, which rollup files expire. Pure (no I/O,
// no clock): the same files, policies, holds and `now` give the same plan,
// so a dry run shows exactly what a real run then does.
//
// Rules (docs/operations.md, Retention):
// - Every current record is subject, sealed or not: the caller passes the
//   unsealed ones (memtable) as the files the next seal writes
//   (shard-run.ts), and a real run that touches one seals first.
// - Policies apply in order; a record goes to the first removing policy
//   that matches its current version. A record a legal hold covers is never
//   removed (it is counted as `held` by the policy that would have).
// - A file holding any row (any version) of a removed id is touched: it is
//   dropped whole when none of its current rows stays, else rewritten with
//   the current rows that stay (dead older versions are not carried over,
//   so no removed version can come back when the indices are rebuilt).
//   Every other file stays byte-identical.
// - compress recompresses untouched files whose every current row matches
//   the policy, at `compress_level` (default 9), unless already at it.

import type { StoredRecord } from '../../protocols/record.js';
import type { LegalHold, PolicyAction, PolicyType, PolicyWhere, RetentionPolicy } from './config.js';

export const DAY_MS = 86_400_000;
export const DEFAULT_LEVEL = 6;
export const COMPRESS_LEVEL_DEFAULT = 9;

export interface PlanFile {
  name: string;
  day: string;
  bytes: number;
  /** gzip level the file was written at (absent: 6). */
  level?: number | undefined;
  rows: readonly { record: StoredRecord; current: boolean }[];
}

export interface PlanInput {
  /** Sealed files and the files the next seal would write (every row of those is current). */
  files: readonly PlanFile[];
  policies: readonly RetentionPolicy[];
  holds: readonly LegalHold[];
  now: number;
  /** Rollup files and their day, for aggregated_metrics_days. */
  rollups: readonly { name: string; day: string }[];
  aggregatedMetricsDays: number;
}

export interface PolicyPlan {
  name: string;
  type: PolicyType;
  action: PolicyAction;
  /** Records this policy removes (or, for compress, records in the files it recompresses). */
  records: number;
  /** Records it matched that a legal hold keeps. */
  held: number;
  /** Ids of the legal holds that kept something. */
  holds: string[];
}

export interface ShardPlan {
  policies: PolicyPlan[];
  /** The records each removing policy takes, by policy name. */
  removed: Map<string, StoredRecord[]>;
  removedIds: Set<string>;
  /** Files that go whole. */
  drop: string[];
  /** Files rewritten without removed rows: name and the rows that stay. */
  rewrite: { name: string; keep: StoredRecord[]; removedRows: number }[];
  /** Files recompressed: name, level, the rows they keep. */
  compress: { name: string; level: number; keep: StoredRecord[]; policy: string }[];
  /** Rollup files older than aggregated_metrics_days. */
  rollupsDrop: string[];
}

export function holdCovers(hold: LegalHold, record: Pick<StoredRecord, 'user_id' | 'ts'>): boolean {
  if (hold.user_id !== undefined && hold.user_id !== record.user_id) return false;
  if (hold.from !== undefined && record.ts < hold.from) return false;
  if (hold.to !== undefined && record.ts >= hold.to) return false;
  return true;
}

export function whereMatches(where: PolicyWhere, record: StoredRecord): boolean {
  if (where.user_id !== undefined && record.user_id !== where.user_id) return false;
  if (where.provider !== undefined && record.provider !== where.provider) return false;
  if (where.model !== undefined && record.model !== where.model) return false;
  if (where.status !== undefined && (record.status ?? 'success') !== where.status) return false;
  if (where.operation !== undefined && record.operation !== where.operation) return false;
  return true;
}

/** Whether a record matches a time or conditional policy on its own (count and size depend on the rest). */
function matchesAlone(policy: RetentionPolicy, record: StoredRecord, now: number): boolean {
  const old = policy.max_age_days === undefined || record.ts < now - policy.max_age_days * DAY_MS;
  if (policy.type === 'time') return old;
  if (policy.type === 'conditional') return old && policy.where !== undefined && whereMatches(policy.where, record);
  return false;
}

const byAge = (a: { record: StoredRecord }, b: { record: StoredRecord }) => a.record.ts - b.record.ts || (a.record.id < b.record.id ? -1 : a.record.id > b.record.id ? 1 : 0);

export function computePlan(input: PlanInput): ShardPlan {
  const current: { record: StoredRecord; bytes: number }[] = [];
  let totalBytes = 0;
  for (const file of input.files) {
    totalBytes += file.bytes;
    const perRow = file.rows.length > 0 ? file.bytes / file.rows.length : 0;
    for (const row of file.rows) if (row.current) current.push({ record: row.record, bytes: perRow });
  }
  current.sort(byAge);
  const claimed = new Set<string>();
  const removed = new Map<string, StoredRecord[]>();
  const policies: PolicyPlan[] = [];
  let remainingRecords = current.length;
  let remainingBytes = totalBytes;
  const compressPolicies: RetentionPolicy[] = [];

  for (const policy of input.policies) {
    const plan: PolicyPlan = { name: policy.name, type: policy.type, action: policy.action, records: 0, held: 0, holds: [] };
    policies.push(plan);
    if (policy.action === 'compress') {
      compressPolicies.push(policy);
      continue;
    }
    const taken: StoredRecord[] = [];
    const holdIds = new Set<string>();
    const take = (entry: { record: StoredRecord; bytes: number }): boolean => {
      const hold = input.holds.find((candidate) => holdCovers(candidate, entry.record));
      if (hold) {
        plan.held++;
        holdIds.add(hold.id);
        return false;
      }
      claimed.add(entry.record.id);
      taken.push(entry.record);
      remainingRecords--;
      remainingBytes -= entry.bytes;
      return true;
    };
    for (const entry of current) {
      if (claimed.has(entry.record.id)) continue;
      if (policy.type === 'count') {
        if (remainingRecords <= policy.max_records!) break;
      } else if (policy.type === 'size') {
        if (remainingBytes <= policy.max_bytes!) break;
      } else if (!matchesAlone(policy, entry.record, input.now)) continue;
      take(entry);
    }
    plan.records = taken.length;
    plan.holds = [...holdIds].sort();
    if (taken.length > 0) removed.set(policy.name, taken);
  }

  const drop: string[] = [];
  const rewrite: ShardPlan['rewrite'] = [];
  const untouched: PlanFile[] = [];
  for (const file of input.files) {
    const removedRows = file.rows.filter((row) => claimed.has(row.record.id)).length;
    if (removedRows === 0) {
      untouched.push(file);
      continue;
    }
    const keep = file.rows.filter((row) => row.current && !claimed.has(row.record.id)).map((row) => row.record);
    if (keep.length === 0) drop.push(file.name);
    else rewrite.push({ name: file.name, keep, removedRows });
  }

  const compress: ShardPlan['compress'] = [];
  for (const policy of compressPolicies) {
    const level = policy.compress_level ?? COMPRESS_LEVEL_DEFAULT;
    const plan = policies.find((candidate) => candidate.name === policy.name)!;
    for (const file of untouched) {
      if (compress.some((entry) => entry.name === file.name) || (file.level ?? DEFAULT_LEVEL) >= level) continue;
      const keep = file.rows.filter((row) => row.current).map((row) => row.record);
      if (keep.length === 0 || !keep.every((record) => matchesAlone(policy, record, input.now))) continue;
      compress.push({ name: file.name, level, keep, policy: policy.name });
      plan.records += keep.length;
    }
  }

  const rollupCutoffDay = new Date(input.now - input.aggregatedMetricsDays * DAY_MS).toISOString().slice(0, 10);
  const rollupsDrop = input.rollups.filter((rollup) => rollup.day < rollupCutoffDay).map((rollup) => rollup.name);
  return { policies, removed, removedIds: claimed, drop, rewrite, compress, rollupsDrop };
}
