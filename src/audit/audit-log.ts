// The audit log: one record per life-cycle action (retention, backup,
// restore, migration), appended as a JSON line to
// `<data_dir>/audit/<YYYY-MM>.jsonl` and fdatasynced before `append`
// resolves. A month per file, so retention of audit logs (7 years by
// default) removes whole files. A torn last line (a crash mid-append) is
// skipped when read; every other line is whole.

import { join } from 'node:path';
import type { FileSystem } from '../ports/fs.js';
import { writeWhole } from '../storage/wal.js';

export const AUDIT_ACTORS = ['retention', 'backup', 'migration'] as const;
export type AuditActor = (typeof AUDIT_ACTORS)[number];

export interface AuditRecord {
  /** ISO 8601, UTC. */
  at: string;
  actor: AuditActor;
  /** What was done, such as `delete`, `backup.create`, `migration.apply`. */
  action: string;
  outcome: 'ok' | 'failed' | 'dry_run';
  /** What it touched: policy, shard, files, record counts, ids of backups, errors. */
  details: Record<string, unknown>;
}

/** Bound on one record's JSON, so a runaway detail cannot grow the log without limit. */
export const AUDIT_RECORD_BYTES_MAX = 64 * 1024;

const monthFile = (at: string) => `${at.slice(0, 7)}.jsonl`;

export class AuditLog {
  readonly dir: string;

  constructor(
    private readonly fs: FileSystem,
    dataDir: string,
  ) {
    this.dir = join(dataDir, 'audit');
  }

  /** Appends one record durably. A record over the bound keeps its head and says it was cut. */
  async append(record: Omit<AuditRecord, 'at'> & { at?: string }, now: number = Date.now()): Promise<AuditRecord> {
    const whole: AuditRecord = { at: record.at ?? new Date(now).toISOString(), actor: record.actor, action: record.action, outcome: record.outcome, details: record.details };
    let line = JSON.stringify(whole);
    if (Buffer.byteLength(line) > AUDIT_RECORD_BYTES_MAX) {
      line = JSON.stringify({ ...whole, details: { truncated: true, head: line.slice(0, AUDIT_RECORD_BYTES_MAX / 2) } });
    }
    await this.fs.mkdir(this.dir);
    const handle = await this.fs.open(join(this.dir, monthFile(whole.at)), 'append');
    try {
      await writeWhole(handle, new TextEncoder().encode(`${line}\n`));
      await handle.datasync();
    } finally {
      await handle.close();
    }
    return whole;
  }

  /** The month files, oldest first. */
  async files(): Promise<string[]> {
    if (!(await this.fs.exists(this.dir))) return [];
    return (await this.fs.readdir(this.dir)).filter((name) => /^\d{4}-\d{2}\.jsonl$/.test(name)).sort();
  }

  /** The newest records (at most `limit`), optionally of one actor, newest last. */
  async read(options: { actor?: AuditActor; limit: number }): Promise<AuditRecord[]> {
    const found: AuditRecord[] = [];
    for (const name of (await this.files()).reverse()) {
      const text = new TextDecoder().decode(await this.fs.readFile(join(this.dir, name)));
      const lines = text.split('\n').filter((line) => line.length > 0);
      for (const line of lines.reverse()) {
        let record: AuditRecord;
        try {
          record = JSON.parse(line) as AuditRecord;
        } catch {
          continue; // a torn last line
        }
        if (options.actor === undefined || record.actor === options.actor) found.push(record);
        if (found.length >= options.limit) return found.reverse();
      }
    }
    return found.reverse();
  }
}
