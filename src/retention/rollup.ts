// Rollups: raw usage records rolled into one row per (UTC hour, user_id,
// provider, model, status), kept as "aggregated metrics" once the raw
// records are gone. A row keeps exact sums (count, tokens, cost in whole
// dollars plus nano-dollars as src/query/aggregate.ts does, how many had an
// unknown cost) and a latency histogram, so p50/p95 stay answerable.
//
// The histogram has logarithmic buckets (DDSketch style): bucket i holds
// latencies in (G^(i-1), G^i] with G = 1.02, and stands for 2 G^i / (G + 1).
// Any latency above LATENCY_FLOOR_MS is thus represented within a relative
// error of (G - 1) / (G + 1) < 1 %; latencies at or below the floor (0 ms
// included) share bucket ZERO_BUCKET and stand for 0. A percentile from
// rollups is the represented value of the bucket holding the nearest rank,
// so it is within 1 % (plus 0.001 ms) of the exact nearest-rank percentile.

import type { StoredRecord } from '../../protocols/record.js';
import { addCounters, addNanos } from '../query/aggregate.js';

export const HISTOGRAM_GAMMA = 1.02;
export const LATENCY_FLOOR_MS = 0.001;
export const ZERO_BUCKET = -1_000_000;
export const HISTOGRAM_RELATIVE_ERROR = (HISTOGRAM_GAMMA - 1) / (HISTOGRAM_GAMMA + 1);
const LOG_GAMMA = Math.log(HISTOGRAM_GAMMA);
const HOUR_MS = 3_600_000;
const NANOS_PER_USD = 1_000_000_000;

export interface RollupRow {
  /** Epoch ms of the UTC hour's start. */
  hour: number;
  user_id: string;
  provider: string;
  model: string;
  status: string;
  count: number;
  input_tokens: number;
  output_tokens: number;
  cached_tokens: number;
  cost_whole_usd: number;
  /** In [0, 1e9). */
  cost_nanos: number;
  cost_known_count: number;
  cost_unknown_count: number;
  /** Sum of latencies in whole microseconds (integers, so merging in any order is exact). */
  latency_sum_us: number;
  latency_count: number;
  /** Bucket indices, ascending, and how many latencies fell in each. */
  latency_buckets: number[];
  latency_counts: number[];
}

export function bucketOf(latencyMs: number): number {
  if (!(latencyMs > LATENCY_FLOOR_MS)) return ZERO_BUCKET;
  return Math.ceil(Math.log(latencyMs) / LOG_GAMMA - 1e-9);
}

/** The value a bucket stands for. */
export function bucketValue(bucket: number): number {
  if (bucket === ZERO_BUCKET) return 0;
  return (2 * HISTOGRAM_GAMMA ** bucket) / (HISTOGRAM_GAMMA + 1);
}

const keyOf = (row: Pick<RollupRow, 'hour' | 'user_id' | 'provider' | 'model' | 'status'>) =>
  `${row.hour}\u0000${row.user_id}\u0000${row.provider}\u0000${row.model}\u0000${row.status}`;

function emptyRow(hour: number, record: Pick<RollupRow, 'user_id' | 'provider' | 'model' | 'status'>): RollupRow {
  return {
    hour,
    user_id: record.user_id,
    provider: record.provider,
    model: record.model,
    status: record.status,
    count: 0,
    input_tokens: 0,
    output_tokens: 0,
    cached_tokens: 0,
    cost_whole_usd: 0,
    cost_nanos: 0,
    cost_known_count: 0,
    cost_unknown_count: 0,
    latency_sum_us: 0,
    latency_count: 0,
    latency_buckets: [],
    latency_counts: [],
  };
}


/** Accumulates rows; `rows()` gives them sorted by hour, then key. */
export class RollupBuilder {
  private readonly byKey = new Map<string, { row: RollupRow; hist: Map<number, number> }>();

  addRecord(record: StoredRecord): void {
    const hour = Math.floor(record.ts / HOUR_MS) * HOUR_MS;
    const entry = this.entry(hour, { user_id: record.user_id, provider: record.provider, model: record.model, status: record.status ?? 'success' });
    const row = entry.row;
    row.count += 1;
    row.input_tokens += record.input_tokens;
    row.output_tokens += record.output_tokens;
    row.cached_tokens += record.cached_tokens ?? 0;
    if (record.cost_source !== 'unknown' && record.cost_usd !== undefined) {
      addNanos(row, Math.round(record.cost_usd * NANOS_PER_USD));
      row.cost_known_count += 1;
    } else {
      row.cost_unknown_count += 1;
    }
    if (record.latency_ms !== undefined) {
      row.latency_sum_us += Math.round(record.latency_ms * 1000);
      row.latency_count += 1;
      const bucket = bucketOf(record.latency_ms);
      entry.hist.set(bucket, (entry.hist.get(bucket) ?? 0) + 1);
    }
  }

  addRow(other: RollupRow): void {
    const entry = this.entry(other.hour, other);
    const row = entry.row;
    addCounters(row, other);
    row.cached_tokens += other.cached_tokens;
    row.latency_sum_us += other.latency_sum_us;
    row.latency_count += other.latency_count;
    other.latency_buckets.forEach((bucket, i) => entry.hist.set(bucket, (entry.hist.get(bucket) ?? 0) + other.latency_counts[i]!));
  }

  private entry(hour: number, key: Pick<RollupRow, 'user_id' | 'provider' | 'model' | 'status'>) {
    const mapKey = keyOf({ hour, ...key });
    let entry = this.byKey.get(mapKey);
    if (!entry) {
      entry = { row: emptyRow(hour, key), hist: new Map() };
      this.byKey.set(mapKey, entry);
    }
    return entry;
  }

  get size(): number {
    return this.byKey.size;
  }

  rows(): RollupRow[] {
    const out: RollupRow[] = [];
    for (const { row, hist } of this.byKey.values()) {
      const buckets = [...hist.keys()].sort((a, b) => a - b);
      out.push({ ...row, latency_buckets: buckets, latency_counts: buckets.map((bucket) => hist.get(bucket)!) });
    }
    return out.sort((a, b) => a.hour - b.hour || (keyOf(a) < keyOf(b) ? -1 : keyOf(a) > keyOf(b) ? 1 : 0));
  }
}

export function rollUp(records: Iterable<StoredRecord>): RollupRow[] {
  const builder = new RollupBuilder();
  for (const record of records) builder.addRecord(record);
  return builder.rows();
}

/** Nearest-rank percentile over rows' histograms: the represented value of the bucket holding rank ceil(p/100 n). */
export function rollupPercentile(rows: readonly RollupRow[], percent: number): number | null {
  const hist = new Map<number, number>();
  let total = 0;
  for (const row of rows) {
    row.latency_buckets.forEach((bucket, i) => {
      hist.set(bucket, (hist.get(bucket) ?? 0) + row.latency_counts[i]!);
      total += row.latency_counts[i]!;
    });
  }
  if (total === 0) return null;
  const rank = Math.max(1, Math.ceil((percent * total) / 100));
  let seen = 0;
  for (const bucket of [...hist.keys()].sort((a, b) => a - b)) {
    seen += hist.get(bucket)!;
    if (seen >= rank) return bucketValue(bucket);
  }
  return null;
}

/** Whether a rollup row answers a record filter: by its hour's start for from/to (hour granularity). */
export function rollupMatches(row: RollupRow, filters: { user_id?: string | undefined; provider?: string | undefined; model?: string | undefined; status?: string | undefined; from?: number | undefined; to?: number | undefined }): boolean {
  if (filters.user_id !== undefined && row.user_id !== filters.user_id) return false;
  if (filters.provider !== undefined && row.provider !== filters.provider) return false;
  if (filters.model !== undefined && row.model !== filters.model) return false;
  if (filters.status !== undefined && row.status !== filters.status) return false;
  if (filters.from !== undefined && row.hour < filters.from) return false;
  if (filters.to !== undefined && row.hour >= filters.to) return false;
  return true;
}
