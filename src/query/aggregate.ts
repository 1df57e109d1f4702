// The aggregate engine of `usage.v1.query.aggregate`, independent of storage.
// Each shard feeds its records to an aggregator and sends back a partial; the
// gathering actor merges the partials into rows. Promises:
//
// - Exact and merge-order independent: merging partials split any way across
//   shards, in any order, gives the same rows, bit for bit, as one aggregator
//   over all the records. Every sum is an integer: tokens as they are, cost in
//   nano-dollars (Math.round(cost_usd * 1e9)) carried as whole dollars plus a
//   remainder of nano-dollars, so no sum ever leaves the exact range of a
//   double (tokens: exact below 2^53 per group, about 9e6 records of the
//   largest allowed size). Cost goes back to dollars only in the final row.
// - Cost: a record whose `cost_source` is 'unknown' (or that carries no
//   `cost_usd`) is never counted as $0. It is counted in `cost_unknown_count`,
//   and `cost_usd` sums the others; it is null when no record of the group has a
//   known cost.
// - Latency p50/p95 are exact nearest-rank percentiles (the value at rank
//   ceil(p/100 * n) of the n sorted latencies of the group's records that have
//   `latency_ms`; null when none). To merge exactly, a partial keeps each
//   group's latencies as distinct values with their counts, only when a latency
//   metric was asked for.
// - Bounded: at most `groupsMax` groups (default 10,000) and `latencyValuesMax`
//   distinct (group, latency) values (default 5,000,000) in one aggregator or
//   one merge; beyond either the query fails with E_TOO_LARGE rather than using
//   unbounded memory. A partial is therefore at most about 10,000 x 100 bytes
//   of counters plus about 16 bytes per distinct latency value in memory
//   (Map entries cost ~50 bytes each while adding: ~250 MB at the latency cap).
// - Deterministic rows: sorted by the group key values in group_by order
//   (UTF-16 code-unit order, not locale), columns in a fixed order: the group_by
//   keys, then each requested metric's columns in request order. Duplicate
//   keys or metrics in a query count once. With an empty group_by there is
//   always exactly one row, even when no record matches (count 0).
//
// Group keys: user_id, provider, model, day ('YYYY-MM-DD', UTC) and hour
// ('YYYY-MM-DDTHH:00Z', UTC). Key values are joined with U+0000 in memory,
// which no stored text contains (the record validator refuses control characters).

import { ProtocolError } from '../../protocols/errors.js';
import type { StoredRecord } from '../../protocols/record.js';
import type { AggregateQuery, AGGREGATE_METRICS, GROUP_BY_KEYS } from '../../protocols/requests.js';
import { matches } from './filter.js';
import { bucketValue, rollupMatches, type RollupRow } from '../retention/rollup.js';

export type GroupByKey = (typeof GROUP_BY_KEYS)[number];
export type AggregateMetric = (typeof AGGREGATE_METRICS)[number];

export const AGGREGATE_GROUPS_MAX = 10_000;
export const AGGREGATE_LATENCY_VALUES_MAX = 5_000_000;

export interface AggregateLimits {
  /** Most groups in one aggregator or one merge. */
  groupsMax: number;
  /** Most distinct (group, latency_ms) values kept for exact percentiles. */
  latencyValuesMax: number;
}

export const DEFAULT_AGGREGATE_LIMITS: Readonly<AggregateLimits> = Object.freeze({
  groupsMax: AGGREGATE_GROUPS_MAX,
  latencyValuesMax: AGGREGATE_LATENCY_VALUES_MAX,
});

/** The counters every aggregate state shares: a group, a shard's partial group, a roll-up row. */
export interface Counters {
  count: number;
  input_tokens: number;
  output_tokens: number;
  /** Known cost = cost_whole_usd + cost_nanos / 1e9; cost_nanos is in [0, 1e9). */
  cost_whole_usd: number;
  cost_nanos: number;
  cost_known_count: number;
  cost_unknown_count: number;
}

/** One group of a partial: plain data (msgpack and JSON safe), all integers except latency values. */
export interface PartialGroup extends Counters {
  /** The group's key values, in the partial's group_by order. */
  key: string[];
  /** Distinct latencies, ascending, and how many records had each; empty unless a latency metric was asked for. */
  latency_ms: number[];
  latency_counts: number[];
}

export interface AggregatePartial {
  /** The query's group_by without duplicates: the meaning of each `key`. */
  group_by: GroupByKey[];
  groups: PartialGroup[];
}

/** One answer row: the group_by keys, then the requested metrics' columns. */
export type AggregateRow = Partial<Record<GroupByKey, string>> & {
  count?: number;
  input_tokens?: number;
  output_tokens?: number;
  tokens?: number;
  cost_usd?: number | null;
  cost_unknown_count?: number;
  latency_p50_ms?: number | null;
  latency_p95_ms?: number | null;
};

export interface Aggregator {
  /** Counts the record when it matches the query's filters; returns whether it did. Throws E_TOO_LARGE past a bound. */
  add(record: StoredRecord): boolean;
  /**
   * Counts a retention rollup row (src/retention/rollup.ts) when it matches
   * the filters, by the start of its UTC hour. Sums stay exact; its
   * latencies enter percentiles as histogram values (within 1 %).
   */
  addRollup(row: RollupRow): boolean;
  /** The groups so far, as plain data for the gathering actor. */
  partial(): AggregatePartial;
}

interface GroupState {
  key: string[];
  count: number;
  input_tokens: number;
  output_tokens: number;
  cost_whole_usd: number;
  cost_nanos: number;
  cost_known_count: number;
  cost_unknown_count: number;
  /** Count per distinct latency; created on the first latency (most groups of most queries have none). */
  latencies: Map<number, number> | undefined;
}

const NANOS_PER_USD = 1_000_000_000;
const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

export function createAggregator(query: AggregateQuery, limits: Partial<AggregateLimits> = {}): Aggregator {
  const bounds = { ...DEFAULT_AGGREGATE_LIMITS, ...limits };
  const groupBy = unique(query.group_by);
  const keepLatency = wantsLatency(query);
  const groups = new Map<string, GroupState>();
  const latencyValues = { count: 0 };
  const keyOf = keyFunction(groupBy);
  return {
    add(record) {
      if (!matches(record, query)) return false;
      const values = keyOf(record);
      const mapKey = values.join('\u0000');
      let group = groups.get(mapKey);
      if (group === undefined) {
        checkGroups(groups.size + 1, bounds);
        group = newGroup(values);
        groups.set(mapKey, group);
      }
      group.count += 1;
      group.input_tokens += record.input_tokens;
      group.output_tokens += record.output_tokens;
      if (record.cost_source !== 'unknown' && record.cost_usd !== undefined) {
        addNanos(group, Math.round(record.cost_usd * NANOS_PER_USD));
        group.cost_known_count += 1;
      } else {
        group.cost_unknown_count += 1;
      }
      if (keepLatency && record.latency_ms !== undefined) addLatency(group, record.latency_ms, 1, latencyValues, bounds);
      return true;
    },
    addRollup(row) {
      if (!rollupMatches(row, query)) return false;
      const values = keyOf({ ts: row.hour, user_id: row.user_id, provider: row.provider, model: row.model } as StoredRecord);
      const group = groupOf(groups, values, bounds);
      addCounters(group, row);
      if (keepLatency) row.latency_buckets.forEach((bucket, i) => addLatency(group, bucketValue(bucket), row.latency_counts[i]!, latencyValues, bounds));
      return true;
    },
    partial() {
      const out: PartialGroup[] = [];
      for (const group of groups.values()) out.push(toPartialGroup(group));
      return { group_by: [...groupBy], groups: out };
    },
  };
}

/** Merges shard partials of one query into its sorted rows. Throws E_TOO_LARGE past a bound. */
export function mergePartials(query: AggregateQuery, partials: readonly AggregatePartial[], limits: Partial<AggregateLimits> = {}): AggregateRow[] {
  const bounds = { ...DEFAULT_AGGREGATE_LIMITS, ...limits };
  const groupBy = unique(query.group_by);
  const groups = new Map<string, GroupState>();
  const latencyValues = { count: 0 };
  for (const partial of partials) {
    if (partial.group_by.join(',') !== groupBy.join(',')) {
      throw new Error(`partial grouped by [${partial.group_by.join(', ')}] merged into a query grouped by [${groupBy.join(', ')}]`);
    }
    for (const part of partial.groups) {
      if (part.key.length !== groupBy.length || part.latency_ms.length !== part.latency_counts.length) {
        throw new Error('malformed aggregate partial group');
      }
      const group = groupOf(groups, part.key, bounds);
      addCounters(group, part);
      part.latency_ms.forEach((value, i) => addLatency(group, value, part.latency_counts[i]!, latencyValues, bounds));
    }
  }
  if (groupBy.length === 0 && groups.size === 0) groups.set('', newGroup([]));
  const sorted = [...groups.values()].sort((a, b) => compareKeys(a.key, b.key));
  const metrics = unique(query.metrics);
  return sorted.map((group) => toRow(group, groupBy, metrics));
}

/** One-shot aggregate over records in hand (one shard, or a test): same rows as create, add, merge. */
export function aggregateRecords(records: Iterable<StoredRecord>, query: AggregateQuery, limits: Partial<AggregateLimits> = {}): AggregateRow[] {
  const aggregator = createAggregator(query, limits);
  for (const record of records) aggregator.add(record);
  return mergePartials(query, [aggregator.partial()], limits);
}

function toRow(group: GroupState, groupBy: readonly GroupByKey[], metrics: readonly AggregateMetric[]): AggregateRow {
  const row: Record<string, string | number | null> = {};
  groupBy.forEach((key, i) => (row[key] = group.key[i]!));
  for (const metric of metrics) {
    if (metric === 'count') row.count = group.count;
    else if (metric === 'input_tokens') row.input_tokens = group.input_tokens;
    else if (metric === 'output_tokens') row.output_tokens = group.output_tokens;
    else if (metric === 'tokens') row.tokens = group.input_tokens + group.output_tokens;
    else if (metric === 'latency_p50') row.latency_p50_ms = nearestRank(group.latencies, 50);
    else if (metric === 'latency_p95') row.latency_p95_ms = nearestRank(group.latencies, 95);
    else if (metric === 'cost') {
      row.cost_usd = group.cost_known_count === 0 ? null : group.cost_whole_usd + group.cost_nanos / NANOS_PER_USD;
      row.cost_unknown_count = group.cost_unknown_count;
    }
  }
  return row as AggregateRow;
}

/** The value at rank ceil(p/100 * n) (1-based) of the sorted multiset; null when empty. */
function nearestRank(latencies: Map<number, number> | undefined, percent: number): number | null {
  if (latencies === undefined) return null;
  let total = 0;
  for (const count of latencies.values()) total += count;
  if (total === 0) return null;
  // percent * total is an exact integer, so the division rounds at most once and ceil is exact.
  const rank = Math.max(1, Math.ceil((percent * total) / 100));
  let seen = 0;
  for (const value of [...latencies.keys()].sort((a, b) => a - b)) {
    seen += latencies.get(value)!;
    if (seen >= rank) return value;
  }
  throw new Error('nearest rank beyond the latency count');
}

function keyFunction(groupBy: readonly GroupByKey[]): (record: StoredRecord) => string[] {
  // Date formatting is the slow part of grouping by time: format each UTC day
  // once. Bounded: valid timestamps span about 10,000 days (2000 to now).
  const dayTexts = new Map<number, string>();
  const dayText = (ts: number) => {
    const day = Math.floor(ts / DAY_MS);
    let text = dayTexts.get(day);
    if (text === undefined) {
      text = new Date(day * DAY_MS).toISOString().slice(0, 10);
      dayTexts.set(day, text);
    }
    return text;
  };
  return (record) =>
    groupBy.map((key) => {
      switch (key) {
        case 'day':
          return dayText(record.ts);
        case 'hour':
          return `${dayText(record.ts)}T${String(Math.floor((record.ts % DAY_MS) / HOUR_MS)).padStart(2, '0')}:00Z`;
        default:
          return record[key];
      }
    });
}

function newGroup(key: string[]): GroupState {
  const counters = { count: 0, input_tokens: 0, output_tokens: 0, cost_whole_usd: 0, cost_nanos: 0, cost_known_count: 0, cost_unknown_count: 0 };
  return { key, ...counters, latencies: undefined };
}

function toPartialGroup(group: GroupState): PartialGroup {
  const latencies = group.latencies;
  const latency_ms = latencies === undefined ? [] : [...latencies.keys()].sort((a, b) => a - b);
  return {
    key: group.key,
    count: group.count,
    input_tokens: group.input_tokens,
    output_tokens: group.output_tokens,
    cost_whole_usd: group.cost_whole_usd,
    cost_nanos: group.cost_nanos,
    cost_known_count: group.cost_known_count,
    cost_unknown_count: group.cost_unknown_count,
    latency_ms,
    latency_counts: latencies === undefined ? [] : latency_ms.map((value) => latencies.get(value)!),
  };
}

/** Adds nano-dollars, carrying whole dollars so both fields stay small exact integers. */
/** The group of a key, made (within the bound) when new. */
function groupOf(groups: Map<string, GroupState>, key: string[], bounds: AggregateLimits): GroupState {
  const mapKey = key.join('\u0000');
  let group = groups.get(mapKey);
  if (group === undefined) {
    checkGroups(groups.size + 1, bounds);
    group = newGroup(key);
    groups.set(mapKey, group);
  }
  return group;
}

/** Adds `source`'s counters to `target`'s, cost exactly (whole dollars plus nanodollars). */
export function addCounters(target: Counters, source: Counters): void {
  target.count += source.count;
  target.input_tokens += source.input_tokens;
  target.output_tokens += source.output_tokens;
  target.cost_whole_usd += source.cost_whole_usd;
  addNanos(target, source.cost_nanos);
  target.cost_known_count += source.cost_known_count;
  target.cost_unknown_count += source.cost_unknown_count;
}

export function addNanos(group: Counters, nanos: number): void {
  const total = group.cost_nanos + nanos;
  const whole = Math.floor(total / NANOS_PER_USD);
  group.cost_whole_usd += whole;
  group.cost_nanos = total - whole * NANOS_PER_USD;
}

function addLatency(group: GroupState, value: number, count: number, seen: { count: number }, bounds: AggregateLimits): void {
  const latencies = (group.latencies ??= new Map());
  const before = latencies.get(value);
  if (before === undefined) {
    seen.count += 1;
    if (seen.count > bounds.latencyValuesMax) {
      throw new ProtocolError('E_TOO_LARGE', `more than ${bounds.latencyValuesMax} distinct latency values for exact percentiles; narrow the time range or the grouping`, {
        field: 'metrics',
        details: { limit_latency_values: bounds.latencyValuesMax },
      });
    }
  }
  latencies.set(value, (before ?? 0) + count);
}

function checkGroups(groupCount: number, bounds: AggregateLimits): void {
  if (groupCount > bounds.groupsMax) {
    throw new ProtocolError('E_TOO_LARGE', `more than ${bounds.groupsMax} groups; narrow the filters or group by fewer keys`, {
      field: 'group_by',
      details: { limit_groups: bounds.groupsMax },
    });
  }
}

function compareKeys(a: readonly string[], b: readonly string[]): number {
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

function wantsLatency(query: AggregateQuery): boolean {
  return query.metrics.includes('latency_p50') || query.metrics.includes('latency_p95');
}

function unique<T>(items: readonly T[]): T[] {
  return [...new Set(items)];
}
