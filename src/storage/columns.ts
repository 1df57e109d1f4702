// The column index of a shard's sealed records: the fields aggregate queries
// read, one typed array per field, plus a posting list of rows per user.
// About 45 bytes a record, so a shard answers usage and cost questions over
// millions of sealed records without decoding a single partition file.
// Rows are appended as files are sealed (or indexed at open); a row whose
// record has a newer version elsewhere is marked dead. Always rebuildable
// from the sealed files.

import { COST_SOURCES, RECORD_STATUSES, type CostSource, type RecordStatus, type StoredRecord } from '../../protocols/record.js';
import type { QueryFilters } from '../../protocols/requests.js';

const INITIAL_ROWS = 1024;

/** Strings to small integers and back. */
class Dictionary {
  private readonly codes = new Map<string, number>();
  readonly values: string[] = [];

  code(value: string): number {
    let code = this.codes.get(value);
    if (code === undefined) {
      code = this.values.length;
      this.codes.set(value, code);
      this.values.push(value);
    }
    return code;
  }

  find(value: string): number | undefined {
    return this.codes.get(value);
  }
}

/** The fields of a row that aggregation reads, as a reusable record-shaped view. */
export interface RowView {
  id: string;
  user_id: string;
  provider: string;
  model: string;
  ts: number;
  status: RecordStatus;
  input_tokens: number;
  output_tokens: number;
  cached_tokens: number;
  cost_usd: number | undefined;
  cost_source: CostSource;
  latency_ms: number | undefined;
  version: number;
  shard: number;
  ingested_at: number;
}

export class ColumnIndex {
  private capacity = INITIAL_ROWS;
  /** Rows used; row 0 is never used (a location of 0 means the memtable). */
  rows = 1;
  private ts = new Float64Array(this.capacity);
  private user = new Uint32Array(this.capacity);
  private provider = new Uint32Array(this.capacity);
  private model = new Uint32Array(this.capacity);
  private status = new Uint8Array(this.capacity);
  private costSource = new Uint8Array(this.capacity);
  private alive = new Uint8Array(this.capacity);
  private inputTokens = new Uint32Array(this.capacity);
  private outputTokens = new Uint32Array(this.capacity);
  private cachedTokens = new Uint32Array(this.capacity);
  private cost = new Float64Array(this.capacity);
  private latency = new Float64Array(this.capacity);
  private readonly users = new Dictionary();
  private readonly providers = new Dictionary();
  private readonly models = new Dictionary();
  private readonly postings: number[][] = [];

  constructor(readonly shard: number) {}

  get aliveRows(): number {
    let count = 0;
    for (let row = 1; row < this.rows; row++) count += this.alive[row]!;
    return count;
  }

  /** Appends a record; returns its row. */
  append(record: StoredRecord): number {
    if (this.rows === this.capacity) this.grow();
    const row = this.rows++;
    const userCode = this.users.code(record.user_id);
    this.ts[row] = record.ts;
    this.user[row] = userCode;
    this.provider[row] = this.providers.code(record.provider);
    this.model[row] = this.models.code(record.model);
    this.status[row] = RECORD_STATUSES.indexOf(record.status);
    this.costSource[row] = COST_SOURCES.indexOf(record.cost_source);
    this.alive[row] = 1;
    this.inputTokens[row] = record.input_tokens;
    this.outputTokens[row] = record.output_tokens;
    this.cachedTokens[row] = record.cached_tokens ?? 0;
    this.cost[row] = record.cost_usd ?? Number.NaN;
    this.latency[row] = record.latency_ms ?? Number.NaN;
    (this.postings[userCode] ??= []).push(row);
    return row;
  }

  /** The rows of one user, in the order they were appended. */
  rowsOf(userId: string): readonly number[] {
    const code = this.users.find(userId);
    return code === undefined ? [] : (this.postings[code] ?? []);
  }

  /** The user_id of a row. */
  userOf(row: number): string {
    return this.users.values[this.user[row]!]!;
  }

  kill(row: number): void {
    this.alive[row] = 0;
  }

  private grow(): void {
    this.capacity *= 2;
    const grow = <T extends Float64Array | Uint32Array | Uint8Array>(old: T): T => {
      const next = new (old.constructor as new (length: number) => T)(this.capacity);
      next.set(old);
      return next;
    };
    this.ts = grow(this.ts);
    this.user = grow(this.user);
    this.provider = grow(this.provider);
    this.model = grow(this.model);
    this.status = grow(this.status);
    this.costSource = grow(this.costSource);
    this.alive = grow(this.alive);
    this.inputTokens = grow(this.inputTokens);
    this.outputTokens = grow(this.outputTokens);
    this.cachedTokens = grow(this.cachedTokens);
    this.cost = grow(this.cost);
    this.latency = grow(this.latency);
  }

  /**
   * Calls `visit` with a view of every live row that matches the filters.
   * The view object is reused between calls: read it, do not keep it.
   */
  scan(filters: QueryFilters, visit: (row: RowView) => void): void {
    let rows: Iterable<number>;
    if (filters.user_id !== undefined) {
      const code = this.users.find(filters.user_id);
      if (code === undefined) return;
      rows = this.postings[code] ?? [];
    } else {
      rows = { [Symbol.iterator]: () => range(1, this.rows) };
    }
    const provider = filters.provider === undefined ? -1 : (this.providers.find(filters.provider) ?? -2);
    const model = filters.model === undefined ? -1 : (this.models.find(filters.model) ?? -2);
    const status = filters.status === undefined ? -1 : RECORD_STATUSES.indexOf(filters.status as RecordStatus);
    if (provider === -2 || model === -2) return;
    const from = filters.from ?? -Infinity;
    const to = filters.to ?? Infinity;
    const view: RowView = {
      id: '',
      user_id: '',
      provider: '',
      model: '',
      ts: 0,
      status: 'success',
      input_tokens: 0,
      output_tokens: 0,
      cached_tokens: 0,
      cost_usd: undefined,
      cost_source: 'unknown',
      latency_ms: undefined,
      version: 0,
      shard: this.shard,
      ingested_at: 0,
    };
    for (const row of rows) {
      if (this.alive[row] === 0) continue;
      const ts = this.ts[row]!;
      if (ts < from || ts >= to) continue;
      if (provider >= 0 && this.provider[row] !== provider) continue;
      if (model >= 0 && this.model[row] !== model) continue;
      if (status >= 0 && this.status[row] !== status) continue;
      view.ts = ts;
      view.user_id = this.users.values[this.user[row]!]!;
      view.provider = this.providers.values[this.provider[row]!]!;
      view.model = this.models.values[this.model[row]!]!;
      view.status = RECORD_STATUSES[this.status[row]!]!;
      view.cost_source = COST_SOURCES[this.costSource[row]!]!;
      view.input_tokens = this.inputTokens[row]!;
      view.output_tokens = this.outputTokens[row]!;
      view.cached_tokens = this.cachedTokens[row]!;
      const cost = this.cost[row]!;
      view.cost_usd = Number.isNaN(cost) ? undefined : cost;
      const latency = this.latency[row]!;
      view.latency_ms = Number.isNaN(latency) ? undefined : latency;
      visit(view);
    }
  }
}

function* range(from: number, to: number): Generator<number> {
  for (let i = from; i < to; i++) yield i;
}
