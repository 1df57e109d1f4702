// `usage-tracker backup create|list|verify|restore`: the BackupActor of a
// running node, over NATS (usage.v1.admin.backup.*). Each prints a short
// human summary, or the raw reply with --json.

import { renderTable } from '../../src/text-table.js';
import { parseTimeout, withClient, type ConnectionOptions } from '../client.js';

export interface BackupCommandOptions extends ConnectionOptions {
  timeout: string;
  json?: boolean;
}

interface Summary {
  backup_id: string;
  kind: string;
  parent: string | null;
  created_at: string;
  files: number;
  objects_written: number;
  bytes_written: number;
}

const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MB`;

async function call<T>(options: BackupCommandOptions, endpoint: 'admin.backup.create' | 'admin.backup.list' | 'admin.backup.verify' | 'admin.backup.restore', body: unknown): Promise<T> {
  const timeoutMs = parseTimeout(options.timeout);
  return withClient(options, timeoutMs, (client) => client.expect<T>(endpoint, body, timeoutMs));
}

export async function backupCreate(kind: string, options: BackupCommandOptions): Promise<string> {
  const reply = await call<Summary>(options, 'admin.backup.create', { kind });
  if (options.json) return `${JSON.stringify(reply, null, 2)}\n`;
  const parent = reply.parent ? ` on top of ${reply.parent}` : '';
  return `backup ${reply.backup_id} (${reply.kind}${parent}): ${reply.files} files, ${reply.objects_written} objects written (${mb(reply.bytes_written)})\n`;
}

export async function backupList(options: BackupCommandOptions): Promise<string> {
  const reply = await call<{ target_dir: string; backups: Summary[] }>(options, 'admin.backup.list', {});
  if (options.json) return `${JSON.stringify(reply, null, 2)}\n`;
  if (reply.backups.length === 0) return `no backups in ${reply.target_dir} yet (usage-tracker backup create)\n`;
  const table = renderTable(
    ['backup', 'kind', 'parent', 'created', 'files', 'written'],
    reply.backups.map((backup) => [backup.backup_id, backup.kind, backup.parent ?? '', backup.created_at, String(backup.files), mb(backup.bytes_written)]),
    ['left', 'left', 'left', 'left', 'right', 'right'],
  );
  return `backups in ${reply.target_dir}:\n\n${table}\n`;
}

export async function backupVerify(backupId: string, options: BackupCommandOptions): Promise<string> {
  const reply = await call<{ valid: boolean; objects: number; records: number; problems: string[] }>(options, 'admin.backup.verify', { backup_id: backupId });
  if (options.json) return `${JSON.stringify(reply, null, 2)}\n`;
  if (reply.valid) return `${backupId}: good: ${reply.objects} objects re-read, test restore serves ${reply.records.toLocaleString('en-US')} records\n`;
  process.exitCode = 1;
  return `${backupId}: DAMAGED, do not restore from it:\n${reply.problems.map((problem) => `  - ${problem}`).join('\n')}\n`;
}

export async function backupRestore(backupId: string, options: BackupCommandOptions & { target: string }): Promise<string> {
  const reply = await call<{ target_dir: string; records: number }>(options, 'admin.backup.restore', { backup_id: backupId, target_dir: options.target });
  if (options.json) return `${JSON.stringify(reply, null, 2)}\n`;
  return `${backupId} restored into ${reply.target_dir} (${reply.records.toLocaleString('en-US')} records, every shard opened and checked).\nStop the node, set node.data_dir to that directory (or move it into place), start the node, then resync the mirrors.\n`;
}
