// Backup benches (issue 5), each beside a baseline measured in the same run
// on the same data (see backup-child.ts for what is built and timed):
// - a full backup's throughput vs `tar -cf` of the data directory, both
//   flushed to disk;
// - an incremental backup after ~1% of the sealed files are new vs the full
//   backup's time (the ratio is a time ratio: lower is better);
// - restoring the full backup vs `tar -xf` of the same data, both flushed.
// The work runs in a child process (a fresh heap, the library used
// directly); its temporary directory is removed here whatever happens.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BackupChildReport } from './backup-child.js';
import type { Measurement, Row } from './measure.js';

export interface BackupBenchOptions {
  records: number;
  users: number;
  log: (line: string) => void;
}

const MB = 2 ** 20;

/** A single timed run shown as a rate: only perSecond feeds the ratio column. */
const once = (perSecond: number): Measurement => ({ requests: 1, errors: 0, seconds: 0, perSecond, p50Ms: Number.NaN, p95Ms: Number.NaN, p99Ms: Number.NaN });

const count = (n: number) => Math.round(n).toLocaleString('en-US');

async function runChild(root: string, options: BackupBenchOptions): Promise<BackupChildReport> {
  const script = join(dirname(fileURLToPath(import.meta.url)), 'backup-child.js');
  const flags = (process.env.BENCH_CHILD_FLAGS ?? '').split(' ').filter(Boolean);
  const env = { ...process.env, UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? '16' };
  const child = spawn(process.execPath, [...flags, script, root, String(options.records), String(options.users)], { stdio: ['ignore', 'pipe', 'inherit'], env });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (exitCode) => resolve(exitCode));
  });
  const line = output.trim().split('\n').at(-1);
  if (code !== 0 || line === undefined || !line.startsWith('{')) throw new Error(`backup bench child exited with ${code}`);
  return JSON.parse(line) as BackupChildReport;
}

export async function backupBench(options: BackupBenchOptions): Promise<Row[]> {
  const root = mkdtempSync(join(tmpdir(), 'usage-tracker-bench-backup-'));
  options.log(`backup: ${count(options.records)} records in a child process under ${root}`);
  let report: BackupChildReport;
  try {
    report = await runChild(root, options);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  const { records, dataBytes } = report;
  const data = `${count(records)} records, ${report.shards} shards, ${report.sealedFiles} sealed files, ${(dataBytes / MB).toFixed(0)} MB`;
  // Both rates count the data directory's bytes, so the ratio is the ratio of times.
  const tar = once(dataBytes / MB / report.tar.seconds);
  const full = once(dataBytes / MB / report.full.seconds);
  const row = (name: string, load: string, measurement: Measurement, value: string, extra: Partial<Row> = {}): Row => ({
    group: 'backup',
    name,
    concurrency: load,
    measurement,
    value,
    ...extra,
  });
  // The incremental row's ratio is its time over the full backup's: both "rates" are seconds here.
  const incremental = report.incremental;
  const untar = once(records / report.untar.seconds);
  const restored = once(records / report.restore.seconds);
  const materialise = report.restore.materialiseSeconds;
  const split = materialise === undefined ? '' : `; files ${materialise.toFixed(1)} s, open + check ${(report.restore.seconds - materialise).toFixed(1)} s`;
  return [
    row(`tar -cf of the data directory + fdatasync (${data})`, '1', tar, `${tar.perSecond.toFixed(0)} MB/s (${report.tar.seconds.toFixed(2)} s)`),
    row(`full backup, every object fdatasynced before the manifest (${count(report.full.objects)} objects, ${(report.full.bytes / MB).toFixed(0)} MB written)`, '1', full, `${full.perSecond.toFixed(0)} MB/s (${report.full.seconds.toFixed(2)} s)`, {
      baseline: tar,
      target: '>= 0.5',
    }),
    row(
      `incremental backup, ${incremental.newFiles} new of ${report.sealedFiles + incremental.newFiles} sealed files (${count(incremental.objects)} objects, ${(incremental.bytes / MB).toFixed(1)} MB written); ratio = its time / the full's`,
      '1',
      once(incremental.seconds),
      `${incremental.seconds.toFixed(2)} s`,
      { baseline: once(report.full.seconds), target: 'time ratio: lower is better' },
    ),
    row(`tar -xf into a fresh directory + fdatasync of every file (${count(records)} records)`, '1', untar, `${count(untar.perSecond)} records/s (${report.untar.seconds.toFixed(2)} s)`),
    row(`restore the full backup into a fresh directory (${count(report.restore.records)} records${split})`, '1', restored, `${count(restored.perSecond)} records/s (${report.restore.seconds.toFixed(2)} s)`, {
      baseline: untar,
    }),
  ];
}
