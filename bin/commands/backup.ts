// `usage-tracker backup create|list|verify|restore`: the BackupActor of a
// running node, over NATS (usage.v1.admin.backup.*). Each prints a short
// human summary, or the raw reply with --json. A path typed here (restore's
// --target) is made absolute against this process's working directory
// before it is sent, since the node may run anywhere.

import { resolve } from 'node:path';
import type { RestoreReport } from '../../src/backup/restore.js';
import type { Lineage } from '../../src/storage/node-meta.js';
import { renderTable } from '../../src/text-table.js';
import { parseTimeout, withClient, type ConnectionOptions } from '../client.js';

export interface BackupCommandOptions extends ConnectionOptions {
  timeout: string;
  json?: boolean;
}

interface Summary {
  backup_id: string;
  kind: string;
  incarnation: string;
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

interface ArchiveStatus {
  enabled: boolean;
  interval_s: number | null;
  recovery_point: string | null;
  last_round: { at: string; ok: boolean; error?: string } | null;
}

/** One line on the WAL archive: how far a point-in-time restore can reach, and whether archiving works. */
function archiveLine(archive: ArchiveStatus | undefined): string {
  if (!archive) return '';
  if (!archive.enabled) return 'WAL archive: off (backup.wal_archive); a restore reaches only the moment of a backup\n';
  const failing = archive.last_round && !archive.last_round.ok ? `; LAST ROUND FAILED at ${archive.last_round.at}: ${archive.last_round.error}` : '';
  return `WAL archive: every ${archive.interval_s} s; recovery point ${archive.recovery_point ?? 'none yet'}${failing}\n`;
}

interface History {
  incarnation: string;
  current: boolean;
  backups: number;
  oldest_backup: string | null;
  newest_backup: string | null;
  recovery_point: string | null;
}

interface ListReply {
  target_dir: string;
  incarnation: string;
  lineage: Lineage | null;
  backups: Summary[];
  incarnations: History[];
  wal_archive?: ArchiveStatus;
}

/** Which history this node's data directory is, and where a restored one came from. */
export function lineageLine(incarnation: string, lineage: Lineage | null): string {
  if (!lineage) return `this data directory: incarnation ${incarnation}`;
  const to = lineage.to_time ? ` as of ${lineage.to_time}` : '';
  const partial = lineage.partial ? ` (partial: ${Object.entries(lineage.partial).map(([key, value]) => `${key} ${value}`).join(', ')})` : '';
  return `this data directory: incarnation ${incarnation}, restored ${lineage.restored_at} from backup ${lineage.backup_id} of incarnation ${lineage.parent_incarnation}${to}${partial}`;
}

export async function backupList(options: BackupCommandOptions): Promise<string> {
  const reply = await call<ListReply>(options, 'admin.backup.list', {});
  if (options.json) return `${JSON.stringify(reply, null, 2)}\n`;
  const archive = archiveLine(reply.wal_archive);
  const identity = `${lineageLine(reply.incarnation, reply.lineage)}\n`;
  if (reply.backups.length === 0) return `no backups in ${reply.target_dir} yet (usage-tracker backup create)\n${identity}${archive}`;
  const several = new Set(reply.backups.map((backup) => backup.incarnation)).size > 1 || reply.backups.some((backup) => backup.incarnation !== reply.incarnation);
  const table = renderTable(
    ['backup', 'kind', ...(several ? ['incarnation'] : []), 'parent', 'created', 'files', 'written'],
    reply.backups.map((backup) => [backup.backup_id, backup.kind, ...(several ? [backup.incarnation] : []), backup.parent ?? '', backup.created_at, String(backup.files), mb(backup.bytes_written)]),
    ['left', 'left', ...(several ? (['left'] as const) : []), 'left', 'left', 'right', 'right'],
  );
  // Earlier lives of this directory (deleted and created again, or restored from): restorable with --incarnation.
  const others = reply.incarnations.filter((history) => !history.current && history.backups > 0);
  const histories =
    others.length === 0
      ? ''
      : `other histories of this node (restore one with --incarnation ID):\n${others.map((history) => `  ${history.incarnation}: ${history.backups} backup(s), ${history.oldest_backup} to ${history.newest_backup}; archive reaches ${history.recovery_point ?? 'nothing'}`).join('\n')}\n`;
  return `backups in ${reply.target_dir}:\n\n${table}\n${identity}${archive}${histories}`;
}

export async function backupVerify(backupId: string, options: BackupCommandOptions): Promise<string> {
  const reply = await call<{ valid: boolean; objects: number; records: number; problems: string[]; wal_archive?: { problems: string[] } }>(options, 'admin.backup.verify', { backup_id: backupId });
  if (options.json) return `${JSON.stringify(reply, null, 2)}\n`;
  const archive = reply.wal_archive;
  const archiveLine = !archive ? '' : archive.problems.length === 0 ? '  WAL archive after it: replays with no gap (point-in-time restore from it works)\n' : `  WAL archive after it: ${archive.problems.join('; ')}\n`;
  if (reply.valid) return `${backupId}: good: ${reply.objects} objects re-read, test restore serves ${reply.records.toLocaleString('en-US')} records\n${archiveLine}`;
  process.exitCode = 1;
  return `${backupId}: DAMAGED, do not restore from it:\n${reply.problems.map((problem) => `  - ${problem}`).join('\n')}\n`;
}

/** A time as typed: epoch ms digits stay a number, anything else goes as text for the server to parse and check. */
const timeArgument = (value: string | undefined) => (value === undefined ? undefined : /^\d+$/.test(value) ? Number(value) : value);

export interface RestoreCommandOptions extends BackupCommandOptions {
  target: string;
  incarnation?: string;
  toTime?: string;
  userId?: string;
  from?: string;
  to?: string;
}


export async function backupRestore(backupId: string | undefined, options: RestoreCommandOptions): Promise<string> {
  const body = Object.fromEntries(
    Object.entries({
      backup_id: backupId,
      // The node resolves a relative path against its own working directory: send the one the user means, here.
      target_dir: resolve(options.target),
      to_time: timeArgument(options.toTime),
      user_id: options.userId,
      from: timeArgument(options.from),
      to: timeArgument(options.to),
      incarnation: options.incarnation,
    }).filter(([, value]) => value !== undefined),
  );
  const reply = await call<RestoreReport>(options, 'admin.backup.restore', body);
  if (options.json) return `${JSON.stringify(reply, null, 2)}\n`;
  const lines = [`restored into ${reply.target_dir}: ${reply.records.toLocaleString('en-US')} records, every file checked against its SHA-256 and every shard's manifest and WAL read.`, `  base backup: ${reply.backup_id} (incarnation ${reply.incarnation})`, `  restored as: incarnation ${reply.new_incarnation}`];
  if (reply.to_time) lines.push(`  as of:       ${reply.to_time} (${(reply.replayed ?? 0).toLocaleString('en-US')} archived WAL entries replayed; archive reaches ${reply.recovery_point ?? 'an unknown point'})`);
  if (reply.partial) lines.push(`  only:        ${Object.entries(reply.partial).map(([key, value]) => `${key} ${value}`).join(', ')}`);
  for (const note of reply.notes) lines.push(`  NOTE: ${note}`);
  lines.push(
    reply.partial
      ? 'This directory holds only the selected records: serve it with a second node (its own data_dir and subject prefix) to read them; see docs/operations.md.'
      : 'Stop the node, set node.data_dir to that directory (or move it into place), start the node, then resync the mirrors.',
  );
  return `${lines.join('\n')}\n`;
}
