// The query engine against a brute force written here, independently, over
// seeded random records: every group_by subset with every metric subset,
// partials merged across shards in any split and order, pages that visit each
// matching record exactly once in (ts, shard, id) order, and the errors a
// client sees for a bad cursor or an answer too large to hold.

import t from 'tap';
import { Packr } from 'msgpackr';
import { ProtocolError } from '../../protocols/errors.js';
import type { StoredRecord } from '../../protocols/record.js';
import { AGGREGATE_METRICS, GROUP_BY_KEYS, type AggregateQuery, type QueryFilters, type RecordsQuery } from '../../protocols/requests.js';
import { aggregateRecords, createAggregator, mergePartials, type AggregatePartial, type AggregateRow } from '../../src/query/aggregate.js';
import { matches } from '../../src/query/filter.js';
import { createShardPageSelection, decodeCursor, encodeCursor, mergePages, pageRecords, selectShardPage } from '../../src/query/records.js';

type GroupKey = (typeof GROUP_BY_KEYS)[number];
type Metric = (typeof AGGREGATE_METRICS)[number];

// ---------------------------------------------------------------- data

/** mulberry32: a small seeded generator, so a failure reproduces from its seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const SEED = 20240917;
const DAY_MS = 86_400_000;
const BASE_TS = Date.UTC(2024, 0, 30, 17, 0, 0); // the 40 days cross a month end and a leap day
// Upper case sorts before lower case in code-unit order but not in a locale's order.
const USERS = ['alice', 'Zed', 'bob', 'carol', 'dave-ünï', 'u-nocost'];
const MODELS: Record<string, string[]> = { openai: ['gpt-4o', 'gpt-4o-mini'], anthropic: ['claude-sonnet', 'claude-haiku'], google: ['gemini-pro', 'gemini-nolatency'] };
const STATUSES = ['success', 'success', 'success', 'error', 'timeout', 'cancelled'] as const;
const SHARDS = 4;

function generate(count: number, seed: number): StoredRecord[] {
  const random = rng(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const records: StoredRecord[] = [];
  for (let i = 0; i < count; i++) {
    const user_id = pick(USERS);
    const provider = pick(Object.keys(MODELS));
    const model = pick(MODELS[provider]!);
    // Many records share a second, and some an exact millisecond of an earlier record: ties for paging.
    const earlier = records[Math.floor(random() * records.length)];
    const ts = earlier !== undefined && random() < 0.15 ? earlier.ts : BASE_TS + Math.floor(random() * 40 * 86_400) * 1000;
    const cost_source = user_id === 'u-nocost' || random() < 0.2 ? 'unknown' : pick(['client', 'price_table'] as const);
    const record: StoredRecord = {
      id: `r-${(i * 7919) % count}-${Math.floor(random() * 1000)}`,
      ts,
      user_id,
      provider,
      model,
      input_tokens: Math.floor(random() * 5000),
      output_tokens: Math.floor(random() * 2000),
      status: pick(STATUSES),
      version: 1,
      seq: i + 1,
      updated_at: ts + 5,
      vv: { 'node-q': 1 },
      shard: Math.floor(random() * SHARDS),
      ingested_at: ts + 5,
      cost_source,
    };
    if (random() < 0.5) record.cached_tokens = Math.floor(record.input_tokens * random());
    if (cost_source !== 'unknown') record.cost_usd = Math.round(random() * 2_000_000) / 1e7 + (random() < 0.05 ? 1234.5 : 0);
    // Few distinct latencies, so percentiles land on repeated values; one model never has any.
    if (model !== 'gemini-nolatency' && random() < 0.8) record.latency_ms = random() < 0.9 ? 50 * Math.floor(random() * 60) : Math.round(random() * 1e6) / 100;
    records.push(record);
  }
  return records;
}

const records = generate(1500, SEED);

function subsets<T>(items: readonly T[]): T[][] {
  const out: T[][] = [];
  for (let mask = 0; mask < 1 << items.length; mask++) out.push(items.filter((_, i) => mask & (1 << i)));
  return out;
}

function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

// ---------------------------------------------------------------- brute force

function pad(n: number, width = 2): string {
  return String(n).padStart(width, '0');
}

function keyValue(record: StoredRecord, key: GroupKey): string {
  const d = new Date(record.ts);
  const day = `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
  if (key === 'day') return day;
  if (key === 'hour') return `${day}T${pad(d.getUTCHours())}:00Z`;
  return record[key];
}

function inFilters(record: StoredRecord, f: QueryFilters): boolean {
  return (
    (f.user_id === undefined || f.user_id === record.user_id) &&
    (f.provider === undefined || f.provider === record.provider) &&
    (f.model === undefined || f.model === record.model) &&
    (f.status === undefined || f.status === record.status) &&
    (f.from === undefined || record.ts >= f.from) &&
    (f.to === undefined || record.ts < f.to)
  );
}

function percentile(values: number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.floor((p * sorted.length + 99) / 100); // ceil(p * n / 100) in integers
  return sorted[rank - 1]!;
}

function bruteAggregate(all: StoredRecord[], query: AggregateQuery): AggregateRow[] {
  const groupBy = [...new Set(query.group_by)];
  const groups = new Map<string, StoredRecord[]>();
  for (const record of all.filter((r) => inFilters(r, query))) {
    const k = JSON.stringify(groupBy.map((key) => keyValue(record, key)));
    const members = groups.get(k);
    if (members === undefined) groups.set(k, [record]);
    else members.push(record);
  }
  if (groupBy.length === 0 && groups.size === 0) groups.set('[]', []);
  const keys = [...groups.keys()].map((k) => ({ k, values: JSON.parse(k) as string[] }));
  keys.sort(({ values: x }, { values: y }) => {
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i]! < y[i]! ? -1 : 1;
    return 0;
  });
  return keys.map(({ k, values }) => {
    const members = groups.get(k)!;
    const row: Record<string, unknown> = {};
    values.forEach((value, i) => (row[groupBy[i]!] = value));
    for (const metric of new Set(query.metrics)) {
      if (metric === 'count') row.count = members.length;
      if (metric === 'input_tokens') row.input_tokens = members.reduce((s, r) => s + r.input_tokens, 0);
      if (metric === 'output_tokens') row.output_tokens = members.reduce((s, r) => s + r.output_tokens, 0);
      if (metric === 'tokens') row.tokens = members.reduce((s, r) => s + r.input_tokens + r.output_tokens, 0);
      if (metric === 'cost') {
        const known = members.filter((r) => r.cost_source !== 'unknown');
        const nanos = known.reduce((s, r) => s + BigInt(Math.round(r.cost_usd! * 1e9)), 0n);
        row.cost_usd = known.length === 0 ? null : Number(nanos) / 1e9;
        row.cost_unknown_count = members.length - known.length;
      }
      const latencies = members.flatMap((r) => (r.latency_ms === undefined ? [] : [r.latency_ms]));
      if (metric === 'latency_p50') row.latency_p50_ms = percentile(latencies, 50);
      if (metric === 'latency_p95') row.latency_p95_ms = percentile(latencies, 95);
    }
    return row as AggregateRow;
  });
}

/** The columns a metric subset asks for, cut from brute-force rows computed with every metric. */
function project(rows: AggregateRow[], groupBy: GroupKey[], metrics: Metric[]): AggregateRow[] {
  const columns: Record<Metric, string[]> = {
    count: ['count'],
    input_tokens: ['input_tokens'],
    output_tokens: ['output_tokens'],
    tokens: ['tokens'],
    cost: ['cost_usd', 'cost_unknown_count'],
    latency_p50: ['latency_p50_ms'],
    latency_p95: ['latency_p95_ms'],
  };
  const wanted = [...groupBy, ...metrics.flatMap((m) => columns[m])];
  return rows.map((row) => Object.fromEntries(wanted.map((c) => [c, (row as Record<string, unknown>)[c]])) as AggregateRow);
}

/** Rows equal, column order included; cost within a nano-dollar of the exact BigInt sum. */
function sameRows(actual: AggregateRow[], expected: AggregateRow[]): string | undefined {
  if (actual.length !== expected.length) return `${actual.length} rows, expected ${expected.length}`;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i] as Record<string, unknown>;
    const e = expected[i] as Record<string, unknown>;
    if (Object.keys(a).join() !== Object.keys(e).join()) return `row ${i} columns ${Object.keys(a).join()} expected ${Object.keys(e).join()}`;
    for (const column of Object.keys(e)) {
      const x = a[column];
      const y = e[column];
      const close = column === 'cost_usd' && typeof x === 'number' && typeof y === 'number' && Math.abs(x - y) <= 1e-9 * Math.max(1, Math.abs(y));
      if (x !== y && !close) return `row ${i} ${column}: ${String(x)}, expected ${String(y)}`;
    }
  }
  return undefined;
}

function bruteOrder(a: StoredRecord, b: StoredRecord): number {
  return a.ts - b.ts || a.shard - b.shard || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

// ---------------------------------------------------------------- tests

t.test('the generated data has what the checks need', async (t) => {
  t.ok(records.some((r) => r.cost_source === 'unknown'), 'unknown costs');
  t.ok(records.some((r) => r.latency_ms === undefined), 'records without latency');
  t.ok(records.some((r) => r.cost_usd !== undefined && r.cost_usd > 1000), 'large costs');
  t.ok(new Set(records.map((r) => r.ts)).size < records.length, 'records sharing a millisecond');
  const days = new Set(records.map((r) => keyValue(r, 'day'))).size;
  t.ok(days >= 38 && days <= 41, `spread over 40 days (${days})`);
  t.equal(new Set(records.map((r) => `${r.shard}/${r.id}`)).size, records.length, 'ids unique within a shard');
});

t.test('matches: every filter, and ts in [from, to)', async (t) => {
  const r = records[0]!;
  t.ok(matches(r, {}), 'no filters');
  t.ok(matches(r, { user_id: r.user_id, provider: r.provider, model: r.model, status: r.status }), 'all equal');
  t.notOk(matches(r, { user_id: `${r.user_id}x` }), 'user_id');
  t.notOk(matches(r, { provider: 'nope' }), 'provider');
  t.notOk(matches(r, { model: 'nope' }), 'model');
  t.notOk(matches(r, { status: r.status === 'error' ? 'success' : 'error' }), 'status');
  t.ok(matches(r, { from: r.ts }), 'from is inclusive');
  t.notOk(matches(r, { from: r.ts + 1 }), 'after from');
  t.notOk(matches(r, { to: r.ts }), 'to is exclusive');
  t.ok(matches(r, { from: r.ts, to: r.ts + 1 }), 'a one-millisecond range');
  const random = rng(SEED + 1);
  for (let i = 0; i < 200; i++) {
    const f: QueryFilters = {};
    if (random() < 0.3) f.user_id = USERS[i % USERS.length]!;
    if (random() < 0.3) f.provider = 'openai';
    if (random() < 0.3) f.status = 'success';
    if (random() < 0.5) f.from = BASE_TS + Math.floor(random() * 40) * DAY_MS;
    if (random() < 0.5) f.to = (f.from ?? BASE_TS) + Math.floor(random() * 20) * DAY_MS;
    const got = records.filter((x) => matches(x, f)).length;
    const want = records.filter((x) => inFilters(x, f)).length;
    if (got !== want) t.fail(`filters ${JSON.stringify(f)}: ${got} matched, expected ${want}`);
  }
  t.pass('200 random filter sets agree with the brute force');
});

t.test('every group_by subset with every metric subset equals the brute force', async (t) => {
  // Every grouping with every metric over all records; then every metric subset
  // (which changes only the columns) over a smaller set, to keep the run short.
  for (const groupBy of subsets(GROUP_BY_KEYS)) {
    const query: AggregateQuery = { group_by: groupBy, metrics: [...AGGREGATE_METRICS] };
    t.equal(sameRows(aggregateRecords(records, query), bruteAggregate(records, query)), undefined, `[${groupBy.join()}] all metrics, ${records.length} records`);
  }
  const few = generate(250, SEED + 5);
  let checked = 0;
  for (const groupBy of subsets(GROUP_BY_KEYS)) {
    const everything = bruteAggregate(few, { group_by: groupBy, metrics: [...AGGREGATE_METRICS] });
    for (const metrics of subsets(AGGREGATE_METRICS).filter((m) => m.length > 0)) {
      const query: AggregateQuery = { group_by: groupBy, metrics };
      const problem = sameRows(aggregateRecords(few, query), project(everything, groupBy, metrics));
      if (problem !== undefined) t.fail(`group_by [${groupBy.join()}] metrics [${metrics.join()}]: ${problem}`);
      checked++;
    }
  }
  t.equal(checked, 32 * 127, 'every group_by and metric combination checked');
});

t.test('group_by order, metric order, duplicates and filters', async (t) => {
  const random = rng(SEED + 2);
  for (const groupBy of subsets(GROUP_BY_KEYS).filter((g) => g.length > 1)) {
    const reversed = [...groupBy].reverse();
    const metrics = shuffled(AGGREGATE_METRICS, random);
    const query: AggregateQuery = { group_by: [...reversed, reversed[0]!], metrics: [...metrics, metrics[0]!], from: BASE_TS + 3 * DAY_MS, to: BASE_TS + 30 * DAY_MS, provider: 'anthropic' };
    const problem = sameRows(aggregateRecords(records, query), bruteAggregate(records, query));
    t.equal(problem, undefined, `[${query.group_by.join()}] [${query.metrics.join()}]`);
  }
  const nobody: AggregateQuery = { group_by: [], metrics: ['count', 'cost', 'latency_p50'], user_id: 'nobody' };
  t.same(aggregateRecords(records, nobody), [{ count: 0, cost_usd: null, cost_unknown_count: 0, latency_p50_ms: null }], 'no group_by: one row even when nothing matches');
  t.same(aggregateRecords(records, { ...nobody, group_by: ['model'] }), [], 'grouped: no rows when nothing matches');
});

t.test('unknown cost is never $0 and latency is nearest-rank', async (t) => {
  const base = records[0]!;
  const mk = (over: Partial<StoredRecord>): StoredRecord => {
    const r: StoredRecord = { ...base, ...over };
    if (r.cost_source === 'unknown') delete r.cost_usd;
    return r;
  };
  const few = [
    mk({ id: 'a', user_id: 'all-unknown', cost_source: 'unknown', latency_ms: 10 }),
    mk({ id: 'b', user_id: 'all-unknown', cost_source: 'unknown', latency_ms: 20 }),
    mk({ id: 'c', user_id: 'mixed', cost_source: 'client', cost_usd: 0.1, latency_ms: 30 }),
    mk({ id: 'd', user_id: 'mixed', cost_source: 'price_table', cost_usd: 0.2, latency_ms: 10 }),
    mk({ id: 'e', user_id: 'mixed', cost_source: 'unknown', latency_ms: 20 }),
  ];
  const rows = aggregateRecords(few, { group_by: ['user_id'], metrics: ['cost', 'latency_p50', 'latency_p95'] });
  t.same(rows, [
    { user_id: 'all-unknown', cost_usd: null, cost_unknown_count: 2, latency_p50_ms: 10, latency_p95_ms: 20 },
    { user_id: 'mixed', cost_usd: 0.3, cost_unknown_count: 1, latency_p50_ms: 20, latency_p95_ms: 30 },
  ]);
});

t.test('partials merged across 4 shards in any split and order equal one aggregator, bit for bit', async (t) => {
  const random = rng(SEED + 3);
  const packr = new Packr({ useRecords: false, mapsAsObjects: true });
  for (const groupBy of subsets(GROUP_BY_KEYS)) {
    for (const metrics of [[...AGGREGATE_METRICS], ['cost'], ['latency_p95', 'count']] as Metric[][]) {
      const query: AggregateQuery = { group_by: groupBy as GroupKey[], metrics, status: random() < 0.5 ? 'success' : 'error' };
      const single = aggregateRecords(records, query);
      const shards = Array.from({ length: SHARDS }, () => createAggregator(query));
      for (const record of shuffled(records, random)) shards[Math.floor(random() * SHARDS)]!.add(record);
      // Partials travel between nodes: they must survive msgpack and JSON unchanged.
      const partials = shards.map((s, i) => (i % 2 === 0 ? packr.unpack(packr.pack(s.partial())) : JSON.parse(JSON.stringify(s.partial()))) as AggregatePartial);
      t.same(mergePartials(query, shuffled(partials, random)), single, `[${groupBy.join()}] [${metrics.join()}]`);
    }
  }
  const query: AggregateQuery = { group_by: ['day'], metrics: ['cost', 'latency_p50'] };
  const onePerRecord = records.map((r) => {
    const a = createAggregator(query);
    a.add(r);
    return a.partial();
  });
  t.same(mergePartials(query, onePerRecord.reverse()), aggregateRecords(records, query), 'one partial per record, reversed');
  t.same(mergePartials(query, []), [], 'no partials: no rows');
});

t.test('the group cap gives E_TOO_LARGE, in an aggregator and in a merge', async (t) => {
  const many = (n: number, prefix: string) => Array.from({ length: n }, (_, i) => ({ ...records[0]!, id: `g${i}`, user_id: `${prefix}${i}` }));
  const query: AggregateQuery = { group_by: ['user_id'], metrics: ['count'] };
  t.equal(aggregateRecords(many(10_000, 'u'), query).length, 10_000, 'exactly 10,000 groups is fine');
  t.throws(() => aggregateRecords(many(10_001, 'u'), query), { name: 'ProtocolError', code: 'E_TOO_LARGE', field: 'group_by' }, '10,001 groups');
  const partial = (prefix: string) => {
    const a = createAggregator(query);
    for (const r of many(6000, prefix)) a.add(r);
    return a.partial();
  };
  t.throws(() => mergePartials(query, [partial('a'), partial('b')]), { code: 'E_TOO_LARGE' }, 'two partials of 6,000 groups merge into too many');
  t.equal(mergePartials(query, [partial('a'), partial('a')]).length, 6000, 'the same groups twice stay 6,000');
  const latencies = Array.from({ length: 6 }, (_, i) => ({ ...records[0]!, id: `l${i}`, latency_ms: i }));
  const limits = { latencyValuesMax: 5 };
  t.throws(() => aggregateRecords(latencies, { group_by: [], metrics: ['latency_p95'] }, limits), { code: 'E_TOO_LARGE', field: 'metrics' }, 'latency values past their cap');
  t.same(aggregateRecords(latencies, { group_by: [], metrics: ['count'] }, limits), [{ count: 6 }], 'latencies are kept only when asked for');
});

t.test('paging visits every matching record exactly once, in (ts, shard, id) order', async (t) => {
  const random = rng(SEED + 4);
  const byShard = Array.from({ length: SHARDS }, (_, shard) => records.filter((r) => r.shard === shard));
  const filterSets: QueryFilters[] = [{}, { user_id: 'Zed' }, { from: BASE_TS + 5 * DAY_MS, to: BASE_TS + 9 * DAY_MS, status: 'success' }, { model: 'no-such-model' }];
  for (const filters of filterSets) {
    const expected = records.filter((r) => inFilters(r, filters)).sort(bruteOrder);
    for (const limit of [1, 7, 1000]) {
      const seen: StoredRecord[] = [];
      let cursor: string | undefined;
      let pages = 0;
      let shortPage = false;
      do {
        const query: RecordsQuery = { ...filters, limit, ...(cursor === undefined ? {} : { cursor }) };
        // Each shard scans its records in any order (half of them fed one at a time); the gatherer merges.
        const page = mergePages(
          byShard.map((list, shard) => {
            if (shard % 2 === 0) return selectShardPage(shuffled(list, random), query);
            const selection = createShardPageSelection(query);
            for (const record of shuffled(list, random)) selection.add(record);
            return selection.records();
          }),
          limit,
        );
        const single = pageRecords(shuffled(records, random), query);
        if (JSON.stringify(single) !== JSON.stringify(page)) t.fail(`page ${pages}: one source and four shards disagree`);
        if (page.records.length > limit) t.fail(`page ${pages} longer than its limit`);
        if (page.records.length < limit && page.next_cursor !== undefined) shortPage = true;
        seen.push(...page.records);
        cursor = page.next_cursor;
        pages++;
      } while (cursor !== undefined && pages <= expected.length + 1);
      t.equal(shortPage, false, 'only the last page is short');
      t.same(seen.map((r) => `${r.shard}/${r.id}`), expected.map((r) => `${r.shard}/${r.id}`), `${JSON.stringify(filters)} limit ${limit}: ${expected.length} records once each, in order`);
      t.equal(pages, Math.max(1, Math.ceil(expected.length / limit)), 'no empty trailing page');
    }
  }
});

t.test('a bad cursor is E_VALIDATION naming the cursor', async (t) => {
  const good = encodeCursor({ ts: BASE_TS, shard: 2, id: 'r-1' });
  t.same(decodeCursor(good), { ts: BASE_TS, shard: 2, id: 'r-1' }, 'a cursor round-trips');
  const b64 = (text: string) => Buffer.from(text).toString('base64url');
  const bad = ['', 'not a cursor!', `${good}A`, good.slice(0, -2), b64('{"ts":1'), b64('[1,2,"x"]'), b64('{"ts":1.5,"shard":0,"id":"x"}'), b64('{"ts":1,"shard":-1,"id":"x"}'), b64('{"ts":1,"shard":0,"id":""}'), b64('{"ts":1,"shard":0,"id":"x","extra":1}'), b64('null')];
  for (const cursor of bad) {
    t.throws(() => decodeCursor(cursor), { name: 'ProtocolError', code: 'E_VALIDATION', field: 'cursor' }, JSON.stringify(cursor));
  }
  t.throws(() => selectShardPage(records, { limit: 10, cursor: 'garbage!' }), new ProtocolError('E_VALIDATION', 'cursor: not a cursor from a previous page', { field: 'cursor' }), 'through a shard page');
  t.throws(() => createShardPageSelection({ limit: 10, cursor: `${good}x` }), { code: 'E_VALIDATION', field: 'cursor' }, 'before any record is scanned');
});
