// Retention on a real node (NATS, local storage): a dry run changes no byte
// of the data and plans exactly what the real run then does; a time policy
// drops whole old files; a legal hold keeps what it covers; rolled-up ranges
// still answer query.aggregate with the same counts, tokens and cost, also
// after a restart; archive and export hold exactly the removed records;
// compress rewrites at the higher level and every record still reads; the
// admin subjects refuse bad input, run one at a time, and audit every run.

import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { parseCsv } from '../../src/retention/export-format.js';
import { cli } from '../helpers/cli.js';
import { localRecords } from '../helpers/mirror.js';
import { startTestNode, uniqueName, type TestNode } from '../helpers/node.js';
import { waitFor } from '../helpers/wait.js';

const DAY_MS = 86_400_000;
const NOW = Date.now();
/** Old records: 60 to 62 days ago; new ones: the last 2 days. Both away from UTC day edges of the cut-off (30 days). */
const OLD_BASE = Date.UTC(new Date(NOW - 62 * DAY_MS).getUTCFullYear(), new Date(NOW - 62 * DAY_MS).getUTCMonth(), new Date(NOW - 62 * DAY_MS).getUTCDate()) + 3_600_000;
const NEW_BASE = NOW - 2 * DAY_MS;
const PROVIDERS = [
  ['anthropic', 'claude-sonnet-4'],
  ['openai', 'gpt-4o'],
  ['google', 'gemini-2.5-pro'],
] as const;

function scratch(t: Test, stem: string): string {
  const dir = mkdtempSync(join(tmpdir(), `usage-tracker-${stem}-`));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function records(prefix: string, count: number, base: number, spanDays: number) {
  return Array.from({ length: count }, (_, i) => {
    const [provider, model] = PROVIDERS[i % 3]!;
    return {
      id: `${prefix}-${i}`,
      ts: base + (i % spanDays) * DAY_MS + i * 1000,
      user_id: `user-${i % 5}`,
      provider,
      model,
      input_tokens: 100 + i,
      output_tokens: 10 + (i % 37),
      ...(i % 4 === 3 ? {} : { cost_usd: 0.0001 * (i % 13) + 0.00001 }),
      latency_ms: 50 + ((i * 37) % 900),
      status: i % 10 === 9 ? 'error' : 'success',
      metadata: { scene: i % 2 === 0 ? 'tavern' : 'dungeon, "deep"' },
    };
  });
}

async function ingest(node: TestNode, batch: unknown[]) {
  const reply = await node.call('ingest', { records: batch });
  return reply.results.filter((r: any) => r.status === 'stored').length;
}

/** Seals every shard (the partition message, as the seal timer would). */
async function sealAll(node: TestNode) {
  const { id } = node.config.node;
  for (let shard = 0; shard < node.config.cluster.shards; shard++) {
    await node.node.system.ref(`${id}/shards/partition-${shard}`).ask({ type: 'seal' }, { timeoutMs: 10_000, caller: 'test' });
  }
}

/** Path to SHA-256 of every file under dir, except the audit log (which a dry run appends to) and LOCK. */
function hashTree(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    const relative = path.slice(dir.length + 1);
    if (relative.startsWith('audit/') || relative === 'LOCK') continue;
    out.set(relative, createHash('sha256').update(readFileSync(path)).digest('hex'));
  }
  return out;
}

function auditOf(dataDir: string): any[] {
  const dir = join(dataDir, 'audit');
  const out: any[] = [];
  for (const name of readdirSync(dir).sort()) for (const line of readFileSync(join(dir, name), 'utf8').split('\n')) if (line) out.push(JSON.parse(line));
  return out.filter((record) => record.actor === 'retention');
}

function yaml(policies: string, extra = '', dirs?: { archive: string; exports: string }) {
  return (
    // No WAL archive rounds: they empty wal-pending/, which the byte-identical checks of a dry run would see.
    `cluster:\n  shards: 2\nbackup:\n  schedule: false\n  wal_archive: false\nretention:\n  schedule_interval_hours: 0\n` +
    (dirs ? `  archive_dir: ${dirs.archive}\n  export_dir: ${dirs.exports}\n` : '') +
    `  policies:\n${policies}${extra}`
  );
}

const TIME_DELETE = '    - {name: old, category: raw_usage, type: time, action: delete, max_age_days: 30}\n';

/** The parts of a shard result that must agree between a dry run and the real run. */
const planOf = (shards: any[]) =>
  shards.map((shard) => ({
    shard: shard.shard,
    policies: shard.policies.map((policy: any) => ({ name: policy.name, records: policy.records, held: policy.held })),
    files_dropped: shard.files_dropped,
    files_rewritten: shard.files_rewritten,
    files_compressed: shard.files_compressed,
    rollups_written: shard.rollups_written,
    rollups_dropped: shard.rollups_dropped,
    records_removed: shard.records_removed,
    records_rolled_up: shard.records_rolled_up,
  }));

t.test('a dry run changes no byte and plans exactly what the real run does; old files go whole; every run is audited', async (t) => {
  const node = await startTestNode(yaml(TIME_DELETE));
  t.teardown(() => node.stop());
  const dataDir = node.config.node.data_dir;
  const prefix = uniqueName('d');
  t.equal(await ingest(node, records(`${prefix}-old`, 150, OLD_BASE, 3)), 150);
  t.equal(await ingest(node, records(`${prefix}-new`, 150, NEW_BASE, 2)), 150);
  await sealAll(node);
  t.equal(await ingest(node, records(`${prefix}-unsealed`, 20, OLD_BASE, 1)), 20, 'old records still unsealed are subject too');

  const before = hashTree(dataDir);
  const dry = await node.call('admin.retention.run', { dry_run: true });
  t.equal(dry.ok, true, JSON.stringify(dry.error));
  t.equal(dry.dry_run, true);
  t.equal(dry.totals.records_removed, 170, 'the plan removes the 150 old sealed records and the 20 old unsealed ones');
  t.same(hashTree(dataDir), before, 'the data directory is byte-identical after the dry run');
  t.equal((await localRecords(node)).size, 320, 'every record still reads');
  const dryAudit = auditOf(dataDir);
  t.ok(dryAudit.some((record) => record.outcome === 'dry_run' && record.action === 'delete' && record.details.run_id === dry.run_id && record.details.records > 0), 'the dry run is audited per shard and policy');
  t.ok(dryAudit.some((record) => record.action === 'run' && record.outcome === 'dry_run'));

  const real = await node.call('admin.retention.run', {});
  t.equal(real.ok, true, JSON.stringify(real.error));
  t.same(planOf(real.shards), planOf(dry.shards), 'the real run did exactly what the dry run planned');
  t.equal(real.totals.records_removed, 170);
  for (const shard of real.shards) {
    t.ok(shard.files_dropped.length > 0, `shard ${shard.shard}: whole old files dropped`);
    t.same(shard.files_rewritten, [], `shard ${shard.shard}: no file rewritten (whole old day files go whole)`);
  }
  const left = await localRecords(node);
  t.equal(left.size, 150);
  t.notOk([...left.keys()].some((id) => id.startsWith(`${prefix}-old`) || id.startsWith(`${prefix}-unsealed`)), 'no old record is left, sealed or not');
  const listed = new Set<string>();
  for (let shard = 0; shard < 2; shard++) {
    const manifest = JSON.parse(readFileSync(join(dataDir, 'shards', String(shard), 'metadata.json'), 'utf8'));
    for (const file of manifest.files) listed.add(`${shard}/${file.name}`);
    const present = readdirSync(join(dataDir, 'shards', String(shard), 'partitions'));
    t.same(present.sort(), manifest.files.map((file: any) => file.name).sort(), `shard ${shard}: exactly the listed files are on disk`);
  }
  for (const name of real.shards.flatMap((shard: any) => shard.files_dropped.map((file: string) => `${shard.shard}/${file}`))) t.notOk(listed.has(name), `${name} is no longer listed`);
  const audit = auditOf(dataDir).filter((record) => record.details.run_id === real.run_id);
  const deletes = audit.filter((record) => record.action === 'delete' && record.outcome === 'ok');
  t.equal(deletes.reduce((sum, record) => sum + record.details.records, 0), 170, 'the audit records add up to the removed records');
  t.ok(deletes.every((record) => Array.isArray(record.details.files_dropped) && record.details.policy === 'old' && typeof record.details.shard === 'number'));

  const again = await node.call('admin.retention.run', {});
  t.equal(again.totals.records_removed, 0, 'a second run finds nothing more');
  const status = await node.call('admin.retention.status', {});
  t.equal(status.ok, true);
  t.equal(status.last_run.run_id, again.run_id);
  t.equal(status.running, null);
  t.same(status.policies.map((policy: any) => policy.name), ['old']);
  t.same(status.categories.backups_days.handled_by, 'BackupActor');
});

t.test('a legal hold blocks deletion of what it covers, and only that', async (t) => {
  const holdYaml = yaml(TIME_DELETE, `  legal_holds:\n    - {id: case-17, user_id: user-2, reason: litigation}\n    - {id: range-1, user_id: user-3, from: ${OLD_BASE}, to: ${OLD_BASE + DAY_MS}, reason: audit}\n`);
  const node = await startTestNode(holdYaml);
  t.teardown(() => node.stop());
  const prefix = uniqueName('h');
  const old = records(`${prefix}-old`, 150, OLD_BASE, 3);
  await ingest(node, old);
  await sealAll(node);
  const held = old.filter((r) => r.user_id === 'user-2' || (r.user_id === 'user-3' && r.ts < OLD_BASE + DAY_MS));
  const dry = await node.call('admin.retention.run', { dry_run: true });
  const heldCount = dry.shards.reduce((sum: number, shard: any) => sum + shard.policies[0].held, 0);
  t.equal(heldCount, held.length, 'the plan names the held records');
  const real = await node.call('admin.retention.run', {});
  t.equal(real.totals.records_removed, 150 - held.length);
  const left = await localRecords(node);
  t.same([...left.keys()].sort(), held.map((r) => r.id).sort(), 'exactly the held records remain');
  t.same([...new Set(real.shards.flatMap((shard: any) => shard.policies[0].holds))].sort(), ['case-17', 'range-1']);
});

t.test('aggregated ranges answer query.aggregate as before the roll-up, also after a restart', async (t) => {
  const policy = '    - {name: rollup, category: raw_usage, type: time, action: aggregate, max_age_days: 30}\n';
  const first = await startTestNode(yaml(policy), {}, { keepData: true });
  const dataDir = first.config.node.data_dir;
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const prefix = uniqueName('a');
  await ingest(first, records(`${prefix}-old`, 300, OLD_BASE, 3));
  await ingest(first, records(`${prefix}-new`, 60, NEW_BASE, 2));
  await sealAll(first);
  const range = { from: OLD_BASE - 3_600_000, to: NOW + 60_000 };
  const queries = [
    { ...range, metrics: ['count', 'tokens', 'input_tokens', 'output_tokens', 'cost'] },
    { ...range, group_by: ['day', 'provider'], metrics: ['count', 'tokens', 'cost'] },
    { ...range, group_by: ['hour', 'user_id', 'model'], metrics: ['count', 'cost'] },
    { from: OLD_BASE, to: OLD_BASE + DAY_MS, user_id: 'user-1', status: 'success', metrics: ['count', 'tokens', 'cost'] },
    { provider: 'openai', metrics: ['count', 'tokens', 'cost'] },
  ];
  const answers = async (node: TestNode) => Promise.all(queries.map(async (query) => (await node.call('query.aggregate', query)).rows));
  const latency = async (node: TestNode) => (await node.call('query.aggregate', { ...range, metrics: ['latency_p50', 'latency_p95'] })).rows[0];
  const beforeRows = await answers(first);
  const beforeLatency = await latency(first);
  t.equal(beforeRows[0][0].count, 360);

  const run = await first.call('admin.retention.run', {});
  t.equal(run.totals.records_rolled_up, 300, JSON.stringify(run.error ?? run.totals));
  t.equal(run.totals.records_removed, 300);
  t.ok(run.shards.every((shard: any) => shard.rollups_written.length > 0), 'each shard wrote rollup files');
  t.equal((await first.call('query.records', { from: OLD_BASE - DAY_MS, to: OLD_BASE + 3 * DAY_MS, limit: 1000 })).records.length, 0, 'the raw records are gone');
  t.same(await answers(first), beforeRows, 'the same rows, counts, tokens and cost');
  const afterLatency = await latency(first);
  for (const key of ['latency_p50_ms', 'latency_p95_ms']) {
    t.ok(Math.abs(afterLatency[key] - beforeLatency[key]) <= beforeLatency[key] * 0.01 + 0.001, `${key} within 1 %: ${afterLatency[key]} vs ${beforeLatency[key]}`);
  }
  await first.stop();
  const second = await startTestNode(yaml(policy), {}, { dataDir, nodeId: first.config.node.id, keepData: true });
  t.teardown(() => second.stop());
  t.same(await answers(second), beforeRows, 'the rollups are durable: the same answers after a restart');

  // More old records of the same days roll into one merged rollup file per day.
  await ingest(second, records(`${prefix}-late`, 30, OLD_BASE, 3));
  await sealAll(second);
  const merged = await second.call('admin.retention.run', {});
  t.equal(merged.totals.records_rolled_up, 30);
  t.ok(merged.shards.some((shard: any) => shard.rollups_dropped.length > 0), 'the older rollup file of a day is replaced by a merged one');
  t.equal((await second.call('query.aggregate', { ...range, metrics: ['count'] })).rows[0].count, 390);
});

t.test('archive and export hold exactly the removed records, in jsonl and csv', async (t) => {
  const dirs = { archive: scratch(t, 'archive'), exports: scratch(t, 'exports') };
  const policies =
    '    - {name: arch-openai, category: raw_usage, type: conditional, action: archive, max_age_days: 30, where: {provider: openai}}\n' +
    '    - {name: json-google, category: raw_usage, type: conditional, action: export, export_format: jsonl, max_age_days: 30, where: {provider: google}}\n' +
    '    - {name: csv-rest, category: raw_usage, type: time, action: export, export_format: csv, max_age_days: 30}\n';
  const node = await startTestNode(yaml(policies, '', dirs));
  t.teardown(() => node.stop());
  const prefix = uniqueName('x');
  const old = records(`${prefix}-old`, 90, OLD_BASE, 3);
  await ingest(node, old);
  await ingest(node, records(`${prefix}-new`, 30, NEW_BASE, 2));
  await sealAll(node);
  const run = await node.call('admin.retention.run', {});
  t.equal(run.totals.records_removed, 90, JSON.stringify(run.error ?? run.totals));
  t.equal(run.totals.records_archived, 30);
  t.equal(run.totals.records_exported, 60);
  const outputs = (name: string) => run.shards.flatMap((shard: any) => shard.policies.find((p: any) => p.name === name).outputs);
  const archived = outputs('arch-openai').flatMap((path: string) => gunzipSync(readFileSync(path)).toString('utf8').split('\n').filter(Boolean).map((line: string) => JSON.parse(line)));
  t.same(archived.map((r: any) => r.id).sort(), old.filter((r) => r.provider === 'openai').map((r) => r.id).sort(), 'the archive holds exactly the openai records');
  const original = new Map(old.map((r) => [r.id, r]));
  t.ok(archived.every((r: any) => r.input_tokens === original.get(r.id)!.input_tokens && r.version === 1 && r.metadata.scene === original.get(r.id)!.metadata.scene), 'archived whole');
  const jsonl = outputs('json-google').flatMap((path: string) => readFileSync(path, 'utf8').split('\n').filter(Boolean).map((line: string) => JSON.parse(line)));
  t.same(jsonl.map((r: any) => r.id).sort(), old.filter((r) => r.provider === 'google').map((r) => r.id).sort(), 'the jsonl export holds exactly the google records');
  const csv: Record<string, string>[] = outputs('csv-rest').flatMap((path: string) => parseCsv(readFileSync(path, 'utf8')));
  t.same(csv.map((row) => row.id).sort(), old.filter((r) => r.provider === 'anthropic').map((r) => r.id).sort(), 'the csv export holds exactly the rest');
  const sample = csv.find((row) => row.metadata!.includes('deep'))!;
  t.same(JSON.parse(sample.metadata!), original.get(sample.id!)!.metadata, 'quotes and commas survive the csv');
  t.equal(Date.parse(sample.ts!), original.get(sample.id!)!.ts);
  t.equal((await localRecords(node)).size, 30);
});

t.test('compress rewrites old files at the higher level and every record still reads', async (t) => {
  const policy = '    - {name: squeeze, category: raw_usage, type: time, action: compress, max_age_days: 30, compress_level: 9}\n';
  const node = await startTestNode(yaml(policy));
  t.teardown(() => node.stop());
  const dataDir = node.config.node.data_dir;
  const prefix = uniqueName('c');
  await ingest(node, records(`${prefix}-old`, 200, OLD_BASE, 2));
  await ingest(node, records(`${prefix}-new`, 50, NEW_BASE, 2));
  await sealAll(node);
  const before = await localRecords(node);
  const run = await node.call('admin.retention.run', {});
  const compressed = run.shards.flatMap((shard: any) => shard.files_compressed);
  t.ok(compressed.length >= 2, `old files recompressed: ${JSON.stringify(compressed)}`);
  t.equal(run.totals.records_removed, 0, 'compress removes nothing');
  for (let shard = 0; shard < 2; shard++) {
    const manifest = JSON.parse(readFileSync(join(dataDir, 'shards', String(shard), 'metadata.json'), 'utf8'));
    for (const item of run.shards[shard].files_compressed) {
      const entry = manifest.files.find((file: any) => file.name === item.to);
      t.equal(entry?.level, 9, `${item.to} is listed at level 9`);
      t.equal(statSync(join(dataDir, 'shards', String(shard), 'partitions', item.to)).size, entry.bytes);
      t.notOk(manifest.files.some((file: any) => file.name === item.from), `${item.from} is no longer listed`);
    }
  }
  const after = await localRecords(node);
  t.same([...after.entries()].sort(), [...before.entries()].sort(), 'every record reads the same');
  const again = await node.call('admin.retention.run', {});
  t.same(again.shards.flatMap((shard: any) => shard.files_compressed), [], 'a file already at the level is left alone');
});

t.test('retention subjects refuse bad input, run one at a time, and the CLI drives them', async (t) => {
  const node = await startTestNode(yaml(TIME_DELETE));
  t.teardown(() => node.stop());
  const cases: [string, any, unknown, string, string?][] = [
    ['wrong type', 'admin.retention.run', { dry_run: 'yes' }, 'E_VALIDATION', 'dry_run'],
    ['unknown key', 'admin.retention.run', { dry_run: true, force: true }, 'E_VALIDATION'],
    ['not an object', 'admin.retention.run', [1, 2], 'E_VALIDATION'],
    ['status with keys', 'admin.retention.status', { verbose: true }, 'E_VALIDATION'],
  ];
  for (const [label, endpoint, body, code, field] of cases) {
    const reply = await node.call(endpoint, body);
    t.equal(reply.error?.code, code, `${label}: ${code} (${JSON.stringify(reply.error)})`);
    if (field) t.equal(reply.error?.field, field, `${label}: names ${field}`);
  }
  const garbage = await node.callRaw('admin.retention.run', new Uint8Array([0xc1, 0xc1, 0xc1]));
  t.equal(garbage.body.error?.code, 'E_BAD_REQUEST', 'undecodable: E_BAD_REQUEST');
  const huge = await node.call('admin.retention.run', { dry_run: true, pad: 'x'.repeat(1_000_000) });
  t.ok(['E_TOO_LARGE', 'E_VALIDATION'].includes(huge.error?.code), `oversized: ${JSON.stringify(huge.error).slice(0, 200)}`);
  t.equal(huge.error?.field, 'pad', 'names the field');

  await ingest(node, records(uniqueName('k'), 200, OLD_BASE, 3));
  await sealAll(node);
  const [first, second] = await Promise.all([node.call('admin.retention.run', { dry_run: true }), node.call('admin.retention.run', { dry_run: true })]);
  t.equal([first, second].filter((reply) => reply.ok).length, 1, 'one run at a time');
  t.match([first, second].find((reply) => !reply.ok).error, { code: 'E_CONFLICT', message: /is running/ });

  const prefix = node.subjects.prefix;
  const dry = await cli(['retention', 'run', '--dry-run'], prefix);
  t.equal(dry.code, 0, dry.stderr);
  t.match(dry.stdout, /dry run .*: 200 records would be removed/);
  const json = await cli(['retention', 'run', '--json'], prefix);
  t.equal(json.code, 0, json.stderr);
  t.equal(JSON.parse(json.stdout).totals.records_removed, 200);
  const status = await cli(['retention', 'status'], prefix);
  t.equal(status.code, 0, status.stderr);
  t.match(status.stdout, /last run/);
  t.match(status.stdout, /old: time delete/);
});

t.test('the schedule runs retention by itself; old audit month files and stale temp files go, fresh ones stay', async (t) => {
  // Everything the run will find is made with the schedule off, so that no
  // step races the first run; then the node restarts on the directory with
  // the schedule on, and its first run comes one interval after that start.
  const dataDir = mkdtempSync(join(tmpdir(), 'usage-tracker-retsched-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const ids = { dataDir, nodeId: uniqueName('n'), prefix: uniqueName('t') };
  const writer = await startTestNode(yaml(TIME_DELETE), {}, { ...ids, keepData: true });
  t.equal(await ingest(writer, records(uniqueName('s'), 40, OLD_BASE, 2)), 40);
  await sealAll(writer);
  await writer.stop();
  mkdirSync(join(dataDir, 'audit'), { recursive: true });
  writeFileSync(join(dataDir, 'audit', '2010-01.jsonl'), '{"old":true}\n');
  // Not in a shard's directory: a shard's open removes its temp files itself (src/storage/recover.ts).
  const staleTemp = join(dataDir, 'audit', '.2010-02.jsonl.tmp');
  const freshTemp = join(dataDir, '.node.json.tmp');
  writeFileSync(staleTemp, 'left by a crash');
  writeFileSync(freshTemp, 'a write in progress');
  utimesSync(staleTemp, new Date(NOW - 3 * DAY_MS), new Date(NOW - 3 * DAY_MS));

  // 0.0005 h = 1.8 s.
  const intervalMs = 1800;
  const restartedAt = Date.now();
  const node = await startTestNode(yaml(TIME_DELETE).replace('schedule_interval_hours: 0', 'schedule_interval_hours: 0.0005'), {}, ids);
  t.teardown(() => node.stop());
  let status: any;
  const retention = (what: string, seen: () => boolean) =>
    waitFor(
      what,
      async () => {
        status = await node.call('admin.retention.status', {});
        return seen();
      },
      { pollMs: 100, describe: () => ({ next_run: status?.next_run, last_run: status?.last_run }) },
    );
  await retention('the retention schedule to be armed', () => status.next_run !== null);
  t.ok(Date.parse(status.next_run) >= restartedAt + intervalMs, `the first run waits one interval after the start: ${status.next_run}`);
  // The run's own report (its trigger with it) is there once the run has re-armed the schedule.
  await retention('a scheduled retention run to finish', () => status.last_run?.trigger === 'schedule');
  t.equal(status.last_run.trigger, 'schedule', 'a scheduled run happened');
  const runs = auditOf(dataDir).filter((record) => record.action === 'run');
  t.equal(runs[0]?.details.trigger, 'schedule');
  t.equal(runs[0]?.details.records_removed, 40);
  t.equal((await localRecords(node)).size, 0);
  t.notOk(existsSync(join(dataDir, 'audit', '2010-01.jsonl')), 'an audit month file older than audit_logs_days is removed');
  t.notOk(existsSync(staleTemp), 'a temp file older than temp_days is removed');
  t.ok(existsSync(freshTemp), 'a fresh temp file is left alone');
  t.ok(auditOf(dataDir).some((record) => record.action === 'audit_logs' && record.details.files.some((file: string) => file.endsWith('2010-01.jsonl'))), 'audited');
  t.ok(Date.parse(status.next_run) >= Date.parse(status.last_run.started_at) + intervalMs, `the next run moved on, one interval after the last: ${status.next_run}`);
});
