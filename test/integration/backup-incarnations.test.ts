// One history per data directory (issue 10): a node whose data directory
// is deleted and created again, with the same node id and backup target,
// is a new incarnation. A restore combines a backup and archived WAL of
// one incarnation only, whether the new life is ahead of the old archive
// (more entries, so its seqs run past the old ones) or behind it; a time
// with no backup of the chosen incarnation is refused with E_NOT_FOUND
// naming it; and the restored directory is a new incarnation that
// records its lineage, shown by admin.status and admin.backup.list.
// Archive rounds are asked of the BackupActor directly, so that the test
// knows when one ran.

import t, { type Test } from 'tap';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { localRecords } from '../helpers/mirror.js';
import { startTestNode, uniqueName, type TestNode } from '../helpers/node.js';

const YAML = (archive: boolean) => `cluster:\n  shards: 3\nstorage:\n  memtable_records_max: 500\nbackup:\n  schedule: false\n  wal_archive: ${archive}\n  wal_archive_interval_s: 60\n`;

interface Place {
  root: string;
  dataDir: string;
  target: string;
  nodeId: string;
  prefix: string;
}

function place(t: Test): Place {
  const root = mkdtempSync(join(tmpdir(), 'usage-tracker-lives-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  return { root, dataDir: join(root, 'data'), target: join(root, 'backups'), nodeId: uniqueName('n'), prefix: uniqueName('t') };
}

/** A life of the node on `where.dataDir`: the same node id, prefix and backup target every time. */
function life(where: Place, archive = true): Promise<TestNode> {
  return startTestNode(YAML(archive), { USAGE_TRACKER_BACKUP_DIR: where.target }, { dataDir: where.dataDir, nodeId: where.nodeId, prefix: where.prefix, keepData: true });
}

async function ingest(node: TestNode, stem: string, from: number, count: number): Promise<void> {
  for (let start = from; start < from + count; start += 500) {
    const size = Math.min(500, from + count - start);
    const records = Array.from({ length: size }, (_, i) => ({
      id: `${stem}-${start + i}`,
      ts: Date.now() - 60_000 * ((start + i) % 90),
      user_id: `user-${(start + i) % 11}`,
      provider: 'anthropic',
      model: 'claude-sonnet-4',
      input_tokens: 10,
      output_tokens: start + i,
    }));
    const reply = await node.call('ingest', { records });
    const stored = reply.results.filter((result: { status: string }) => result.status === 'stored').length;
    if (stored !== size) throw new Error(`ingest of ${stem} ${start}..: ${stored} of ${size} stored: ${JSON.stringify(reply).slice(0, 300)}`);
  }
}

/** One WAL archive round, run to its end. */
async function archiveRound(node: TestNode): Promise<void> {
  const reply = (await node.node.system.ref(`${node.config.node.id}/maintenance/backup`).ask({ type: 'archive' }, { timeoutMs: 120_000 })) as { archived: boolean; error?: string };
  if (!reply.archived) throw new Error(`the archive round failed: ${reply.error}`);
}

/** The moment between two writes: every version acknowledged before it was written by then. */
async function moment(): Promise<number> {
  const at = Date.now();
  while (Date.now() <= at) await new Promise((resolve) => setImmediate(resolve));
  return at;
}

async function incarnationOf(node: TestNode): Promise<string> {
  const status = await node.call('admin.status', {});
  if (!/^[0-9a-f]{16}$/.test(status.incarnation)) throw new Error(`admin.status has no incarnation: ${JSON.stringify(status.incarnation)}`);
  return status.incarnation;
}

/** Serves a restored directory and gives the ids it holds, and what it says of itself. */
async function served(where: Place, dir: string): Promise<{ ids: string[]; status: any; list: any }> {
  // Beside the running life: the same node id (node.json says so), its own prefix and backup target.
  const node = await startTestNode(YAML(false), { USAGE_TRACKER_BACKUP_DIR: `${dir}-backups` }, { dataDir: dir, nodeId: where.nodeId, keepData: true });
  try {
    const ids = [...(await localRecords(node)).keys()].sort();
    return { ids, status: await node.call('admin.status', {}), list: await node.call('admin.backup.list', {}) };
  } finally {
    await node.stop();
  }
}

const idsOf = (stem: string, count: number) => Array.from({ length: count }, (_, i) => `${stem}-${i}`).sort();

t.test('a new life ahead of the old archive: a restore never mixes the two', async (t) => {
  const where = place(t);
  const first = await life(where);
  const firstIncarnation = await incarnationOf(first);
  await ingest(first, 'one', 0, 600);
  const firstBackup = await first.call('admin.backup.create', { kind: 'full' });
  t.equal(firstBackup.incarnation, firstIncarnation, 'the backup names the incarnation it was taken of');
  await archiveRound(first);
  await ingest(first, 'one', 600, 50);
  await archiveRound(first);
  const firstEnd = await moment();
  await first.stop();

  // What `rm -rf data && npm start` does with the defaults.
  rmSync(where.dataDir, { recursive: true, force: true });
  const second = await life(where);
  t.teardown(() => second.stop());
  const secondIncarnation = await incarnationOf(second);
  t.not(secondIncarnation, firstIncarnation, 'a directory created again is a new incarnation');
  await ingest(second, 'two', 0, 6000);
  await archiveRound(second);
  const t0 = await moment();
  await ingest(second, 'two', 6000, 400);
  const secondBackup = await second.call('admin.backup.create', { kind: 'full' });
  t.equal(secondBackup.incarnation, secondIncarnation);

  const refused = await second.call('admin.backup.restore', { to_time: t0, target_dir: join(where.root, 'mixed') });
  t.equal(refused.error?.code, 'E_NOT_FOUND', 'no backup of this life was complete by T0');
  t.match(refused.error?.message, new RegExp(`no backup of incarnation ${secondIncarnation} completed at or before`), 'the refusal names the incarnation');
  t.match(refused.error?.message, new RegExp(`pass incarnation ${firstIncarnation}`), 'and the other history that has one');
  t.notOk(existsSync(join(where.root, 'mixed')), 'a refused restore leaves nothing');

  const old = await second.call('admin.backup.restore', { to_time: t0, incarnation: firstIncarnation, target_dir: join(where.root, 'first-life') });
  t.equal(old.ok, true, JSON.stringify(old.error ?? ''));
  t.equal(old.backup_id, firstBackup.backup_id);
  t.equal(old.incarnation, firstIncarnation, 'the reply says which history it restored');
  t.equal(old.records, 650, "the first life's records, and none of the second's");
  t.equal(old.replayed, 50, "the first life's archived entries after its backup, and only those");
  const oldServed = await served(where, join(where.root, 'first-life'));
  t.same(oldServed.ids, idsOf('one', 650), 'the restored directory serves exactly the first life');

  const lineage = oldServed.status.lineage;
  t.not(oldServed.status.incarnation, firstIncarnation, 'a restored directory is a new incarnation');
  t.equal(old.new_incarnation, oldServed.status.incarnation);
  t.same(lineage, { parent_incarnation: firstIncarnation, backup_id: firstBackup.backup_id, to_time: new Date(t0).toISOString(), restored_at: lineage.restored_at }, 'admin.status shows where it came from');
  t.same(oldServed.list.lineage, lineage, 'and so does admin.backup.list');
  t.equal(oldServed.list.incarnation, oldServed.status.incarnation);

  const now = await second.call('admin.backup.restore', { to_time: Date.now(), target_dir: join(where.root, 'second-life') });
  t.equal(now.incarnation, secondIncarnation, "by default, the node's own history");
  t.equal(now.backup_id, secondBackup.backup_id);
  t.same((await served(where, join(where.root, 'second-life'))).ids, idsOf('two', 6400), 'the second life alone');

  const list = await second.call('admin.backup.list', {});
  t.equal(list.incarnation, secondIncarnation);
  t.same(list.lineage, null, 'a directory created empty has no lineage');
  t.same(
    list.backups.map((backup: any) => [backup.backup_id, backup.incarnation]),
    [
      [firstBackup.backup_id, firstIncarnation],
      [secondBackup.backup_id, secondIncarnation],
    ],
    'each backup lists its incarnation',
  );
  const histories = new Map(list.incarnations.map((entry: any) => [entry.incarnation, entry]));
  t.match(histories.get(firstIncarnation), { current: false, backups: 1, newest_backup: firstBackup.backup_id }, 'the earlier life is listed');
  t.ok(Date.parse((histories.get(firstIncarnation) as any).recovery_point) < firstEnd, 'with the recovery point of its own archive');
  t.match(histories.get(secondIncarnation), { current: true, backups: 1 });
  const walRoot = join(where.target, 'wal', where.nodeId);
  t.same(readdirSync(walRoot).sort(), [firstIncarnation, secondIncarnation].sort(), 'one archive directory per incarnation, nothing moved aside');
});

t.test('a new life behind the old archive: each history restores to its own records', async (t) => {
  const where = place(t);
  const first = await life(where);
  const firstIncarnation = await incarnationOf(first);
  await ingest(first, 'big', 0, 6000);
  await first.call('admin.backup.create', { kind: 'full' });
  await ingest(first, 'big', 6000, 300);
  await archiveRound(first);
  const firstEnd = await moment();
  await first.stop();

  rmSync(where.dataDir, { recursive: true, force: true });
  const second = await life(where);
  t.teardown(() => second.stop());
  const secondBackup = await second.call('admin.backup.create', { kind: 'full' });
  await ingest(second, 'small', 0, 600);
  // The new life's seqs are far behind the old archive's: the old code moved the old chunks aside here.
  await archiveRound(second);
  const chunksOf = (incarnation: string) => readdirSync(join(where.target, 'wal', where.nodeId, incarnation)).filter((name) => /^\d+$/.test(name));
  t.equal(chunksOf(firstIncarnation).length, 3, "the first life's archive is where it was");

  const old = await second.call('admin.backup.restore', { to_time: firstEnd, incarnation: firstIncarnation, target_dir: join(where.root, 'big') });
  t.equal(old.ok, true, JSON.stringify(old.error ?? ''));
  t.equal(old.records, 6300);
  t.same((await served(where, join(where.root, 'big'))).ids, idsOf('big', 6300), 'the first life, whole');

  const mine = await second.call('admin.backup.restore', { to_time: Date.now(), target_dir: join(where.root, 'small') });
  t.equal(mine.backup_id, secondBackup.backup_id);
  t.equal(mine.replayed, 600, 'its own archive after its own (empty) backup');
  t.same((await served(where, join(where.root, 'small'))).ids, idsOf('small', 600), 'the second life, whole');

  const wrong = await second.call('admin.backup.restore', { backup_id: secondBackup.backup_id, incarnation: firstIncarnation, target_dir: join(where.root, 'wrong') });
  t.equal(wrong.error?.code, 'E_VALIDATION');
  t.match(wrong.error?.message, /is of incarnation .*; a restore combines one history only/);
});

t.test('a restore taken before any archive round of the new life', async (t) => {
  const where = place(t);
  const first = await life(where);
  const firstIncarnation = await incarnationOf(first);
  await ingest(first, 'early', 0, 500);
  await first.call('admin.backup.create', { kind: 'full' });
  await ingest(first, 'early', 500, 100);
  await archiveRound(first);
  const firstEnd = await moment();
  await first.stop();

  // The new life archives nothing (wal_archive off): it never runs a round.
  rmSync(where.dataDir, { recursive: true, force: true });
  const second = await life(where, false);
  t.teardown(() => second.stop());
  await ingest(second, 'late', 0, 900);
  const base = await second.call('admin.backup.create', { kind: 'full' });
  await ingest(second, 'late', 900, 100);

  const old = await second.call('admin.backup.restore', { to_time: firstEnd, incarnation: firstIncarnation, target_dir: join(where.root, 'early') });
  t.equal(old.records, 600, 'the first life and its archive');
  t.same((await served(where, join(where.root, 'early'))).ids, idsOf('early', 600));

  const mine = await second.call('admin.backup.restore', { to_time: Date.now(), target_dir: join(where.root, 'late') });
  t.equal(mine.ok, true, JSON.stringify(mine.error ?? ''));
  t.equal(mine.backup_id, base.backup_id);
  t.equal(mine.replayed, 0, "no archived entry of another history is replayed into this one's");
  t.equal(mine.records, 900, 'the base backup alone');
  t.match(mine.notes.join(' '), /recovery point is unknown/, 'and the reply says the archive did not reach past it');
  t.same((await served(where, join(where.root, 'late'))).ids, idsOf('late', 900));
  const nodeJson = JSON.parse(readFileSync(join(where.root, 'late', 'node.json'), 'utf8'));
  t.equal(nodeJson.lineage.backup_id, base.backup_id, "node.json records the restored directory's lineage");
});

t.test('a data directory, backups and archive from before incarnations are the legacy incarnation', async (t) => {
  const where = place(t);
  // node.json as earlier builds wrote it: no incarnation.
  mkdirSync(where.dataDir, { recursive: true });
  writeFileSync(join(where.dataDir, 'node.json'), JSON.stringify({ node_id: where.nodeId, cluster_id: 'default', shards: 3, format_version: 2, created_at: '2026-11-01T00:00:00.000Z' }));
  const old = await life(where);
  t.teardown(() => old.stop());
  t.equal((await old.call('admin.status', {})).incarnation, 'legacy');
  await ingest(old, 'legacy', 0, 300);
  const backup = await old.call('admin.backup.create', { kind: 'full' });
  await ingest(old, 'legacy', 300, 30);
  await archiveRound(old);
  const end = await moment();
  // Manifests of earlier builds had no incarnation either; chunks had no header, and lived right under wal/<node>/.
  const manifestPath = join(where.target, 'backups', `${backup.backup_id}.json`);
  const { incarnation: _dropped, ...manifest } = JSON.parse(readFileSync(manifestPath, 'utf8'));
  writeFileSync(manifestPath, JSON.stringify(manifest));
  const walRoot = join(where.target, 'wal', where.nodeId);
  t.ok(readdirSync(walRoot).includes('0') && readdirSync(walRoot).includes('archive.json'), 'the legacy archive is where earlier builds kept it');
  t.equal(readFileSync(join(walRoot, '0', readdirSync(join(walRoot, '0'))[0]!)).subarray(0, 4).toString('latin1') === 'UTWA', false, 'and its chunks have no header');
  t.same(JSON.parse(readFileSync(join(where.dataDir, 'node.json'), 'utf8')).incarnation, undefined, 'node.json is not rewritten');

  const listed = await old.call('admin.backup.list', {});
  t.equal(listed.backups[0].incarnation, 'legacy', 'a manifest without an incarnation is listed as legacy');
  const restored = await old.call('admin.backup.restore', { to_time: end, target_dir: join(where.root, 'restored') });
  t.equal(restored.ok, true, JSON.stringify(restored.error ?? ''));
  t.equal(restored.incarnation, 'legacy');
  t.equal(restored.records, 330, 'the legacy backup and the legacy archive after it');
  t.equal(restored.lineage.parent_incarnation, 'legacy');
  const after = await served(where, join(where.root, 'restored'));
  t.same(after.ids, idsOf('legacy', 330));
  t.match(after.status.incarnation, /^[0-9a-f]{16}$/, 'the restored directory is a new incarnation, not legacy');
});
