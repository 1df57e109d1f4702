// The migration journal, `<data_dir>/migration/journal.json`: which storage
// migration is running and how far it got (running, committed,
// rolling_back), written atomically at each change of state. With it, the
// copy of node.json taken before the run (`migration/node.json.undo`) and
// each shard's undo (src/migration/shard-rewrite.ts), a node that starts
// after a crash finishes what was decided: a committed run is completed,
// anything else is rolled back, before any shard opens.
//
// Order of a run: node.json.undo, journal running, shard rewrites,
// node.json, journal committed, shard undos dropped, node.json.undo
// removed, journal removed. A rollback: journal rolling_back, shard undos
// restored, node.json put back, node.json.undo removed, journal removed.

import { join } from 'node:path';
import type { AuditLog } from '../audit/audit-log.js';
import type { Logger } from '../log.js';
import type { FileSystem } from '../ports/fs.js';
import { writeFileAtomic } from '../storage/atomic.js';
import { dropShardUndo, restoreShardUndo } from './shard-rewrite.js';

export const JOURNAL_STATES = ['running', 'committed', 'rolling_back'] as const;
export type JournalState = (typeof JOURNAL_STATES)[number];

export interface MigrationJournal {
  run_id: string;
  migration: string;
  direction: 'apply' | 'rollback';
  from_format: number;
  to_format: number;
  state: JournalState;
  started_at: string;
  shards: number;
  backup_id: string | null;
}

export const migrationDir = (dataDir: string) => join(dataDir, 'migration');
const journalPath = (dataDir: string) => join(migrationDir(dataDir), 'journal.json');
const nodeUndoPath = (dataDir: string) => join(migrationDir(dataDir), 'node.json.undo');
export const shardDir = (dataDir: string, shard: number) => join(dataDir, 'shards', String(shard));

export async function readJournal(fs: FileSystem, dataDir: string): Promise<MigrationJournal | undefined> {
  const path = journalPath(dataDir);
  if (!(await fs.exists(path))) return undefined;
  const journal = JSON.parse(new TextDecoder().decode(await fs.readFile(path))) as MigrationJournal;
  if (!JOURNAL_STATES.includes(journal.state)) throw new Error(`${path}: unknown state ${String(journal.state)}`);
  return journal;
}

export async function writeJournal(fs: FileSystem, dataDir: string, journal: MigrationJournal): Promise<void> {
  await fs.mkdir(migrationDir(dataDir));
  await writeFileAtomic(fs, journalPath(dataDir), new TextEncoder().encode(JSON.stringify(journal, null, 1)));
}

export async function removeJournal(fs: FileSystem, dataDir: string): Promise<void> {
  if (await fs.exists(journalPath(dataDir))) {
    await fs.unlink(journalPath(dataDir));
    await fs.syncDir(migrationDir(dataDir));
  }
}

/** Keeps node.json's bytes before a run changes it. */
export async function saveNodeJson(fs: FileSystem, dataDir: string): Promise<void> {
  await fs.mkdir(migrationDir(dataDir));
  await writeFileAtomic(fs, nodeUndoPath(dataDir), await fs.readFile(join(dataDir, 'node.json')));
}

/** Puts node.json back as it was before the run (if a copy was kept), then forgets the copy. */
export async function restoreNodeJson(fs: FileSystem, dataDir: string): Promise<void> {
  const saved = nodeUndoPath(dataDir);
  if (!(await fs.exists(saved))) return;
  await writeFileAtomic(fs, join(dataDir, 'node.json'), await fs.readFile(saved));
  await fs.unlink(saved);
  await fs.syncDir(migrationDir(dataDir));
}

export async function dropNodeJson(fs: FileSystem, dataDir: string): Promise<void> {
  if (await fs.exists(nodeUndoPath(dataDir))) {
    await fs.unlink(nodeUndoPath(dataDir));
    await fs.syncDir(migrationDir(dataDir));
  }
}

/** Sets node.json's format_version, atomically, keeping its other fields. */
export async function setNodeFormat(fs: FileSystem, dataDir: string, format: number): Promise<void> {
  const path = join(dataDir, 'node.json');
  const meta = JSON.parse(new TextDecoder().decode(await fs.readFile(path))) as Record<string, unknown>;
  meta.format_version = format;
  await writeFileAtomic(fs, path, new TextEncoder().encode(JSON.stringify(meta, null, 1)));
}

/** Rolls a storage run back on disk, shard by shard; every step may be repeated after a crash. No shard may be open. */
export async function rollBackOnDisk(fs: FileSystem, dataDir: string, journal: MigrationJournal): Promise<number[]> {
  await writeJournal(fs, dataDir, { ...journal, state: 'rolling_back' });
  const restored: number[] = [];
  for (let shard = 0; shard < journal.shards; shard++) if (await restoreShardUndo(fs, shardDir(dataDir, shard))) restored.push(shard);
  await restoreNodeJson(fs, dataDir);
  await removeJournal(fs, dataDir);
  return restored;
}

/** Completes a committed run on disk: the undos and the node.json copy go, then the journal. */
export async function completeOnDisk(fs: FileSystem, dataDir: string, journal: MigrationJournal): Promise<void> {
  for (let shard = 0; shard < journal.shards; shard++) await dropShardUndo(fs, shardDir(dataDir, shard));
  await dropNodeJson(fs, dataDir);
  await removeJournal(fs, dataDir);
}

/**
 * At node start, before any shard opens: a run a crash interrupted is
 * completed if its journal says committed, and rolled back otherwise. Said
 * loudly in the log and recorded in the audit log. Returns what was done.
 */
export async function recoverMigration(options: { fs: FileSystem; dataDir: string; shards: number; log: Logger; audit: AuditLog; now: number }): Promise<'none' | 'completed' | 'rolled_back'> {
  const { fs, dataDir, log } = options;
  const journal = await readJournal(fs, dataDir);
  if (!journal) {
    // A copy of node.json without a journal: the crash came before the run started; node.json never changed.
    await dropNodeJson(fs, dataDir);
    return 'none';
  }
  const what = `${journal.direction} of ${journal.migration} (format ${journal.from_format} → ${journal.to_format})`;
  if (journal.state === 'committed') {
    await completeOnDisk(fs, dataDir, journal);
    log.warn({ migration: journal.migration, run_id: journal.run_id }, `MIGRATION: the ${what} had committed when the node stopped; finished its clean-up`);
    await options.audit.append({ actor: 'migration', action: 'migration.recover', outcome: 'ok', details: { ...journal, result: 'completed' } }, options.now);
    return 'completed';
  }
  log.error(
    { migration: journal.migration, run_id: journal.run_id, state: journal.state },
    `MIGRATION: the ${what} was interrupted (${journal.state}); rolling it back before the shards open`,
  );
  const restored = await rollBackOnDisk(fs, dataDir, { ...journal, shards: Math.max(journal.shards, options.shards) });
  log.error({ migration: journal.migration, run_id: journal.run_id, shards_restored: restored }, `MIGRATION: the ${what} is rolled back; the data is as it was before it started`);
  await options.audit.append({ actor: 'migration', action: 'migration.recover', outcome: 'ok', details: { ...journal, result: 'rolled_back', shards_restored: restored } }, options.now);
  return 'rolled_back';
}
