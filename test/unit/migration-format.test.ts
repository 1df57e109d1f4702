// Storage formats 1 and 2 are read, 0 and 3 refused (manifests, sealed file
// entries, node.json); a format-2 file must hold seq, updated_at and vv; a
// shard rewritten to format 2 and back reads the same records; and the plan
// a dry run shows (which entries, in which order, what is refused).

import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { STORAGE_0002, MIGRATIONS } from '../../src/migration/entries.js';
import { entryStates, planApply, planRollback, storageWork } from '../../src/migration/plan.js';
import { restoreShardUndo, rewriteShard } from '../../src/migration/shard-rewrite.js';
import { nodeFileSystem as fs } from '../../src/ports/fs.js';
import { readManifest, writeManifest } from '../../src/storage/manifest.js';
import { openDataDir } from '../../src/storage/node-meta.js';
import { readPartition, writePartition } from '../../src/storage/partition-file.js';
import { newRecord } from '../helpers/records.js';
import type { StoredRecord } from '../../protocols/record.js';

const tempDir = (t: { teardown(fn: () => void): void }) => {
  const dir = mkdtempSync(join(tmpdir(), 'usage-tracker-format-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
};

const stored = (n: number): StoredRecord => ({ ...newRecord(n), version: 1, shard: 0, seq: n + 1, updated_at: 5, vv: { a: 1 } }) as StoredRecord;

t.test('manifests at format 1 and 2 are read; 0, 3 and a file entry at 3 are refused', async (t) => {
  const dir = tempDir(t);
  for (const format of [1, 2]) {
    await writeManifest(fs, dir, { format_version: format, shard: 0, sealed_seq: 0, files: [] });
    t.equal((await readManifest(fs, dir, 0)).manifest.format_version, format);
  }
  for (const format of [0, 3]) {
    await writeManifest(fs, dir, { format_version: format, shard: 0, sealed_seq: 0, files: [] });
    await t.rejects(readManifest(fs, dir, 0), { name: 'ManifestError', message: new RegExp(`format version ${format}; this release reads 1 and 2`) });
  }
  const entry = { name: 'x.json.gz', day: '2026-01-01', records: 0, bytes: 0, sha256: '', min_seq: 0, max_seq: 0, min_ts: 0, max_ts: 0, format: 3 };
  await writeManifest(fs, dir, { format_version: 2, shard: 0, sealed_seq: 0, files: [entry] });
  await t.rejects(readManifest(fs, dir, 0), { name: 'ManifestError', message: /lists x\.json\.gz in format 3/ });
});

t.test('node.json at format 1 and 2 opens; 0 and 3 are refused; a new directory is at 2', async (t) => {
  const dir = tempDir(t);
  const wanted = { node_id: 'n', cluster_id: 'c', shards: 1 };
  t.equal((await openDataDir(fs, dir, wanted, 0)).format_version, 2);
  for (const format of [1, 2, 0, 3]) {
    writeFileSync(join(dir, 'node.json'), JSON.stringify({ ...wanted, format_version: format, created_at: 'x' }));
    if (format === 1 || format === 2) t.equal((await openDataDir(fs, dir, wanted, 0)).format_version, format);
    else await t.rejects(openDataDir(fs, dir, wanted, 0), { name: 'DataDirError', message: new RegExp(`storage format ${format}; this release reads formats 1 and 2`) });
  }
});

t.test('a format-2 file must hold seq, updated_at and vv; format 1 gets stand-ins', async (t) => {
  const dir = tempDir(t);
  const record = stored(1);
  const { seq: _seq, updated_at: _u, vv: _vv, ...early } = record;
  const entry1 = await writePartition(fs, dir, 'a.json.gz', '2026-01-01', [{ record: early as StoredRecord, seq: 9 }]);
  t.equal(entry1.format, undefined, 'format 1: no format in the entry');
  t.same((await readPartition(fs, dir, entry1))[0], { ...early, seq: 9, updated_at: early.ingested_at, vv: {} }, 'stand-ins filled');
  await t.rejects(readPartition(fs, dir, { ...entry1, format: 2 }), { name: 'PartitionCorrupt', message: /format 2 but record rec-1 lacks/ });
  const entry2 = await writePartition(fs, dir, 'b.json.gz', '2026-01-01', [{ record, seq: 2 }], 2);
  t.equal(entry2.format, 2);
  t.same((await readPartition(fs, dir, entry2))[0], record);
});

t.test('a shard rewritten to format 2 and back reads the same records; the undo restores the bytes', async (t) => {
  const dir = tempDir(t);
  const partitions = join(dir, 'partitions');
  await fs.mkdir(partitions);
  const records = Array.from({ length: 20 }, (_, n) => stored(n));
  const entry = await writePartition(fs, partitions, '2026-01-01_0001.json.gz', '2026-01-01', records.map((record) => ({ record, seq: record.seq })));
  await writeManifest(fs, dir, { format_version: 1, shard: 0, sealed_seq: 20, files: [entry] });
  const before = await fs.readFile(join(dir, 'metadata.json'));
  const up = await rewriteShard({ fs, dir, shard: 0, manifest: (await readManifest(fs, dir, 0)).manifest, to: 2 });
  t.equal(up.report.files, 1);
  t.equal(up.report.digest_before, up.report.digest_after);
  t.equal(up.manifest.files[0]!.name, '2026-01-01_0001.r1.json.gz');
  t.same(await readPartition(fs, partitions, up.manifest.files[0]!), records);
  t.equal(await restoreShardUndo(fs, dir), true, 'the undo puts the shard back');
  t.same(await fs.readFile(join(dir, 'metadata.json')), before, 'metadata.json byte-identical');
  t.same(await fs.readdir(partitions), ['2026-01-01_0001.json.gz'], 'only the old file is left');
});

t.test('the plan of a dry run: order, `to` with its dependencies, rollback refusals', async (t) => {
  const postgres = { state: 'reachable' as const, schema: 's', applied: ['0001_usage_records'] };
  const states = entryStates(MIGRATIONS, 1, postgres);
  t.same(Object.fromEntries(states), { '0001_usage_records': 'applied', 'storage-0002_explicit_versions': 'pending', '0002_outside_edits': 'pending' });
  t.same(planApply(MIGRATIONS, states).actions.map((action) => action.id), ['storage-0002_explicit_versions', '0002_outside_edits']);
  t.same(planApply(MIGRATIONS, states, 'storage-0002_explicit_versions').actions.map((action) => action.id), ['storage-0002_explicit_versions'], '`to` takes only it and its dependencies');
  t.throws(() => planApply(MIGRATIONS, states, 'nope'), { code: 'E_NOT_FOUND', field: 'to', message: /no migration nope/ });
  const off = entryStates(MIGRATIONS, 1, { state: 'off' });
  t.same(planApply(MIGRATIONS, off).skipped.map((step) => step.id), ['0001_usage_records', '0002_outside_edits']);

  const all = entryStates(MIGRATIONS, 2, { ...postgres, applied: ['0001_usage_records', '0002_outside_edits'] });
  t.same(planRollback(MIGRATIONS, all).map((action) => action.id), ['0002_outside_edits'], 'the newest applied first');
  t.throws(() => planRollback(MIGRATIONS, all, '0001_usage_records'), { code: 'E_VALIDATION', field: 'id', message: /cannot be rolled back: .*drop the schema/ });
  t.throws(() => planRollback(MIGRATIONS, entryStates(MIGRATIONS, 1, { state: 'off' })), { code: 'E_VALIDATION', message: /nothing to roll back/ });
  const chained = [...MIGRATIONS, { ...STORAGE_0002, id: 'storage-0003_next', depends_on: [STORAGE_0002.id], from_format: 2, to_format: 3 }];
  const chainedStates = entryStates(chained, 3, { state: 'off' });
  t.same(planRollback(chained, chainedStates, STORAGE_0002.id).map((action) => action.id), ['storage-0003_next', STORAGE_0002.id], 'what depends on it is rolled back first');
});

t.test('storageWork counts the files and bytes to rewrite per shard', async (t) => {
  const dir = tempDir(t);
  const shardDir = join(dir, 'shards', '0');
  await fs.mkdir(join(shardDir, 'partitions'));
  const entry = await writePartition(fs, join(shardDir, 'partitions'), 'a.json.gz', '2026-01-01', [{ record: stored(1), seq: 2 }]);
  await writeManifest(fs, shardDir, { format_version: 1, shard: 0, sealed_seq: 2, files: [entry] });
  t.same(await storageWork(fs, dir, 2, 2), [
    { shard: 0, manifest_format: 1, files: 1, bytes: entry.bytes },
    { shard: 1, manifest_format: 2, files: 0, bytes: 0 },
  ]);
  t.same(await storageWork(fs, dir, 1, 1), [{ shard: 0, manifest_format: 1, files: 0, bytes: 0 }]);
});
