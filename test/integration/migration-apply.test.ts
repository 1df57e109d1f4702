// admin.migration.apply and admin.migration.rollback of the storage format on
// a real node: a data directory as an early build wrote it (format 1, made
// by test/helpers/format1.ts from one this release wrote) opens and serves;
// plan shows storage-0002 pending; a dry run changes no byte; apply takes a
// full backup first (visible in backup.list), rewrites every shard to
// format 2 and leaves every record as it was; rollback returns to format 1,
// records still equal; bad input gets the protocol's codes with the field;
// a second apply or rollback while a rollback is held (on the runner's
// onStage seam) where it rewrites the shards is E_CONFLICT; every run is in
// the audit log.

import t from 'tap';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestNode, uniqueName, type TestNode } from '../helpers/node.js';
import type { Stage, StageHook } from '../../src/migration/runner.js';
import { hashTree, manifests, toFormat1 } from '../helpers/format1.js';
import { within } from '../helpers/wait.js';

const DAY_MS = 86_400_000;
const RECORDS = 600;

function yaml(backupDir: string): string {
  return `cluster:\n  shards: 4\nstorage:\n  memtable_records_max: 40\nbackup:\n  target_dir: ${backupDir}\n  schedule: false\n  wal_archive: false\n`;
}

function record(n: number) {
  return {
    id: `mig-${n}`,
    ts: Date.now() - (n % 6) * DAY_MS - n,
    user_id: `user-${n % 13}`,
    provider: ['anthropic', 'openai', 'google'][n % 3],
    model: ['claude-sonnet-4', 'gpt-4o', 'gemini-2.5-pro'][n % 3],
    input_tokens: 100 + n,
    output_tokens: 10 + (n % 50),
    cost_usd: 0.001 * (n % 10),
    latency_ms: 100 + (n % 300),
  };
}

/** Every record the node serves, by id. */
async function allRecords(node: TestNode): Promise<Map<string, unknown>> {
  const found = new Map<string, unknown>();
  let cursor: string | undefined;
  do {
    const reply = await node.call('query.records', { limit: 1000, ...(cursor ? { cursor } : {}) });
    if (!reply.ok || reply.complete !== true) throw new Error(`query.records: ${JSON.stringify(reply.error ?? reply.missing_shards)}`);
    for (const r of reply.records) found.set(r.id, r);
    cursor = reply.next_cursor;
  } while (cursor !== undefined);
  return found;
}

/**
 * The node's onStage seam, and a way to hold the next run of a direction at
 * a stage: `reached` resolves when the run waits there, `open()` lets it go.
 */
function stageGates() {
  let held: { direction: 'apply' | 'rollback'; stage: Stage; arrive: () => void; wait: Promise<void> } | undefined;
  const onStage: StageHook = async (stage, progress) => {
    if (!held || held.direction !== progress.direction || held.stage !== stage) return;
    const { arrive, wait } = held;
    held = undefined;
    arrive();
    await wait;
  };
  const holdNext = (direction: 'apply' | 'rollback', stage: Stage) => {
    let arrive!: () => void;
    let open!: () => void;
    const reached = new Promise<void>((resolve) => (arrive = resolve));
    held = { direction, stage, arrive, wait: new Promise<void>((resolve) => (open = resolve)) };
    return { reached, open };
  };
  return { onStage, holdNext };
}

const auditLines = (dataDir: string) =>
  readdirSync(join(dataDir, 'audit')).flatMap((name) => readFileSync(join(dataDir, 'audit', name), 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line)));

t.test('a format-1 directory serves, migrates to format 2 and back, records unchanged', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'usage-tracker-mig-'));
  const backupDir = mkdtempSync(join(tmpdir(), 'usage-tracker-migbk-'));
  t.teardown(() => {
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(backupDir, { recursive: true, force: true });
  });
  const ids = { dataDir, nodeId: uniqueName('n'), prefix: uniqueName('t'), keepData: true };
  const writer = await startTestNode(yaml(backupDir), {}, ids);
  for (let start = 0; start < RECORDS; start += 100) {
    const reply = await writer.call('ingest', { records: Array.from({ length: 100 }, (_, i) => record(start + i)) });
    t.equal(reply.ok, true);
  }
  const updated = await writer.call('record.update', { id: 'mig-5', user_id: 'user-5', expected_version: 1, patch: { output_tokens: 999 } });
  t.equal(updated.version, 2);
  await writer.stop();
  const { files } = toFormat1(dataDir);
  t.ok(files >= 8, `the format-1 directory has sealed files in several shards (${files})`);

  const { onStage, holdNext } = stageGates();
  const node = await startTestNode(yaml(backupDir), {}, { ...ids, migrations: { onStage } });
  t.teardown(() => node.stop());
  const before = await allRecords(node);
  t.equal(before.size, RECORDS, 'a format-1 directory opens and serves every record');

  const status = await node.call('admin.migration.status', {});
  t.equal(status.storage.format_version, 1);
  t.same(status.storage.pending, ['storage-0002_explicit_versions']);
  t.equal(status.storage.files_by_format['1'], files);
  const plan = await node.call('admin.migration.plan', {});
  t.same(plan.steps.map((step: any) => step.id), ['storage-0002_explicit_versions'], 'plan: storage-0002 pending');
  t.same(plan.skipped.map((step: any) => step.id), ['0001_usage_records', '0002_outside_edits'], 'no mirror: its migrations are skipped');

  // A dry run: the exact plan, and not one byte changed.
  const hashes = hashTree(dataDir);
  const dry = await node.call('admin.migration.apply', { dry_run: true });
  t.equal(dry.ok, true);
  t.equal(dry.dry_run, true);
  t.equal(dry.files, files, 'the dry run counts every format-1 file');
  t.same(dry.steps[0].shards.reduce((sum: number, shard: any) => sum + shard.files, 0), files);
  t.ok(dry.bytes > 0);
  t.same(hashTree(dataDir), hashes, 'a dry run changes no byte of the data directory');
  t.equal((await node.call('admin.backup.list', {})).backups.length, 0, 'a dry run takes no backup');

  // Bad input: protocol codes with the field.
  const bad = async (endpoint: 'admin.migration.apply' | 'admin.migration.rollback', body: unknown, code: string, field: string) => {
    const reply = await node.call(endpoint, body);
    t.equal(reply.error?.code, code, `${endpoint} ${JSON.stringify(body).slice(0, 60)} → ${code}`);
    t.equal(reply.error?.field, field, `names the field ${field}`);
  };
  await bad('admin.migration.apply', { dry_run: 'yes' }, 'E_VALIDATION', 'dry_run');
  await bad('admin.migration.apply', { force: true }, 'E_VALIDATION', 'force');
  await bad('admin.migration.apply', { to: 7 }, 'E_VALIDATION', 'to');
  await bad('admin.migration.apply', { to: 'x'.repeat(200) }, 'E_VALIDATION', 'to');
  await bad('admin.migration.apply', { to: 'no such/id' }, 'E_VALIDATION', 'to');
  await bad('admin.migration.apply', { to: 'storage-9999_nothing' }, 'E_NOT_FOUND', 'to');
  await bad('admin.migration.rollback', { id: 'storage-9999_nothing' }, 'E_NOT_FOUND', 'id');
  await bad('admin.migration.rollback', { id: 'storage-0002_explicit_versions' }, 'E_VALIDATION', 'id');
  const nothing = await node.call('admin.migration.rollback', {});
  t.equal(nothing.error?.code, 'E_VALIDATION');
  t.match(nothing.error?.message, /nothing to roll back/);

  // Apply, with the automatic backup first.
  const applied = await node.call('admin.migration.apply', {}, { timeoutMs: 120_000 });
  t.equal(applied.ok, true, JSON.stringify(applied.error ?? ''));
  t.same(applied.done, ['storage-0002_explicit_versions']);
  t.match(applied.backup_id, /-full$/);
  const backups = (await node.call('admin.backup.list', {})).backups;
  t.same(backups.map((b: any) => b.backup_id), [applied.backup_id], 'the automatic backup is in backup.list');
  for (const manifest of manifests(dataDir)) {
    t.equal(manifest.format_version, 2, `shard ${manifest.shard} manifest at format 2`);
    t.ok(manifest.files.every((file) => file.format === 2), `shard ${manifest.shard}: every file at format 2`);
    t.notOk(readdirSync(join(dataDir, 'shards', manifest.dir)).includes('migration-undo'), 'no undo left');
  }
  t.equal(JSON.parse(readFileSync(join(dataDir, 'node.json'), 'utf8')).format_version, 2);
  t.notOk(readdirSync(join(dataDir, 'migration')).includes('journal.json'), 'no journal left');
  t.same(await allRecords(node), before, 'every record (id, version, content) as before');
  const after = await node.call('admin.migration.status', {});
  t.same(after.storage.pending, []);
  t.equal(after.registry.find((m: any) => m.id === 'storage-0002_explicit_versions').state, 'applied');
  t.equal(after.last_run.outcome, 'ok');
  t.same((await node.call('admin.migration.plan', {})).steps, [], 'nothing left to apply');

  // The node still writes, seals and reads at format 2.
  t.equal((await node.call('ingest', { records: Array.from({ length: 60 }, (_, i) => record(RECORDS + i)) })).ok, true);
  const grown = await allRecords(node);
  t.equal(grown.size, RECORDS + 60);

  // A second run while one runs is E_CONFLICT: the rollback is held on a gate
  // where it rewrites the shards; then, the gate open, it returns to format 1.
  const gate = holdNext('rollback', 'rewriting');
  const rollback = node.call('admin.migration.rollback', {}, { timeoutMs: 120_000 });
  await within('the rollback to reach its rewriting stage', gate.reached);
  const running = (await node.call('admin.migration.status', {})).running;
  t.match(running, { direction: 'rollback', stage: 'rewriting', migration: 'storage-0002_explicit_versions' }, 'status shows the held rollback rewriting');
  const secondApply = await node.call('admin.migration.apply', {});
  t.equal(secondApply.error?.code, 'E_CONFLICT', 'an apply while a rollback runs is refused');
  t.match(secondApply.error?.message, /rollback .* is running, at rewriting/, 'and says what runs and where');
  const secondRollback = await node.call('admin.migration.rollback', {});
  t.equal(secondRollback.error?.code, 'E_CONFLICT', 'a second rollback while one runs is refused');
  gate.open();
  const rolled = await within('the rollback to finish once its gate is open', rollback);
  t.equal(rolled.ok, true, JSON.stringify(rolled.error ?? ''));
  t.same(rolled.done, ['storage-0002_explicit_versions']);
  for (const manifest of manifests(dataDir)) {
    t.equal(manifest.format_version, 1, `shard ${manifest.shard} back at format 1`);
    t.ok(manifest.files.every((file) => file.format === undefined), `shard ${manifest.shard}: every file at format 1`);
  }
  t.equal(JSON.parse(readFileSync(join(dataDir, 'node.json'), 'utf8')).format_version, 1);
  t.same(await allRecords(node), grown, 'records equal after the rollback');
  t.equal((await node.call('admin.backup.list', {})).backups.length, 2, 'the rollback took its own backup first');

  const audit = auditLines(dataDir).filter((line) => line.actor === 'migration');
  const seen = audit.map((line) => `${line.action}:${line.outcome}`);
  t.ok(seen.includes('migration.apply:dry_run'), 'the dry run is audited');
  t.ok(seen.includes('migration.apply:ok'), 'the apply is audited');
  t.ok(seen.includes('migration.rollback:ok'), 'the rollback is audited');
  t.ok(seen.includes('migration.rollback:failed'), 'a refused rollback is audited');
});

t.test('a directory at an unknown format is refused with a clear error', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'usage-tracker-mig-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const ids = { dataDir, nodeId: uniqueName('n'), prefix: uniqueName('t'), keepData: true };
  const node = await startTestNode('cluster:\n  shards: 1\nbackup:\n  schedule: false\n  wal_archive: false\n', {}, ids);
  await node.stop();
  const path = join(dataDir, 'node.json');
  const meta = JSON.parse(readFileSync(path, 'utf8'));
  const { writeFileSync } = await import('node:fs');
  for (const format of [3, 0]) {
    writeFileSync(path, JSON.stringify({ ...meta, format_version: format }));
    await t.rejects(startTestNode('cluster:\n  shards: 1\n', {}, ids), { name: 'DataDirError', message: new RegExp(`storage format ${format}; this release reads formats 1 and 2`) });
  }
});
