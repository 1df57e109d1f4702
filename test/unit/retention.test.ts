// Retention without a node: the policy part of cluster.yml refuses what it
// cannot mean; the plan drops whole old files and rewrites none, rewrites
// for a conditional policy, keeps what a legal hold covers, keeps the
// newest for count and size; rollups merge exactly and keep percentiles
// within the documented bound. On a real shard directory (no node):
// unsealed records are planned by a dry run and removed by a real run like
// sealed ones, and stay removed after a reopen.

import t from 'tap';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../src/log.js';
import { nodeFileSystem } from '../../src/ports/fs.js';
import { runShardRetention, type ShardRetentionInput } from '../../src/retention/shard-run.js';
import { ShardStore } from '../../src/storage/shard-store.js';
import { newRecord } from '../helpers/records.js';
import { ConfigError, loadConfig } from '../../src/config/load.js';
import type { StoredRecord } from '../../protocols/record.js';
import { effectivePolicies, type RetentionPolicy } from '../../src/retention/config.js';
import { computePlan, type PlanFile } from '../../src/retention/plan.js';
import { bucketOf, bucketValue, HISTOGRAM_RELATIVE_ERROR, rollUp, rollupPercentile, RollupBuilder } from '../../src/retention/rollup.js';
import { recordsToCsv, parseCsv } from '../../src/retention/export-format.js';

const DAY = 86_400_000;
const NOW = Date.UTC(2026, 10, 26, 12);

function configError(text: string): string {
  try {
    loadConfig({ text, env: {} });
  } catch (error) {
    if (error instanceof ConfigError) return error.message;
    throw error;
  }
  throw new Error(`loaded: ${text}`);
}

t.test('policy validation names the offender', async (t) => {
  const cases: [string, string, RegExp][] = [
    ['time without age', '{name: a, category: raw_usage, type: time, action: delete}', /retention\.policies\.0\.max_age_days: is required for a time policy/],
    ['size without bytes', '{name: a, category: raw_usage, type: size, action: delete}', /max_bytes: is required for a size policy/],
    ['count without records', '{name: a, category: raw_usage, type: count, action: archive}', /max_records: is required for a count policy/],
    ['conditional without where', '{name: a, category: raw_usage, type: conditional, action: delete}', /where: is required for a conditional policy/],
    ['empty where', '{name: a, category: raw_usage, type: conditional, action: delete, where: {}}', /where: must name at least one/],
    ['unknown key', '{name: a, category: raw_usage, type: time, action: delete, max_age_days: 3, keep: true}', /keep/],
    ['unknown where key', '{name: a, category: raw_usage, type: conditional, action: delete, where: {session_id: s}}', /session_id/],
    ['other category', '{name: a, category: audit_logs, type: time, action: delete, max_age_days: 3}', /category: must be raw_usage/],
    ['unknown type', '{name: a, category: raw_usage, type: weekly, action: delete}', /type: must be one of time, size, count, conditional/],
    ['unknown action', '{name: a, category: raw_usage, type: time, action: shred, max_age_days: 3}', /action: must be one of/],
    ['level on delete', '{name: a, category: raw_usage, type: time, action: delete, max_age_days: 3, compress_level: 9}', /compress_level: does not apply to action delete/],
    ['format on delete', '{name: a, category: raw_usage, type: time, action: delete, max_age_days: 3, export_format: csv}', /export_format: does not apply to action delete/],
    ['bad level', '{name: a, category: raw_usage, type: time, action: compress, max_age_days: 3, compress_level: 12}', /compress_level: must be at most 9/],
    ['bad format', '{name: a, category: raw_usage, type: time, action: export, max_age_days: 3, export_format: xml}', /export_format: must be jsonl or csv/],
    ['where on time', '{name: a, category: raw_usage, type: time, action: delete, max_age_days: 3, where: {provider: x}}', /where: does not apply to a time policy/],
    ['compress by count', '{name: a, category: raw_usage, type: count, action: compress, max_records: 3}', /action: compress works with time and conditional policies only/],
    ['zero age', '{name: a, category: raw_usage, type: time, action: delete, max_age_days: 0}', /max_age_days: must be at least 1/],
  ];
  for (const [label, policy, expected] of cases) t.match(configError(`retention:\n  policies:\n    - ${policy}\n`), expected, label);
  t.match(configError('retention:\n  policies:\n    - {name: a, category: raw_usage, type: time, action: delete, max_age_days: 3}\n    - {name: a, category: raw_usage, type: time, action: delete, max_age_days: 4}\n'), /policy name a appears twice/);
  t.match(configError('retention:\n  legal_holds:\n    - {id: h, user_id: u}\n'), /legal_holds\.0\.reason/);
  t.match(configError('retention:\n  legal_holds:\n    - {id: h, reason: r, from: "2026-02-01", to: "2026-01-01"}\n'), /from: must be before to/);
  t.match(configError('retention:\n  legal_holds:\n    - {id: h, reason: r, from: "not a date"}\n'), /from: must be epoch milliseconds or an ISO 8601 string/);
  t.match(configError('retention:\n  schedule_interval_hours: -1\n'), /schedule_interval_hours: must not be negative/);

  const loaded = loadConfig({ text: 'retention:\n  legal_holds:\n    - {id: h, reason: r, from: "2026-01-01T00:00:00Z"}\n', env: {} });
  t.equal(loaded.retention.legal_holds[0]!.from, Date.UTC(2026, 0, 1), 'ISO times become epoch ms');
  t.same(effectivePolicies(loaded.retention), [{ name: 'raw_usage-aggregate', category: 'raw_usage', type: 'time', action: 'aggregate', max_age_days: 90 }], 'default: roll raw usage up after raw_usage_days');
  t.same(effectivePolicies(loadConfig({ text: 'retention:\n  raw_usage_days: 10\n  policies: []\n', env: {} }).retention), [], 'an explicit empty list means no policy');
});

let seq = 0;
function record(id: string, ts: number, overrides: Partial<StoredRecord> = {}): StoredRecord {
  return {
    id,
    ts,
    user_id: 'u1',
    provider: 'anthropic',
    model: 'm',
    input_tokens: 10,
    output_tokens: 5,
    cost_usd: 0.001,
    cost_source: 'client',
    latency_ms: 100,
    status: 'success',
    version: 1,
    shard: 0,
    seq: ++seq,
    ingested_at: ts,
    updated_at: ts,
    vv: {},
    ...overrides,
  } as StoredRecord;
}

function file(name: string, rows: StoredRecord[], dead: string[] = []): PlanFile {
  return { name, day: new Date(rows[0]!.ts).toISOString().slice(0, 10), bytes: rows.length * 100, rows: rows.map((r) => ({ record: r, current: !dead.includes(r.id) })) };
}

const plan = (files: PlanFile[], policies: RetentionPolicy[], extra: Partial<Parameters<typeof computePlan>[0]> = {}) =>
  computePlan({ files, policies, holds: [], now: NOW, rollups: [], aggregatedMetricsDays: 365, ...extra });

const timeDelete: RetentionPolicy = { name: 'old', category: 'raw_usage', type: 'time', action: 'delete', max_age_days: 30 };

t.test('a time policy drops whole old files and rewrites none', async (t) => {
  const old1 = file('2026-09-01_0001.json.gz', [record('a', NOW - 86 * DAY), record('b', NOW - 86 * DAY + 5)]);
  const old2 = file('2026-09-02_0001.json.gz', [record('c', NOW - 85 * DAY), record('d', NOW - 85 * DAY + 5)]);
  const fresh = file('2026-11-25_0001.json.gz', [record('e', NOW - DAY)]);
  const result = plan([old1, old2, fresh], [timeDelete]);
  t.same(result.drop, ['2026-09-01_0001.json.gz', '2026-09-02_0001.json.gz']);
  t.same(result.rewrite, []);
  t.same([...result.removedIds].sort(), ['a', 'b', 'c', 'd']);
  t.equal(result.policies[0]!.records, 4);
});

t.test('an older version of a removed record is removed too; an updated record is judged by its current version', async (t) => {
  const old = file('2026-09-01_0001.json.gz', [record('a', NOW - 86 * DAY), record('b', NOW - 86 * DAY)]);
  // 'a' v2 lives in a newer file (an update sealed later): its old copy is dead. 'b' v2 too, but newer ts.
  const newer = file('2026-09-01_0002.json.gz', [record('a', NOW - 86 * DAY, { version: 2 }), record('x', NOW - DAY)]);
  const current = { ...old, rows: old.rows.map((row) => ({ ...row, current: false })) };
  const result = plan([current, newer], [timeDelete]);
  t.same([...result.removedIds], ['a'], "a's current version is old; b has no current sealed version here");
  t.same(result.drop, ['2026-09-01_0001.json.gz'], 'the file holding only dead rows of a removed id goes');
  t.same(result.rewrite.map((item) => [item.name, item.keep.map((r) => r.id)]), [['2026-09-01_0002.json.gz', ['x']]]);
});

t.test('a conditional policy rewrites files without the matching rows', async (t) => {
  const mixed = file('2026-09-01_0001.json.gz', [record('a', NOW - 86 * DAY, { provider: 'openai' }), record('b', NOW - 86 * DAY), record('c', NOW - 86 * DAY, { status: 'error', provider: 'openai' })]);
  const policy: RetentionPolicy = { name: 'openai-errors', category: 'raw_usage', type: 'conditional', action: 'delete', where: { provider: 'openai', status: 'error' } };
  const result = plan([mixed], [policy]);
  t.same([...result.removedIds], ['c']);
  t.same(result.drop, []);
  t.same(result.rewrite.map((item) => [item.name, item.keep.map((r) => r.id), item.removedRows]), [['2026-09-01_0001.json.gz', ['a', 'b'], 1]]);
});

t.test('a legal hold blocks deletion of what it covers', async (t) => {
  const rows = [record('a', NOW - 86 * DAY, { user_id: 'held' }), record('b', NOW - 86 * DAY), record('c', NOW - 40 * DAY, { user_id: 'held' })];
  const holds = [{ id: 'case-1', user_id: 'held', from: NOW - 50 * DAY, to: NOW, reason: 'r' }];
  const result = plan([file('2026-09-01_0001.json.gz', rows)], [timeDelete], { holds });
  t.same([...result.removedIds].sort(), ['a', 'b'], 'outside the hold range the user is not held');
  t.equal(result.policies[0]!.held, 1);
  t.same(result.policies[0]!.holds, ['case-1']);
  t.same(result.rewrite[0]!.keep.map((r) => r.id), ['c']);
  const everything = plan([file('2026-09-01_0001.json.gz', rows)], [timeDelete], { holds: [{ id: 'all', reason: 'everything' }] });
  t.equal(everything.removedIds.size, 0, 'a hold with no user and no range covers every record');
  t.same([everything.drop, everything.rewrite], [[], []], 'and nothing is touched');
});

t.test('count and size policies keep the newest', async (t) => {
  const rows = Array.from({ length: 10 }, (_, i) => record(`r${i}`, NOW - (20 - i) * DAY));
  const files = [file('a_0001.json.gz', rows.slice(0, 5)), file('b_0001.json.gz', rows.slice(5))];
  const unsealed = file('c_0001.json.gz', [record('u0', NOW - DAY), record('u1', NOW - DAY + 1)]);
  const count = plan([...files, unsealed], [{ name: 'n', category: 'raw_usage', type: 'count', action: 'delete', max_records: 6 }]);
  t.same([...count.removedIds].sort(), ['r0', 'r1', 'r2', 'r3', 'r4', 'r5'], 'the newest (here the unsealed ones) are kept');
  t.same(count.drop, ['a_0001.json.gz']);
  const size = plan(files, [{ name: 's', category: 'raw_usage', type: 'size', action: 'delete', max_bytes: 350 }]);
  t.same([...size.removedIds].sort(), ['r0', 'r1', 'r2', 'r3', 'r4', 'r5', 'r6'], '1000 bytes down to 300: the seven oldest go');
  const held = plan(files, [{ name: 'n', category: 'raw_usage', type: 'count', action: 'delete', max_records: 8 }], { holds: [{ id: 'h', to: NOW - 19 * DAY, reason: 'r' }] });
  t.same([...held.removedIds].sort(), ['r1', 'r2'], 'a held old record (r0) stays and the next oldest go instead');
});

t.test('policies apply in order, and compress takes untouched old files', async (t) => {
  const a = file('2026-09-01_0001.json.gz', [record('a', NOW - 86 * DAY, { provider: 'openai' })]);
  const b = file('2026-09-02_0001.json.gz', [record('b', NOW - 85 * DAY)]);
  const c = { ...file('2026-09-03_0001.json.gz', [record('c', NOW - 84 * DAY)]), level: 9 };
  const result = plan(
    [a, b, c],
    [
      { name: 'export-openai', category: 'raw_usage', type: 'conditional', action: 'export', where: { provider: 'openai' } },
      { name: 'squeeze', category: 'raw_usage', type: 'time', action: 'compress', max_age_days: 30, compress_level: 9 },
      { name: 'old', category: 'raw_usage', type: 'time', action: 'delete', max_age_days: 90 },
    ],
  );
  t.same(result.removed.get('export-openai')?.map((r) => r.id), ['a'], 'the first matching policy takes a record');
  t.same(result.compress.map((item) => [item.name, item.level]), [['2026-09-02_0001.json.gz', 9]], 'a file already at the level is left alone');
  t.same(result.drop, ['2026-09-01_0001.json.gz']);
});

t.test('rollups older than aggregated_metrics_days expire', async (t) => {
  const result = plan([], [], { rollups: [{ name: '2025-01-01_0001.json.gz', day: '2025-01-01' }, { name: '2026-11-01_0001.json.gz', day: '2026-11-01' }], aggregatedMetricsDays: 365 });
  t.same(result.rollupsDrop, ['2025-01-01_0001.json.gz']);
});

t.test('rollups keep exact sums, merge in any split, and keep percentiles within the bound', async (t) => {
  let state = 7;
  const random = () => ((state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const records = Array.from({ length: 5000 }, (_, i) =>
    record(`p${i}`, NOW - 40 * DAY + Math.floor(random() * 3 * 3_600_000), {
      latency_ms: i % 50 === 0 ? 0 : Math.exp(random() * 9),
      input_tokens: Math.floor(random() * 10_000),
      ...(i % 7 === 0 ? { cost_source: 'unknown' as const } : { cost_usd: random() * 0.5 }),
      user_id: `u${i % 3}`,
    }),
  );
  for (const r of records) if (r.cost_source === 'unknown') delete (r as { cost_usd?: number }).cost_usd;
  const whole = rollUp(records);
  const builder = new RollupBuilder();
  for (const part of [rollUp(records.slice(0, 1234)), rollUp(records.slice(1234, 4000)), rollUp(records.slice(4000))]) for (const row of part) builder.addRow(row);
  t.same(builder.rows(), whole, 'merging rollups of any split gives the rollup of the whole');
  t.equal(whole.reduce((sum, row) => sum + row.count, 0), 5000);
  t.equal(whole.reduce((sum, row) => sum + row.input_tokens, 0), records.reduce((sum, r) => sum + r.input_tokens, 0), 'tokens exact');
  t.equal(whole.reduce((sum, row) => sum + row.cost_unknown_count, 0), records.filter((r) => r.cost_source === 'unknown').length, 'unknown cost counted, never as $0');
  const nanos = records.filter((r) => r.cost_source !== 'unknown').reduce((sum, r) => sum + Math.round(r.cost_usd! * 1e9), 0);
  t.equal(whole.reduce((sum, row) => sum + row.cost_whole_usd * 1e9 + row.cost_nanos, 0), nanos, 'cost exact in nano-dollars');
  const sorted = records.map((r) => r.latency_ms!).sort((a, b) => a - b);
  for (const p of [1, 50, 90, 95, 99]) {
    const exact = sorted[Math.ceil((p / 100) * sorted.length) - 1]!;
    const approx = rollupPercentile(whole, p)!;
    t.ok(Math.abs(approx - exact) <= exact * HISTOGRAM_RELATIVE_ERROR + 0.001, `p${p}: ${approx} vs exact ${exact}`);
  }
  t.ok(HISTOGRAM_RELATIVE_ERROR < 0.01);
  for (const value of [0.0005, 0.002, 1, 99.9, 12345.6, 3_600_000]) {
    const represented = bucketValue(bucketOf(value));
    t.ok(Math.abs(represented - value) <= value * HISTOGRAM_RELATIVE_ERROR + 0.001, `${value} stands as ${represented}`);
  }
});

t.test('csv export round-trips quotes, commas and line breaks', async (t) => {
  const records = [record('q1', NOW, { metadata: { note: 'a "quoted", comma\nand a line' } as never, session_id: 's,1' }), record('q2', NOW + 1)];
  const rows = parseCsv(recordsToCsv(records));
  t.equal(rows.length, 2);
  t.same(JSON.parse(rows[0]!.metadata!), { note: 'a "quoted", comma\nand a line' });
  t.equal(rows[0]!.session_id, 's,1');
  t.equal(rows[1]!.metadata, '', 'absent values are empty');
});

const openShard = (dir: string) =>
  ShardStore.open({ dir, shard: 0, nodeId: 'node-r', now: () => NOW, fs: nodeFileSystem, fsync: true, log: silentLogger, memtableRecordsMax: 1_000_000, cacheBytesMax: 64 << 20 });

async function shardIds(store: ShardStore): Promise<string[]> {
  const out: string[] = [];
  for await (const r of store.scan({})) out.push(r.id);
  return out.sort();
}

t.test('unsealed records are planned by a dry run and removed by a real run, which stays removed after a reopen', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'usage-tracker-retention-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const exportDir = join(dir, 'exports');
  const input = (dry_run: boolean, run_id: string): ShardRetentionInput => ({
    run_id,
    now: NOW,
    dry_run,
    policies: [
      { name: 'export-openai', category: 'raw_usage', type: 'conditional', action: 'export', where: { provider: 'openai' }, max_age_days: 30 },
      timeDelete,
    ],
    holds: [],
    aggregated_metrics_days: 365,
    archive_dir: join(dir, 'archive'),
    export_dir: exportDir,
  });
  const store = await openShard(join(dir, 'shard-0'));
  // Old ones (60 days), a sealed old one updated since (its current version unsealed), and fresh ones.
  const old = Array.from({ length: 6 }, (_, i) => newRecord(i, { ts: NOW - 60 * DAY + i, ingested_at: NOW - 60 * DAY + i }));
  const fresh = Array.from({ length: 3 }, (_, i) => newRecord(100 + i, { ts: NOW - DAY + i, ingested_at: NOW - DAY + i }));
  await store.write([newRecord(50, { ts: NOW - 61 * DAY, ingested_at: NOW - 61 * DAY })]).durable;
  await store.seal();
  const updated = await store.update('rec-50', 'user-1', 1, { output_tokens: 7 });
  await updated.durable;
  await store.write([...old, ...fresh]).durable;
  t.equal(store.memtable.size, 10, 'every record but the sealed v1 of rec-50 is unsealed');
  const partitionsBefore = readdirSync(join(dir, 'shard-0', 'partitions')).sort();

  const dry = await runShardRetention(store, input(true, 'dry'), silentLogger);
  t.equal(dry.committed, false);
  t.equal(dry.result.state, 'dry_run');
  t.equal(dry.result.records_removed, 7, 'six old unsealed records and rec-50, whose current version is unsealed');
  t.same(dry.result.policies.map((p) => [p.name, p.records]), [['export-openai', 2], ['old', 5]]);
  t.equal(dry.result.records_exported, 2);
  t.equal(store.memtable.size, 10, 'a dry run seals nothing');
  t.same(readdirSync(join(dir, 'shard-0', 'partitions')).sort(), partitionsBefore, 'and writes no partition file');
  t.same((await shardIds(store)).length, 10);

  const real = await runShardRetention(store, input(false, 'real'), silentLogger);
  t.equal(real.committed, true);
  t.equal(real.result.state, 'done');
  const planOf = (result: typeof dry.result) => ({ policies: result.policies.map((p) => [p.name, p.records, p.held]), dropped: result.files_dropped, rewritten: result.files_rewritten, removed: result.records_removed });
  t.same(planOf(real.result), planOf(dry.result), 'the real run does what the dry run planned, file names included');
  t.same(real.removed_ids.sort(), ['rec-0', 'rec-1', 'rec-2', 'rec-3', 'rec-4', 'rec-5', 'rec-50'], 'the removed ids, for the mirrors');
  const exported = readdirSync(join(exportDir, 'real'));
  t.same(exported, ['shard-0-export-openai.jsonl'], 'the export of unsealed records is written');
  await store.close();

  const again = await openShard(join(dir, 'shard-0'));
  t.same(await shardIds(again), ['rec-100', 'rec-101', 'rec-102'], 'after a reopen only the fresh records are there; no older version of rec-50 comes back');
  const second = await runShardRetention(again, input(true, 'after'), silentLogger);
  t.equal(second.result.records_removed, 0, 'a dry run afterwards plans nothing');
  await again.close();
});
