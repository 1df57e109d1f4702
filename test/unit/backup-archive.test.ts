// The WAL archive and the backup schedule, on a real filesystem: chunks
// replay in order and a gap or a damaged chunk is refused by name; an
// archive round takes only new durable entries and frees retired
// segments; the schedule picks full or incremental; backup retention
// keeps what a restore within the window needs and removes the rest.
// Each of those is per incarnation of the data directory: a chunk names
// its incarnation, and another history's chunks or backups never count.

import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StoredRecord } from '../../protocols/record.js';
import { archiveRound } from '../../src/backup/archiver.js';
import { createBackup, verifyBackup } from '../../src/backup/backup.js';
import { dueBackup, keptBackups, pruneBackups } from '../../src/backup/prune.js';
import { BackupStore, type BackupManifest } from '../../src/backup/store.js';
import { WalArchive } from '../../src/backup/wal-archive.js';
import { silentLogger } from '../../src/log.js';
import { nodeFileSystem as fs } from '../../src/ports/fs.js';
import { ShardStore, type WalPosition } from '../../src/storage/shard-store.js';
import type { WalEntry } from '../../src/storage/wal.js';
import { newRecord } from '../helpers/records.js';

const DAY = 86_400_000;
const HOUR = 3_600_000;

function scratch(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'usage-tracker-archive-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const entry = (seq: number): WalEntry => ({
  seq,
  op: 'put',
  record: { ...newRecord(seq), version: 1, shard: 0, seq, updated_at: 1_000 + seq, vv: { n1: 1 } } as StoredRecord,
});
const range = (first: number, last: number) => Array.from({ length: last - first + 1 }, (_, i) => entry(first + i));

const INCARNATION = '0123456789abcdef';
const OTHER = 'fedcba9876543210';

t.test('chunks replay in order from any point; a gap or a damaged chunk is refused by name', async (t) => {
  const archive = new WalArchive(fs, scratch(t), 'n1', INCARNATION);
  await archive.append(0, range(1, 10));
  await archive.append(0, range(11, 25));
  t.equal(await archive.archivedSeq(0), 25);
  t.equal(await archive.archivedSeq(1), 0, 'a shard with nothing archived');
  const seen: number[] = [];
  t.same(await archive.replayAfter(0, 7, (e) => seen.push(e.seq)), { lastSeq: 25 });
  t.same(seen, range(8, 25).map((e) => e.seq), 'from after seq 7, each entry once, in order');

  await archive.append(0, range(30, 31));
  await t.rejects(archive.replayAfter(0, 20, () => undefined), /misses sequence numbers 26-29/);

  const chunk = (await archive.chunks(0))[1]!;
  const path = join(archive.shardDir(0), chunk.name);
  const bytes = readFileSync(path);
  bytes[bytes.length - 3] = bytes[bytes.length - 3]! ^ 0xff;
  writeFileSync(path, bytes);
  await t.rejects(archive.replayAfter(0, 0, () => undefined), /is damaged at byte/);

  t.equal(await archive.pruneThrough(0, 10), 1, 'a chunk wholly at or below the seq goes');
  t.same((await archive.chunks(0)).map((c) => c.first), [11, 30]);
  t.ok(await archive.supersede(0, Date.UTC(2026, 10, 26)), 'moved aside');
  t.equal(await archive.archivedSeq(0), 0, 'and the shard starts over');
});

t.test('an archive round takes only new durable entries and frees the retired segments it covers', async (t) => {
  const root = scratch(t);
  const store = await ShardStore.open({
    dir: join(root, 'shard'),
    shard: 0,
    nodeId: 'n1',
    now: () => Date.now(),
    fs,
    fsync: false,
    log: silentLogger,
    memtableRecordsMax: 1000,
    cacheBytesMax: 1 << 20,
    walArchive: true,
  });
  t.teardown(() => store.close());
  const write = async (from: number, count: number) => {
    const { durable } = store.write(Array.from({ length: count }, (_, i) => newRecord(from + i)));
    await durable;
  };
  const archive = new WalArchive(fs, join(root, 'target'), 'n1', INCARNATION);
  const source = {
    shards: 1,
    walSince: (_shard: number, from?: WalPosition) => store.walSince(from),
    walArchived: async (_shard: number, seq: number) => void (await store.walArchived(seq)),
    now: () => Date.now(),
    log: silentLogger,
  };
  const positions = new Map<number, WalPosition>();
  await write(0, 30);
  await store.seal();
  t.same(readdirSync(store.walPendingDir).length, 1, 'the seal retired its segment to wal-pending/');
  await write(30, 12);
  const first = await archiveRound(archive, source, undefined, positions);
  t.equal(first.entries, 42, 'every durable entry, from the retired segment and the live one');
  t.same(readdirSync(store.walPendingDir), [], 'the retired segment is gone once archived');
  const second = await archiveRound(archive, source, await archive.readState(), positions);
  t.equal(second.entries, 0, 'nothing twice');
  await write(42, 5);
  const third = await archiveRound(archive, source, await archive.readState(), positions);
  t.equal(third.entries, 5);
  const seqs: number[] = [];
  await archive.replayAfter(0, 0, (e) => seqs.push(e.seq));
  t.same(seqs, Array.from({ length: 47 }, (_, i) => i + 1), 'the archive holds seqs 1..47 with no gap');
  const state = await archive.readState();
  t.equal(state?.shards['0']?.archived_seq, 47);
});

const manifest = (id: string, kind: BackupManifest['kind'], completed: number, incarnation = INCARNATION): BackupManifest =>
  ({ backup_id: id, kind, incarnation, completed_at: new Date(completed).toISOString(), created_at: new Date(completed).toISOString(), shards: [] }) as unknown as BackupManifest;

t.test('the schedule takes a full backup when due, else an incremental one', async (t) => {
  const schedule = { fullIntervalMs: 7 * DAY, incrementalIntervalMs: DAY };
  const now = Date.UTC(2026, 10, 26);
  t.equal(dueBackup([], INCARNATION, now, schedule), 'full', 'no backup yet');
  t.equal(dueBackup([manifest('a', 'full', now - 8 * DAY)], INCARNATION, now, schedule), 'full', 'the newest full is older than a week');
  t.equal(dueBackup([manifest('a', 'full', now - 2 * DAY)], INCARNATION, now, schedule), 'incremental');
  t.equal(dueBackup([manifest('a', 'full', now - 2 * DAY), manifest('b', 'incremental', now - HOUR)], INCARNATION, now, schedule), undefined, 'nothing due');
  t.equal(dueBackup([manifest('a', 'full', now - HOUR, OTHER)], INCARNATION, now, schedule), 'full', "another incarnation's fresh backup does not stand in for this one's");
  t.equal(dueBackup([manifest('a', 'full', now - 2 * DAY, 'legacy')], 'legacy', now, schedule), 'incremental', 'backups from before incarnations are the legacy one');
});

t.test('backup retention keeps the window, the newest backup before it and the newest full', async (t) => {
  const now = Date.UTC(2026, 10, 26);
  const backups = [
    manifest('f1', 'full', now - 60 * DAY),
    manifest('i1', 'incremental', now - 50 * DAY),
    manifest('i2', 'incremental', now - 40 * DAY),
    manifest('i3', 'incremental', now - 10 * DAY),
    manifest('i4', 'incremental', now - DAY),
  ];
  t.same(keptBackups(backups, now, 30).map((b) => b.backup_id), ['f1', 'i2', 'i3', 'i4']);
  t.same(keptBackups(backups, now, 100).map((b) => b.backup_id), ['f1', 'i1', 'i2', 'i3', 'i4'], 'all within a long window');
  const lives = [manifest('old-f', 'full', now - 70 * DAY, OTHER), manifest('old-i', 'incremental', now - 65 * DAY, OTHER), manifest('new-f', 'full', now - 5 * DAY)];
  t.same(keptBackups(lives, now, 30).map((b) => b.backup_id), ['old-f', 'old-i', 'new-f'], 'an earlier life keeps its newest full and its newest backup before the window: the newer life does not push them out');
});

t.test('pruning removes old manifests and the objects only they named; the kept backups still restore', async (t) => {
  const root = scratch(t);
  const dataDir = join(root, 'data');
  const store = await ShardStore.open({ dir: join(dataDir, 'shards', '0'), shard: 0, nodeId: 'n1', now: () => Date.now(), fs, fsync: false, log: silentLogger, memtableRecordsMax: 1000, cacheBytesMax: 1 << 20 });
  t.teardown(() => store.close());
  writeFileSync(join(dataDir, 'node.json'), JSON.stringify({ node_id: 'n1', cluster_id: 'c', shards: 1, format_version: 1, created_at: '2026-01-01T00:00:00.000Z' }));
  const backups = new BackupStore(fs, join(root, 'target'));
  const now = Date.UTC(2026, 10, 26);
  const take = async (kind: 'full' | 'incremental', at: number, from: number) => {
    await store.write(Array.from({ length: 20 }, (_, i) => newRecord(from + i))).durable;
    await store.seal();
    return createBackup({ store: backups, fs, dataDir, shards: 1, kind, now: at, snapshot: () => store.snapshot() });
  };
  const old = await take('full', now - 90 * DAY, 0);
  await take('incremental', now - 80 * DAY, 100);
  const before = await take('incremental', now - 40 * DAY, 200);
  const recent = await take('incremental', now - DAY, 300);
  const objectsBefore = (await backups.objectHashes()).length;
  const report = await pruneBackups({ store: backups, archiveOf: (incarnation) => new WalArchive(fs, join(root, 'target'), 'n1', incarnation), incarnations: [], ownIncarnation: 'legacy', shards: 1 }, now, 30);
  t.equal(report.backups_removed.length, 1, 'one backup removed, and reported');
  t.same((await backups.list()).map((b) => b.backup_id), [old.backup_id, before.backup_id, recent.backup_id], 'the second incremental goes; the newest full and the newest before the window stay');
  t.ok(report.objects_removed >= 1 && (await backups.objectHashes()).length === objectsBefore - report.objects_removed, `${report.objects_removed} objects no kept backup names are removed`);
  for (const kept of [old, before, recent]) {
    const verified = await verifyBackup(backups, fs, kept.backup_id, silentLogger);
    t.equal(verified.valid, true, `${kept.backup_id} still verifies: ${verified.problems.join('; ')}`);
  }
});

t.test('a chunk names its incarnation: another history\'s chunk is refused by name, legacy chunks read as legacy', async (t) => {
  const target = scratch(t);
  const mine = new WalArchive(fs, target, 'n1', INCARNATION);
  const theirs = new WalArchive(fs, target, 'n1', OTHER);
  const legacy = new WalArchive(fs, target, 'n1', 'legacy');
  await mine.append(0, range(1, 5));
  await theirs.append(0, range(1, 8));
  await legacy.append(0, range(1, 3));
  t.not(mine.dir, theirs.dir, 'each incarnation has its own directory');
  t.same(await WalArchive.incarnations(fs, target, 'n1'), [INCARNATION, OTHER, 'legacy'].sort(), 'the target lists every history');
  const seen: number[] = [];
  await mine.replayAfter(0, 0, (e) => seen.push(e.seq));
  t.same(seen, [1, 2, 3, 4, 5], 'an incarnation replays its own entries only');
  const legacySeen: number[] = [];
  await legacy.replayAfter(0, 0, (e) => legacySeen.push(e.seq));
  t.same(legacySeen, [1, 2, 3], 'a legacy chunk (no header) reads as the legacy incarnation');
  const header = readFileSync(join(mine.shardDir(0), (await mine.chunks(0))[0]!.name)).subarray(0, 4).toString('latin1');
  t.equal(header, 'UTWA', 'a chunk starts with its header');

  // A chunk moved by hand into another history's directory is not replayed there.
  const stray = (await theirs.chunks(0))[0]!;
  writeFileSync(join(mine.shardDir(0), '0000000000000006-0000000000000008.wal'), readFileSync(join(theirs.shardDir(0), stray.name)));
  await t.rejects(mine.replayAfter(0, 0, () => undefined), new RegExp(`belongs to incarnation ${OTHER}, not ${INCARNATION}`));
  writeFileSync(join(mine.shardDir(0), '0000000000000006-0000000000000008.wal'), readFileSync(join(legacy.shardDir(0), (await legacy.chunks(0))[0]!.name)));
  await t.rejects(mine.replayAfter(0, 0, () => undefined), /belongs to incarnation legacy \(it has no header\)/);

  const damaged = join(theirs.shardDir(0), stray.name);
  const bytes = readFileSync(damaged);
  bytes[7] = bytes[7]! ^ 0x01;
  writeFileSync(damaged, bytes);
  await t.rejects(theirs.replayAfter(0, 0, () => undefined), /damaged header/, 'a flipped byte in the header is caught by its checksum');
  t.throws(() => new WalArchive(fs, target, 'n1', '../../etc'), /not an incarnation id/, 'an incarnation is never a path');
});

t.test('pruning drops the chunks of another incarnation with no backup left, and keeps the node\'s own', async (t) => {
  const target = scratch(t);
  const archiveOf = (incarnation: string) => new WalArchive(fs, target, 'n1', incarnation);
  await archiveOf(INCARNATION).append(0, range(1, 5));
  await archiveOf(OTHER).append(0, range(1, 8));
  const store = new BackupStore(fs, target);
  const report = await pruneBackups({ store, archiveOf, incarnations: await WalArchive.incarnations(fs, target, 'n1'), ownIncarnation: INCARNATION, shards: 1 }, Date.now(), 30);
  t.equal(report.wal_chunks_removed, 1, "the other history's chunk, which no backup can replay any more");
  t.equal((await archiveOf(INCARNATION).chunks(0)).length, 1, "the node's own chunks stay while it has no backup yet");
});

t.test('an incremental backup needs a full one of its own incarnation', async (t) => {
  const root = scratch(t);
  const dataDir = join(root, 'data');
  const shard = await ShardStore.open({ dir: join(dataDir, 'shards', '0'), shard: 0, nodeId: 'n1', now: () => Date.now(), fs, fsync: false, log: silentLogger, memtableRecordsMax: 1000, cacheBytesMax: 1 << 20 });
  t.teardown(() => shard.close());
  const nodeJson = (incarnation: string) => writeFileSync(join(dataDir, 'node.json'), JSON.stringify({ node_id: 'n1', cluster_id: 'c', shards: 1, format_version: 2, created_at: '2026-01-01T00:00:00.000Z', incarnation }));
  const backups = new BackupStore(fs, join(root, 'target'));
  const take = (kind: 'full' | 'incremental') => createBackup({ store: backups, fs, dataDir, shards: 1, kind, now: Date.now(), snapshot: () => shard.snapshot() });
  nodeJson(OTHER);
  const first = await take('full');
  t.equal(first.incarnation, OTHER, 'a backup carries the incarnation of the directory it was taken of');
  nodeJson(INCARNATION);
  await t.rejects(take('incremental'), new RegExp(`needs a full backup of this data directory \\(incarnation ${INCARNATION}\\)`));
  const full = await take('full');
  const incremental = await take('incremental');
  t.equal(incremental.parent, full.backup_id, 'its parent is of the same history');
});
