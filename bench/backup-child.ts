// Child process of the backup bench (issue 5): uses the library directly, in
// a fresh process, and prints one JSON line of timings. `node
// backup-child.js ROOT RECORDS USERS` does, all under ROOT (which the parent
// removes):
//
// 1. builds ROOT/data: RECORDS generated records over 30 days, written to
//    the node's default shard count with ShardStore and sealed at every day
//    boundary (one file per shard and day, more past 20k records), then
//    flushed to disk, untimed;
// 2. times `tar -cf` of ROOT/data, then fdatasync of the archive and of its
//    directory, beside a full backup (createBackup, which fsyncs every object
//    through writeFileAtomic);
// 3. seals new records into about 1% as many shard-days as there are sealed
//    files (one new file each), then times an incremental backup;
// 4. times `tar -xf` of the archive into a fresh directory plus fdatasync of
//    every file and fsync of every directory, beside restore() of the full
//    backup into another fresh one (materialise, open every shard, rename).
//
// Nothing is timed while earlier writes are still dirty in the page cache:
// the built directory is flushed file by file before step 2. The parent
// passes UV_THREADPOOL_SIZE (gzip and fs work run on the thread pool).

import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, open, readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { normalise } from '../actors/ingest.js';
import { createBackup } from '../src/backup/backup.js';
import { restore } from '../src/backup/restore.js';
import { BackupStore } from '../src/backup/store.js';
import { loadConfig } from '../src/config/load.js';
import { createGenerator } from '../src/demo/generate.js';
import { silentLogger } from '../src/log.js';
import { nodeFileSystem, type FileSystem } from '../src/ports/fs.js';
import { loadPriceTable, type PriceTable } from '../src/pricing/price-table.js';
import { incarnationOf, openDataDir, readNodeMeta, shardOf } from '../src/storage/node-meta.js';
import { SEALED_FILE_RECORDS_MAX, ShardStore, type NewRecord } from '../src/storage/shard-store.js';

const DAY_MS = 86_400_000;
const DAYS = 30;
/** Records written to the shards between two waits for their WAL writes. */
const WRITE_CHUNK_RECORDS = 10_000;
/** Share of sealed files the incremental backup finds new. */
const CHANGED_FILES_RATIO = 0.01;
const execFileAsync = promisify(execFile);
const log = (line: string) => process.stderr.write(`bench: backup: ${line}\n`);

export interface BackupChildReport {
  records: number;
  shards: number;
  sealedFiles: number;
  dataBytes: number;
  buildSeconds: number;
  tar: { seconds: number; bytes: number };
  full: { seconds: number; objects: number; bytes: number };
  incremental: { seconds: number; objects: number; bytes: number; newFiles: number };
  untar: { seconds: number };
  restore: { seconds: number; materialiseSeconds: number | undefined; records: number };
}

interface Built {
  stores: ShardStore[];
  users: number;
  prices: PriceTable | undefined;
  nodeId: string;
}

async function build(dataDir: string, total: number, users: number): Promise<Built> {
  const config = loadConfig({ text: '', env: { USAGE_TRACKER_NODE_ID: 'bench' } });
  const shards = config.cluster.shards;
  const nodeId = config.node.id;
  const priceFile = resolve(config.ingest.price_file);
  const prices = existsSync(priceFile) ? loadPriceTable(priceFile) : undefined;
  await openDataDir(nodeFileSystem, dataDir, { node_id: nodeId, cluster_id: config.cluster.id, shards }, Date.now());
  const stores = await Promise.all(
    Array.from({ length: shards }, (_, shard) =>
      ShardStore.open({
        dir: join(dataDir, 'shards', String(shard)),
        shard,
        nodeId,
        now: Date.now,
        fs: nodeFileSystem,
        // Building is not measured: the WAL is not synced, and everything is flushed before the first timing.
        fsync: false,
        log: silentLogger,
        memtableRecordsMax: Number.MAX_SAFE_INTEGER,
        cacheBytesMax: 1 << 20,
      }),
    ),
  );
  const fromMs = Math.floor(Date.now() / DAY_MS) * DAY_MS - DAYS * DAY_MS;
  const generator = createGenerator({ seed: 1, users, fromMs, days: DAYS, count: total, idPrefix: 'bk1' });
  let pending: NewRecord[][] = stores.map(() => []);
  let pendingRecords = 0;
  const flush = async () => {
    await Promise.all(stores.map((store, shard) => (pending[shard]!.length > 0 ? store.write(pending[shard]!).durable : undefined)));
    pending = stores.map(() => []);
    pendingRecords = 0;
  };
  const sealAll = () => Promise.all(stores.map((store) => store.seal()));
  let day = -1;
  const now = Date.now();
  for (let i = 0; i < total; i++) {
    const record = generator.next();
    const recordDay = Math.floor(record.ts / DAY_MS);
    if (recordDay !== day) {
      // Records come in time order: sealing at each day boundary gives one file per shard and day.
      await flush();
      await sealAll();
      day = recordDay;
    }
    pending[shardOf(record.user_id, shards)]!.push(normalise(record, prices, now));
    if (++pendingRecords >= WRITE_CHUNK_RECORDS) await flush();
    if ((i + 1) % 1_000_000 === 0) log(`built ${(i + 1).toLocaleString('en-US')} records`);
  }
  await flush();
  await sealAll();
  return { stores, users, prices, nodeId };
}

/**
 * Seals new records into `count` shard-days spread over the sealed files
 * (each becomes one new file of about the average size); returns how many
 * files the seals wrote.
 */
async function changeSealedFiles(built: Built, count: number, recordsPerFile: number): Promise<number> {
  const { stores } = built;
  const all = stores.flatMap((store, shard) => store.manifest.files.map((file) => ({ shard, day: file.day })));
  const now = Date.now();
  for (let k = 0; k < count; k++) {
    const { shard, day } = all[Math.floor(((k + 0.5) * all.length) / count)]!;
    const generator = createGenerator({ seed: 2, users: built.users, fromMs: Date.parse(day), days: 1, idPrefix: `bk2-${k}` });
    const records: NewRecord[] = [];
    // Users are spread over the shards by hash: keep the generated records that land on this one.
    for (let tries = 0; records.length < recordsPerFile && tries < recordsPerFile * stores.length * 4; tries++) {
      const record = generator.next();
      if (shardOf(record.user_id, stores.length) === shard) records.push(normalise(record, built.prices, now));
    }
    await stores[shard]!.write(records).durable;
  }
  let files = 0;
  for (const store of stores) files += (await store.seal()).files;
  return files;
}

/** Every regular file under dir, with its size. */
async function filesUnder(dir: string): Promise<{ files: string[]; dirs: string[]; bytes: number }> {
  const files: string[] = [];
  const dirs: string[] = [dir];
  let bytes = 0;
  for (let i = 0; i < dirs.length; i++) {
    for (const entry of await readdir(dirs[i]!, { withFileTypes: true })) {
      const path = join(dirs[i]!, entry.name);
      if (entry.isDirectory()) dirs.push(path);
      else if (entry.isFile()) {
        files.push(path);
        bytes += (await stat(path)).size;
      }
    }
  }
  return { files, dirs, bytes };
}

async function syncPath(path: string, datasync: boolean): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await (datasync ? handle.datasync() : handle.sync());
  } finally {
    await handle.close();
  }
}

/** fdatasync of every file, then fsync of every directory: what writeFileAtomic does for each file it writes. */
async function syncTree(dir: string): Promise<void> {
  const { files, dirs } = await filesUnder(dir);
  for (const file of files) await syncPath(file, true);
  for (const sub of dirs.reverse()) await syncPath(sub, false);
}

async function timed<T>(work: () => Promise<T>): Promise<{ seconds: number; result: T }> {
  const started = performance.now();
  const result = await work();
  return { seconds: (performance.now() - started) / 1000, result };
}

async function main(): Promise<void> {
  const [root, recordsText, usersText] = process.argv.slice(2) as [string, string, string];
  const total = Number(recordsText);
  const dataDir = join(root, 'data');
  const tarFile = join(root, 'data.tar');
  const fs = nodeFileSystem;

  log(`building ${total.toLocaleString('en-US')} records over ${DAYS} days with ShardStore (untimed)`);
  const builtIn = await timed(() => build(dataDir, total, Number(usersText)));
  const built = builtIn.result;
  await syncTree(dataDir);
  const { bytes: dataBytes } = await filesUnder(dataDir);
  const sealedFiles = built.stores.reduce((sum, store) => sum + store.manifest.files.length, 0);
  log(`built in ${builtIn.seconds.toFixed(1)} s: ${built.stores.length} shards, ${sealedFiles} sealed files, ${(dataBytes / 2 ** 20).toFixed(1)} MB`);

  log('tar -cf of the data directory, then fdatasync');
  const tar = await timed(async () => {
    await execFileAsync('tar', ['-cf', tarFile, '-C', dataDir, '.']);
    await syncPath(tarFile, true);
    await syncPath(root, false);
  });
  const tarBytes = (await stat(tarFile)).size;

  log('full backup');
  const store = new BackupStore(fs, join(root, 'backups'));
  const snapshot = (shard: number) => built.stores[shard]!.snapshot();
  const shards = built.stores.length;
  const full = await timed(() => createBackup({ store, fs, dataDir, shards, kind: 'full', now: Date.now(), snapshot }));

  const changed = Math.max(1, Math.round(sealedFiles * CHANGED_FILES_RATIO));
  const recordsPerFile = Math.min(SEALED_FILE_RECORDS_MAX, Math.max(1, Math.round(total / sealedFiles)));
  const newFiles = await changeSealedFiles(built, changed, recordsPerFile);
  await syncTree(dataDir);
  log(`incremental backup after ${newFiles} new sealed files (${recordsPerFile} records each)`);
  const incremental = await timed(() => createBackup({ store, fs, dataDir, shards, kind: 'incremental', now: Date.now(), snapshot }));
  for (const shardStore of built.stores) await shardStore.close();

  log('tar -xf into a fresh directory, then fdatasync of every file');
  const untarDir = join(root, 'untarred');
  const untar = await timed(async () => {
    await mkdir(untarDir);
    await execFileAsync('tar', ['-xf', tarFile, '-C', untarDir]);
    await syncTree(untarDir);
  });

  log(`restore of the full backup (${full.result.backup_id}) into a fresh directory`);
  const targetDir = join(root, 'restored');
  // The last fsync of the staging directory's root ends materialise(); the shards are opened and checked after it.
  let materialisedAt: number | undefined;
  const watched: FileSystem = {
    ...fs,
    syncDir: async (path) => {
      await fs.syncDir(path);
      if (/^\.restoring-[0-9a-f]+$/.test(path.slice(targetDir.length))) materialisedAt = performance.now();
    },
  };
  const incarnation = incarnationOf(await readNodeMeta(fs, dataDir));
  const restoreStarted = performance.now();
  const restored = await timed(() => restore(store, watched, { backupId: full.result.backup_id, targetDir }, silentLogger, incarnation));
  if (restored.result.records !== total) throw new Error(`restore found ${restored.result.records} records, not ${total}`);

  const report: BackupChildReport = {
    records: total,
    shards,
    sealedFiles,
    dataBytes,
    buildSeconds: builtIn.seconds,
    tar: { seconds: tar.seconds, bytes: tarBytes },
    full: { seconds: full.seconds, objects: full.result.objects_written, bytes: full.result.bytes_written },
    incremental: { seconds: incremental.seconds, objects: incremental.result.objects_written, bytes: incremental.result.bytes_written, newFiles },
    untar: { seconds: untar.seconds },
    restore: {
      seconds: restored.seconds,
      materialiseSeconds: materialisedAt === undefined ? undefined : (materialisedAt - restoreStarted) / 1000,
      records: restored.result.records,
    },
  };
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

await main();
