// Retention of the categories that are not usage records:
// - audit logs (audit_logs_days): whole month files `<data_dir>/audit/<YYYY-MM>.jsonl`
//   whose month ended more than audit_logs_days ago;
// - temporary data (temp_days): the temp files of atomic writes
//   (`.<name>.tmp`) left by a crash in `<data_dir>/`, `audit/`, `retention/`,
//   and in each shard's directory, `partitions/` and `rollups/`, last modified
//   more than temp_days ago. Nothing else counts as temporary: a younger
//   temp file may belong to a write in progress, and the WAL, sealed files
//   and manifests are never temporary. (Recovery also removes a shard's temp
//   files at every open.)
// Both list first (a dry run stops there) and then remove.

import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { FileSystem } from '../ports/fs.js';
import { DAY_MS } from './plan.js';

const MONTH_FILE = /^(\d{4})-(\d{2})\.jsonl$/;

/** Audit month files that ended before now - days. */
export async function expiredAuditFiles(fs: FileSystem, dataDir: string, now: number, days: number): Promise<string[]> {
  const dir = join(dataDir, 'audit');
  if (!(await fs.exists(dir))) return [];
  const cutoff = now - days * DAY_MS;
  return (await fs.readdir(dir))
    .filter((name) => {
      const match = MONTH_FILE.exec(name);
      if (!match) return false;
      const monthEnd = Date.UTC(Number(match[1]), Number(match[2]), 1);
      return monthEnd <= cutoff;
    })
    .sort()
    .map((name) => join(dir, name));
}

/** Temp files of atomic writes older than now - days. */
export async function expiredTempFiles(fs: FileSystem, dataDir: string, now: number, days: number): Promise<string[]> {
  const dirs = [dataDir, join(dataDir, 'audit'), join(dataDir, 'retention')];
  const shardsDir = join(dataDir, 'shards');
  if (await fs.exists(shardsDir)) {
    for (const shard of await fs.readdir(shardsDir)) {
      if (!/^\d+$/.test(shard)) continue;
      dirs.push(join(shardsDir, shard), join(shardsDir, shard, 'partitions'), join(shardsDir, shard, 'rollups'));
    }
  }
  const cutoff = now - days * DAY_MS;
  const found: string[] = [];
  for (const dir of dirs) {
    if (!(await fs.exists(dir))) continue;
    for (const name of await fs.readdir(dir)) {
      if (!/^\..+\.tmp$/.test(name)) continue;
      const path = join(dir, name);
      const info = await stat(path).catch(() => undefined);
      if (info?.isFile() && info.mtimeMs < cutoff) found.push(path);
    }
  }
  return found.sort();
}
