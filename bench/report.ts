// `npm run bench`: every benchmark of DESIGN §9 that exists so far, each
// beside a baseline measured in the same run, printed as one table.
// BENCH_SECONDS sets the measured time per row (default 3).
// BENCH_ONLY=kernel,pricing,ingest,dataset,restart,sync,backup picks groups
// (BENCH_ONLY=pricing runs the price lookup rows alone, with no services).
// BENCH_SYNC_RECORDS and BENCH_CHROMA_RECORDS size the mirrors' benches (200k, 20k);
// BENCH_RECORDS, BENCH_USERS and BENCH_RESTART_RECORDS size the dataset
// (5M, 10k, 1M by default); BENCH_BACKUP_RECORDS sizes the data directory
// the backup bench builds, backs up and restores (5M by default, over
// BENCH_USERS users). The servers under test run in child processes:
// BENCH_YAML replaces the ingest node's cluster.yml and BENCH_CHILD_FLAGS
// passes node flags to them (for example `--cpu-prof`).

import { arch, cpus, totalmem } from 'node:os';
import { backupBench } from './backup.js';
import { kernelBench } from './kernel.js';
import { pricingBench } from './pricing.js';
import { storageBench } from './storage.js';
import { chromaBench, syncBench } from './sync.js';
import { renderRows, type Row } from './measure.js';

const natsUrl = process.env.USAGE_TRACKER_NATS_URL ?? 'nats://127.0.0.1:4222';
const durationMs = Math.round(Number(process.env.BENCH_SECONDS ?? 3) * 1000);

const postgresUrl = process.env.USAGE_TRACKER_BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const only = new Set((process.env.BENCH_ONLY ?? 'kernel,pricing,ingest,dataset,restart,sync,backup').split(','));
const log = (line: string) => process.stderr.write(`bench: ${line}\n`);

const rows: Row[] = [];
log(`NATS ${natsUrl}, ${durationMs / 1000} s a row, ${cpus().length} cores ${arch()}, ${Math.round(totalmem() / 2 ** 30)} GiB, node ${process.version}`);
if (only.has('kernel')) rows.push(...(await kernelBench({ natsUrl, warmupMs: 1000, durationMs, concurrencies: [1, 64] })));
if (only.has('pricing')) rows.push(...(await pricingBench({ durationMs })));
if (only.has('ingest') || only.has('dataset') || only.has('restart')) {
  rows.push(
    ...(await storageBench({
      natsUrl,
      postgresUrl,
      durationMs,
      datasetRecords: Number(process.env.BENCH_RECORDS ?? 5_000_000),
      datasetUsers: Number(process.env.BENCH_USERS ?? 10_000),
      restartRecords: Number(process.env.BENCH_RESTART_RECORDS ?? 1_000_000),
      groups: only,
      log,
    })),
  );
}
if (only.has('sync')) {
  rows.push(...(await syncBench({ postgresUrl, records: Number(process.env.BENCH_SYNC_RECORDS ?? 200_000), durationMs, log })));
  rows.push(...(await chromaBench({ records: Number(process.env.BENCH_CHROMA_RECORDS ?? 20_000), log })));
}
if (only.has('backup')) {
  rows.push(...(await backupBench({ records: Number(process.env.BENCH_BACKUP_RECORDS ?? 5_000_000), users: Number(process.env.BENCH_USERS ?? 10_000), log })));
}
process.stdout.write(`${renderRows(rows)}\n`);
