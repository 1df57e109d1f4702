// Backups of a running node: full and incremental (content-addressed, so an
// unchanged sealed file is not copied twice), listed, verified (every object
// re-read, then a test restore), restored into a fresh directory that a new
// node serves with every acknowledged record; a damaged object is reported
// by verify and refused by restore; bad input gets clear errors.

import t from 'tap';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cli } from '../helpers/cli.js';
import { localRecords } from '../helpers/mirror.js';
import { startTestNode, type TestNode } from '../helpers/node.js';

const YAML = 'cluster:\n  shards: 2\nstorage:\n  memtable_records_max: 150\n';

/** A backup target and a directory to restore into, removed at the end of the test. */
function scratchDirs(t: { teardown(fn: () => void): void }): { backupDir: string; restoreRoot: string } {
  const backupDir = mkdtempSync(join(tmpdir(), 'usage-tracker-backups-'));
  const restoreRoot = mkdtempSync(join(tmpdir(), 'usage-tracker-restore-'));
  t.teardown(() => {
    rmSync(backupDir, { recursive: true, force: true });
    rmSync(restoreRoot, { recursive: true, force: true });
  });
  return { backupDir, restoreRoot };
}

function records(from: number, count: number, prefix: string) {
  return Array.from({ length: count }, (_, i) => ({
    id: `${prefix}-${from + i}`,
    ts: Date.now() - 86_400_000 * ((from + i) % 3) - (from + i),
    user_id: `user-${(from + i) % 9}`,
    provider: 'anthropic',
    model: 'claude-sonnet-4',
    input_tokens: 100 + i,
    output_tokens: 10 + i,
    cost_usd: 0.001,
  }));
}

async function ingest(node: TestNode, batch: ReturnType<typeof records>) {
  const reply = await node.call('ingest', { records: batch });
  return reply.results.filter((r: any) => r.status === 'stored').length;
}

t.test('full and incremental backups, verified and restored into a directory a new node serves', async (t) => {
  const { backupDir, restoreRoot } = scratchDirs(t);
  const node = await startTestNode(YAML, { USAGE_TRACKER_BACKUP_DIR: backupDir });
  t.teardown(() => node.stop());
  const prefix = `b${process.pid}`;

  const noFull = await node.call('admin.backup.create', { kind: 'incremental' });
  t.equal(noFull.error?.code, 'E_VALIDATION');
  t.match(noFull.error?.message, /^an incremental backup needs a full backup of this data directory \(incarnation [0-9a-f]{16}\) to start from/);

  t.equal(await ingest(node, records(0, 500, prefix)), 500);
  const updated = await node.call('record.update', { id: `${prefix}-7`, user_id: 'user-7', expected_version: 1, patch: { output_tokens: 999 } });
  t.equal(updated.version, 2);
  const full = await node.call('admin.backup.create', { kind: 'full' });
  t.equal(full.ok, true);
  t.match(full.backup_id, /^\d{8}T\d{9}Z-full$/);
  t.equal(full.parent, null);
  t.ok(full.objects_written >= full.files - 1, `a full backup writes every object (${full.objects_written} of ${full.files} files)`);

  t.equal(await ingest(node, records(500, 300, prefix)), 300);
  const incremental = await node.call('admin.backup.create', { kind: 'incremental' });
  t.equal(incremental.parent, full.backup_id);
  t.ok(incremental.objects_written < incremental.files, `an incremental copies only what changed (${incremental.objects_written} of ${incremental.files} files)`);

  const listed = await node.call('admin.backup.list', {});
  t.same(listed.backups.map((b: any) => b.backup_id), [full.backup_id, incremental.backup_id], 'listed oldest first');

  const verified = await node.call('admin.backup.verify', { backup_id: incremental.backup_id });
  t.same([verified.ok, verified.valid, verified.records, verified.problems], [true, true, 800, []], 'verify re-reads every object and test-restores 800 records');
  t.equal((await node.call('admin.backup.verify', { backup_id: full.backup_id })).records, 500);

  const target = join(restoreRoot, 'data');
  const restored = await node.call('admin.backup.restore', { backup_id: incremental.backup_id, target_dir: target });
  t.same([restored.ok, restored.records, restored.target_dir], [true, 800, target]);
  t.notOk(readdirSync(restoreRoot).some((name) => name.includes('.restoring-')), 'no staging directory is left behind');

  const live = await localRecords(node);
  const revived = await startTestNode(YAML, {}, { dataDir: target, nodeId: node.node.config.node.id, keepData: true });
  t.teardown(() => revived.stop());
  const back = await localRecords(revived);
  t.equal(back.size, 800, 'the restored node serves every record of the backup');
  let differ = 0;
  const canonical = (value: unknown) => JSON.stringify(value, (_key, inner) => (inner && typeof inner === 'object' && !Array.isArray(inner) ? Object.fromEntries(Object.entries(inner).sort(([a], [b]) => a.localeCompare(b))) : inner));
  for (const [id, record] of live) {
    if (canonical(back.get(id)) !== canonical(record) && differ++ < 2) t.fail(`${id}: ${canonical(back.get(id))} vs ${canonical(record)}`);
  }
  t.equal(differ, 0, 'each one as it was, versions included');
  t.equal(back.get(`${prefix}-7`).version, 2);

  const exists = await node.call('admin.backup.restore', { backup_id: full.backup_id, target_dir: target });
  t.equal(exists.error?.code, 'E_VALIDATION');
  t.match(exists.error?.message, /exists; restore into a new directory/);
});

t.test('a damaged or missing object is reported by verify, and restore refuses rather than restore partial data', async (t) => {
  const { backupDir, restoreRoot } = scratchDirs(t);
  const node = await startTestNode(YAML, { USAGE_TRACKER_BACKUP_DIR: backupDir });
  t.teardown(() => node.stop());
  await ingest(node, records(0, 400, `d${process.pid}`));
  const full = await node.call('admin.backup.create', {});
  t.equal(full.kind, 'full', 'full is the default kind');

  const objects = readdirSync(join(backupDir, 'objects'), { recursive: true, withFileTypes: true }).filter((entry) => entry.isFile());
  const victim = objects[0]!;
  writeFileSync(join(victim.parentPath, victim.name), 'not the bytes it had');
  const verified = await node.call('admin.backup.verify', { backup_id: full.backup_id });
  t.same([verified.ok, verified.valid], [true, false], 'the request works; the backup is not valid');
  t.match(verified.problems.join('\n'), new RegExp(`object ${victim.name} .* is damaged`));
  const target = join(restoreRoot, 'data');
  const refused = await node.call('admin.backup.restore', { backup_id: full.backup_id, target_dir: target });
  t.equal(refused.error?.code, 'E_VALIDATION');
  t.match(refused.error?.message, /is damaged/);
  t.notOk(existsSync(target), 'nothing is left at the target');
  t.same(readdirSync(restoreRoot), [], 'nor beside it');

  rmSync(join(victim.parentPath, victim.name));
  t.match((await node.call('admin.backup.verify', { backup_id: full.backup_id })).problems.join('\n'), /is missing/);
});

t.test('backup commands refuse bad input clearly', async (t) => {
  const backupDir = mkdtempSync(join(tmpdir(), 'usage-tracker-backups-'));
  t.teardown(() => rmSync(backupDir, { recursive: true, force: true }));
  const node = await startTestNode(YAML, { USAGE_TRACKER_BACKUP_DIR: backupDir });
  t.teardown(() => node.stop());
  const cases: [string, any, unknown, string, (string | undefined)?, RegExp?][] = [
    ['unknown kind', 'admin.backup.create', { kind: 'weekly' }, 'E_VALIDATION', 'kind'],
    ['extra key', 'admin.backup.create', { kind: 'full', compress: true }, 'E_VALIDATION'],
    ['list with keys', 'admin.backup.list', { all: true }, 'E_VALIDATION'],
    ['malformed id', 'admin.backup.verify', { backup_id: '../../etc/passwd' }, 'E_VALIDATION', 'backup_id'],
    ['unknown id', 'admin.backup.verify', { backup_id: '20200101T000000000Z-full' }, 'E_NOT_FOUND', undefined, /no backup 20200101T000000000Z-full/],
    ['missing target', 'admin.backup.restore', { backup_id: '20200101T000000000Z-full' }, 'E_VALIDATION', 'target_dir'],
    ['control characters', 'admin.backup.restore', { backup_id: '20200101T000000000Z-full', target_dir: '/tmp/a\u0000b' }, 'E_VALIDATION', 'target_dir'],
    ['neither id nor time', 'admin.backup.restore', { target_dir: '/tmp/x' }, 'E_VALIDATION', 'backup_id', /give backup_id, to_time, or both/],
    ['time of wrong type', 'admin.backup.restore', { to_time: { at: 1 }, target_dir: '/tmp/x' }, 'E_VALIDATION', 'to_time'],
    ['time not a date', 'admin.backup.restore', { to_time: 'yesterday-ish', target_dir: '/tmp/x' }, 'E_VALIDATION', 'to_time'],
    ['user id too long', 'admin.backup.restore', { backup_id: '20200101T000000000Z-full', target_dir: '/tmp/x', user_id: 'u'.repeat(100_000) }, 'E_VALIDATION', 'user_id'],
    ['range backwards', 'admin.backup.restore', { backup_id: '20200101T000000000Z-full', target_dir: '/tmp/x', from: Date.UTC(2026, 1, 2), to: Date.UTC(2026, 1, 1) }, 'E_VALIDATION', 'from', /from must not be after to/],
    ['no backup before the time', 'admin.backup.restore', { to_time: '2001-01-01T00:00:00Z', target_dir: join(tmpdir(), `usage-tracker-never-${process.pid}`) }, 'E_NOT_FOUND', undefined, /no backups in .* yet/],
  ];
  for (const [label, endpoint, body, code, field, message] of cases) {
    const reply = await node.call(endpoint, body);
    t.equal(reply.error?.code, code, `${label}: ${code}`);
    if (field) t.equal(reply.error?.field, field, `${label}: names ${field}`);
    if (message) t.match(reply.error?.message, message);
  }
  const [first, second] = await Promise.all([node.call('admin.backup.create', { kind: 'full' }), node.call('admin.backup.create', { kind: 'full' })]);
  t.equal([first, second].filter((reply) => reply.ok).length, 1, 'one backup runs at a time');
  t.match([first, second].find((reply) => !reply.ok).error, { code: 'E_CONFLICT', message: /is running/ });
});

t.test('the CLI takes, lists, verifies and restores backups', async (t) => {
  const { backupDir, restoreRoot } = scratchDirs(t);
  const node = await startTestNode(YAML, { USAGE_TRACKER_BACKUP_DIR: backupDir });
  t.teardown(() => node.stop());
  await ingest(node, records(0, 120, `c${process.pid}`));
  const prefix = node.subjects.prefix;
  const empty = await cli(['backup', 'list'], prefix);
  t.match(empty.stdout, /no backups in .* yet/);
  const created = await cli(['backup', 'create'], prefix);
  t.equal(created.code, 0, created.stderr);
  const id = /backup (\S+) \(full\)/.exec(created.stdout)?.[1];
  t.ok(id, created.stdout);
  const listedCli = (await cli(['backup', 'list'], prefix)).stdout;
  t.match(listedCli, new RegExp(`\\| ${id} \\| full`));
  t.match(listedCli, /WAL archive: every 30 s; recovery point (none yet|\d{4}-\d\d-\d\dT)/);
  t.match(listedCli, /this data directory: incarnation [0-9a-f]{16}\n/, 'the list says which history the node is');
  const verified = await cli(['backup', 'verify', id!], prefix);
  t.match(verified.stdout, /good: \d+ objects re-read, test restore serves 120 records/);
  t.match(verified.stdout, /WAL archive after it: replays with no gap/);
  const target = join(restoreRoot, 'data');
  const restored = await cli(['backup', 'restore', id!, '--target', target], prefix);
  t.equal(restored.code, 0, restored.stderr);
  t.match(restored.stdout, /restored into .*: 120 records, every file checked against its SHA-256/);
  t.match(restored.stdout, /base backup: \S+ \(incarnation [0-9a-f]{16}\)\n  restored as: incarnation [0-9a-f]{16}\n/, 'the restore says which history, and the new one');
  const stranger = await cli(['backup', 'restore', '--to-time', new Date().toISOString(), '--incarnation', '00000000deadbeef', '--target', join(restoreRoot, 'stranger')], prefix);
  t.equal(stranger.code, 1);
  t.match(stranger.stderr, /E_NOT_FOUND: no backup of incarnation 00000000deadbeef completed at or before/);
  const path = await cli(['backup', 'restore', id!, '--incarnation', '../../etc', '--target', join(restoreRoot, 'path')], prefix);
  t.equal(path.code, 1);
  t.match(path.stderr, /E_VALIDATION: incarnation: must be an incarnation id: 16 hex digits, or legacy/);
  const asOf = await cli(['backup', 'restore', '--to-time', new Date().toISOString(), '--user-id', 'user-4', '--target', join(restoreRoot, 'pitr')], prefix);
  t.equal(asOf.code, 0, asOf.stderr);
  t.match(asOf.stdout, /restored into .*: 13 records/);
  t.match(asOf.stdout, /as of: +\S+ \(\d+ archived WAL entries replayed; archive reaches \S+\)/);
  t.match(asOf.stdout, /only: +user_id user-4/);
  const neither = await cli(['backup', 'restore', '--target', join(restoreRoot, 'neither')], prefix);
  t.equal(neither.code, 1);
  t.match(neither.stderr, /E_VALIDATION: backup_id: give backup_id, to_time, or both/);
  const bad = await cli(['backup', 'create', '--kind', 'weekly'], prefix);
  t.equal(bad.code, 1);
  t.match(bad.stderr, /E_VALIDATION: kind: must be full, incremental or differential/);
  const noTarget = await cli(['backup', 'restore', id!], prefix);
  t.equal(noTarget.code, 1);
  t.match(noTarget.stderr, /required option '--target <dir>'/);
});
