// The migration runner behind the MigrationActor: apply and rollback of the
// registry's entries, with dry runs, progress and an audit record each.
//
// A run: pre-validation (the registry orders; a PostgreSQL mirror the plan
// needs is reachable; every shard serves; free disk for the rewrite; no
// other run), then an automatic full backup (if it fails, nothing is
// applied), then each action in order:
//
// - storage: the journal says running (src/migration/journal.ts); shard by
//   shard, the PartitionActor rewrites its files keeping an undo; node.json
//   gets the new format; post-validation (every shard serves at the new
//   format, the (id, version) digest of each shard's rewritten files is
//   unchanged, every listed file exists); commit (journal committed, undos
//   dropped). Any failure rolls the action back: every shard's undo put back
//   inside its actor, node.json put back, byte for byte.
// - postgres: migratePostgres in one transaction, or the entry's down SQL;
//   a failure leaves the schema as it was.
//
// Actions already finished when a later one fails stay done; the reply says
// which, and `migration rollback` undoes them.
//
// Test seam: `onStage(stage, progress)` is called as a run enters each stage
// and awaited before the stage's work, so a test can hold a run at a stage
// on a gate it opens (e.g. to see a second run refused while one rewrites).
// It can delay a run, never change it: what it throws is logged and ignored.

import { randomBytes } from 'node:crypto';
import { statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { ProtocolError } from '../../protocols/errors.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { Logger } from '../log.js';
import type { FileSystem } from '../ports/fs.js';
import type { ShardManifest } from '../storage/manifest.js';
import { STORAGE_FORMAT_VERSION, STORAGE_FORMATS_READ } from '../storage/manifest.js';
import { isSqlMigration, type Migration, type ShardStepReport, type StorageMigration } from './entries.js';
import { dropNodeJson, readJournal, removeJournal, restoreNodeJson, saveNodeJson, setNodeFormat, shardDir, writeJournal, type MigrationJournal } from './journal.js';
import { entryStates, planApply, planRollback, storageWork, type PlannedAction, type PostgresFacts, type ShardWork } from './plan.js';
import { applyPostgres, postgresApplied, rollbackPostgres, type PostgresTarget } from './postgres-steps.js';
import { orderMigrations } from './registry.js';
import { formatOf } from './shard-rewrite.js';
import type { SqlMigration } from '../sync/postgres-schema.js';

/** What the runner asks of a shard's PartitionActor. */
export type ShardAsk = (shard: number, message: { type: 'migrate_storage'; to: number; file_delay_ms?: number } | { type: 'migration_finish'; outcome: 'commit' | 'undo' } | { type: 'status' }) => Promise<Record<string, unknown>>;

export interface RunnerOptions {
  fs: FileSystem;
  dataDir: string;
  shards: number;
  registry: readonly Migration[];
  shard: ShardAsk;
  postgres: PostgresTarget | undefined;
  connectTimeoutMs: number;
  /** Takes the automatic full backup; resolves with its id. */
  backup: () => Promise<{ backup_id: string }>;
  audit: AuditLog;
  log: Logger;
  now: () => number;
  /** Free bytes on the data directory's filesystem (default: statfs). */
  freeBytes?: (path: string) => Promise<number>;
  /** Pause after each rewritten file (the crash test's fixture only). */
  fileDelayMs?: number;
  /** Called and awaited as a run enters each stage (tests only; see the header). */
  onStage?: StageHook;
}

export type Stage = 'pre_validation' | 'backup' | 'rewriting' | 'post_validation' | 'committing' | 'rolling_back' | 'postgres';

/** The test seam of the header: sees each stage a run enters, with a copy of its progress; may return a promise the run waits for. */
export type StageHook = (stage: Stage, progress: Readonly<Progress>) => void | Promise<void>;

export interface Progress {
  run_id: string;
  direction: 'apply' | 'rollback';
  migrations: string[];
  migration: string | null;
  stage: Stage;
  shard: number | null;
  shards: number;
  files_done: number;
  files_total: number;
  bytes_total: number;
  backup_id: string | null;
  started_at: string;
}

/** Room kept free beyond the rewritten bytes themselves. */
const DISK_MARGIN_BYTES = 64 * 2 ** 20;

const summaryOf = (migration: Migration) => ({ id: migration.id, description: migration.description, depends_on: migration.depends_on, targets: migration.targets, strategy: migration.strategy });

async function statfsFree(path: string): Promise<number> {
  const stats = await statfs(path);
  return stats.bavail * stats.bsize;
}

export class MigrationRunner {
  private running: Progress | undefined;
  private lastRun: Record<string, unknown> | undefined;
  private readonly ordered: Migration[];

  constructor(private readonly options: RunnerOptions) {
    this.ordered = orderMigrations(options.registry);
  }

  private async nodeFormat(): Promise<number> {
    const meta = JSON.parse(new TextDecoder().decode(await this.options.fs.readFile(join(this.options.dataDir, 'node.json')))) as { format_version: number };
    return meta.format_version;
  }

  private async postgresFacts(): Promise<PostgresFacts> {
    const target = this.options.postgres;
    if (!target) return { state: 'off' };
    const read = await postgresApplied(target, this.options.connectTimeoutMs);
    return 'error' in read ? { state: 'unreachable', error: read.error } : { state: 'reachable', schema: target.schema, applied: read.applied };
  }

  async status(): Promise<Record<string, unknown>> {
    const [nodeFormat, postgres, journal] = await Promise.all([this.nodeFormat(), this.postgresFacts(), readJournal(this.options.fs, this.options.dataDir)]);
    const states = entryStates(this.ordered, nodeFormat, postgres);
    const filesByFormat: Record<string, number> = {};
    for (let shard = 0; shard < this.options.shards; shard++) {
      const path = join(shardDir(this.options.dataDir, shard), 'metadata.json');
      if (!(await this.options.fs.exists(path))) continue;
      const manifest = JSON.parse(new TextDecoder().decode(await this.options.fs.readFile(path))) as ShardManifest;
      for (const entry of manifest.files) filesByFormat[formatOf(entry)] = (filesByFormat[formatOf(entry)] ?? 0) + 1;
    }
    const storagePending = this.ordered.filter((migration) => !isSqlMigration(migration) && states.get(migration.id) === 'pending').map((migration) => migration.id);
    const sql = this.ordered.filter(isSqlMigration);
    return {
      storage: { format_version: nodeFormat, current: STORAGE_FORMAT_VERSION, readable: STORAGE_FORMATS_READ, pending: storagePending, files_by_format: filesByFormat },
      postgres:
        postgres.state === 'reachable'
          ? { ...postgres, pending: sql.filter((migration) => states.get(migration.id) === 'pending').map((migration) => migration.id) }
          : postgres,
      registry: this.ordered.map((migration) => ({ ...summaryOf(migration), state: states.get(migration.id) })),
      running: this.running ? { ...this.running } : null,
      journal: journal ?? null,
      last_run: this.lastRun ?? null,
    };
  }

  /** The pending entries in order (the `plan` command). */
  async pending(): Promise<Record<string, unknown>> {
    const [nodeFormat, postgres] = await Promise.all([this.nodeFormat(), this.postgresFacts()]);
    const { actions, skipped } = planApply(this.ordered, entryStates(this.ordered, nodeFormat, postgres), undefined);
    return { steps: actions.map((action) => summaryOf(action.migration)), skipped };
  }

  /** Fails fast, before any await, when a run is under way: a second apply or rollback is E_CONFLICT. */
  private claim(direction: 'apply' | 'rollback'): Progress {
    if (this.running) {
      throw new ProtocolError('E_CONFLICT', `a migration ${this.running.direction} (run ${this.running.run_id}) is running, at ${this.running.stage}; wait for it (usage-tracker migration status)`);
    }
    this.running = {
      run_id: `${new Date(this.options.now()).toISOString().replace(/[-:.]/g, '')}-${randomBytes(3).toString('hex')}`,
      direction,
      migrations: [],
      migration: null,
      stage: 'pre_validation',
      shard: null,
      shards: this.options.shards,
      files_done: 0,
      files_total: 0,
      bytes_total: 0,
      backup_id: null,
      started_at: new Date(this.options.now()).toISOString(),
    };
    return this.running;
  }

  /** Starts an apply or a rollback; the promise settles when the run is over. Throws E_CONFLICT at once while another runs. */
  start(direction: 'apply' | 'rollback', request: { dry_run: boolean; target?: string | undefined }): Promise<Record<string, unknown>> {
    const progress = this.claim(direction);
    return this.run(progress, request).finally(() => {
      if (this.running === progress) this.running = undefined;
    });
  }

  /** Enters a stage: status shows it, then the onStage seam runs and is awaited. */
  private async enter(progress: Progress, stage: Stage): Promise<void> {
    progress.stage = stage;
    try {
      await this.options.onStage?.(stage, { ...progress });
    } catch (error) {
      this.options.log.error({ err: error, stage }, 'migration: the onStage hook threw; ignored');
    }
  }

  private async run(progress: Progress, request: { dry_run: boolean; target?: string | undefined }): Promise<Record<string, unknown>> {
    await this.enter(progress, 'pre_validation');
    const { direction } = progress;
    const action = `migration.${direction}`;
    const [nodeFormat, postgres] = await Promise.all([this.nodeFormat(), this.postgresFacts()]);
    const states = entryStates(this.ordered, nodeFormat, postgres);
    let planned: { actions: PlannedAction[]; skipped: { id: string; reason: string }[] };
    try {
      planned = direction === 'apply' ? planApply(this.ordered, states, request.target) : { actions: planRollback(this.ordered, states, request.target), skipped: [] };
    } catch (error) {
      await this.audit(action, 'failed', { run_id: progress.run_id, dry_run: request.dry_run, target: request.target ?? null, error: (error as Error).message });
      throw error;
    }
    const steps = await Promise.all(planned.actions.map(async (step) => this.describe(step)));
    progress.migrations = planned.actions.map((step) => step.id);
    progress.files_total = steps.reduce((sum, step) => sum + (step.files ?? 0), 0);
    progress.bytes_total = steps.reduce((sum, step) => sum + (step.bytes ?? 0), 0);
    const plan = { run_id: progress.run_id, direction, steps, skipped: planned.skipped, files: progress.files_total, bytes: progress.bytes_total };
    if (planned.actions.length === 0) {
      // A dry run that finds nothing is still a dry run: audited as one, and no backup is promised.
      await this.audit(action, request.dry_run ? 'dry_run' : 'ok', { ...plan, dry_run: request.dry_run, result: `nothing to ${direction}` });
      return { ...plan, dry_run: request.dry_run, done: [], note: `nothing to ${direction}: every migration in the plan is ${direction === 'apply' ? 'applied' : 'rolled back'}` };
    }
    try {
      await this.preValidate(planned.actions, postgres, progress.bytes_total);
    } catch (error) {
      await this.audit(action, 'failed', { ...plan, dry_run: request.dry_run, error: (error as Error).message });
      throw error;
    }
    if (request.dry_run) {
      await this.audit(action, 'dry_run', plan);
      return { ...plan, dry_run: true, backup: 'a full backup would be taken first', done: [] };
    }
    const started = this.options.now();
    await this.enter(progress, 'backup');
    let backupId: string;
    try {
      backupId = (await this.options.backup()).backup_id;
    } catch (error) {
      const message = `the automatic backup failed (${(error as Error).message}); nothing was ${direction === 'apply' ? 'applied' : 'rolled back'}`;
      await this.audit(action, 'failed', { ...plan, error: message });
      throw new ProtocolError('E_UNAVAILABLE', message, { cause: error });
    }
    progress.backup_id = backupId;
    const done: string[] = [];
    for (const step of planned.actions) {
      progress.migration = step.id;
      try {
        if (isSqlMigration(step.migration)) await this.runPostgres(progress, step.migration, direction);
        else await this.runStorage(progress, step.migration, direction);
      } catch (error) {
        const rolledBack = error instanceof StepFailed ? error.rolledBack : true;
        const message = `${step.id} failed: ${(error as Error).message}; ${rolledBack ? `rolled back, ${step.id} is as it was before` : 'the rollback failed too: restart the node, which rolls it back at start'}`;
        this.lastRun = { run_id: progress.run_id, direction, outcome: 'failed', failed: step.id, done, error: message, backup_id: backupId, at: new Date(this.options.now()).toISOString() };
        await this.audit(action, 'failed', { ...plan, backup_id: backupId, done, failed: step.id, rolled_back: rolledBack, error: message });
        throw new ProtocolError('E_INTERNAL', message, { cause: error, details: { failed: step.id, done, rolled_back: rolledBack, backup_id: backupId, run_id: progress.run_id } });
      }
      done.push(step.id);
    }
    const result = { ...plan, dry_run: false, backup_id: backupId, done, ms: this.options.now() - started };
    this.lastRun = { run_id: progress.run_id, direction, outcome: 'ok', done, backup_id: backupId, at: new Date(this.options.now()).toISOString() };
    await this.audit(action, 'ok', result);
    return result;
  }

  /** One step of a plan as the reply shows it; storage steps with their per-shard work. */
  private async describe(step: PlannedAction): Promise<Record<string, unknown> & { files?: number; bytes?: number }> {
    const base = { ...summaryOf(step.migration), direction: step.direction };
    if (isSqlMigration(step.migration)) return { ...base, sql: step.direction === 'apply' ? 'up' : 'down' };
    const to = step.direction === 'apply' ? step.migration.to_format : step.migration.from_format;
    const shards = await storageWork(this.options.fs, this.options.dataDir, this.options.shards, to);
    return { ...base, to_format: to, shards, files: shards.reduce((sum, shard) => sum + shard.files, 0), bytes: shards.reduce((sum, shard) => sum + shard.bytes, 0) };
  }

  private async preValidate(actions: readonly PlannedAction[], postgres: PostgresFacts, bytes: number): Promise<void> {
    if (actions.some((action) => isSqlMigration(action.migration)) && postgres.state !== 'reachable') {
      const why = postgres.state === 'off' ? 'no PostgreSQL mirror is configured' : `PostgreSQL is unreachable (${postgres.error})`;
      throw new ProtocolError('E_UNAVAILABLE', `pre-validation: the plan changes the PostgreSQL mirror but ${why}; nothing was changed`);
    }
    if (!actions.some((action) => !isSqlMigration(action.migration))) return;
    const journal = await readJournal(this.options.fs, this.options.dataDir);
    if (journal) throw new ProtocolError('E_CONFLICT', `pre-validation: the journal of run ${journal.run_id} is still ${journal.state}; restart the node to finish it`);
    for (let shard = 0; shard < this.options.shards; shard++) {
      const status = await this.options.shard(shard, { type: 'status' }).catch((error: unknown) => ({ health: 'unreachable', reason: (error as Error).message }));
      if (status.health !== 'serving') {
        throw new ProtocolError('E_UNAVAILABLE', `pre-validation: shard ${shard} does not serve (${String(status.health)}${status.reason ? `: ${String(status.reason)}` : ''}); nothing was changed`);
      }
    }
    const free = await (this.options.freeBytes ?? statfsFree)(this.options.dataDir);
    const needed = Math.ceil(bytes * 1.1) + DISK_MARGIN_BYTES;
    if (free < needed) {
      throw new ProtocolError('E_UNAVAILABLE', `pre-validation: ${free} bytes free under ${this.options.dataDir}, the rewrite needs about ${needed} (the old files stay until it commits); nothing was changed`);
    }
  }

  private async runPostgres(progress: Progress, migration: SqlMigration, direction: 'apply' | 'rollback'): Promise<void> {
    await this.enter(progress, 'postgres');
    progress.shard = null;
    const target = this.options.postgres!;
    if (direction === 'rollback') return rollbackPostgres(target, this.options.connectTimeoutMs, migration);
    const facts = await this.postgresFacts();
    const applied = facts.state === 'reachable' ? new Set(facts.applied) : new Set<string>();
    // migratePostgres applies every pending one it is given: only the applied ones and this one.
    const known = this.ordered.filter(isSqlMigration).filter((sql) => applied.has(sql.id) || sql.id === migration.id);
    await applyPostgres(target, this.options.connectTimeoutMs, known);
  }

  private async runStorage(progress: Progress, migration: StorageMigration, direction: 'apply' | 'rollback'): Promise<void> {
    const { fs, dataDir } = this.options;
    const from = direction === 'apply' ? migration.from_format : migration.to_format;
    const to = direction === 'apply' ? migration.to_format : migration.from_format;
    const journal: MigrationJournal = {
      run_id: progress.run_id,
      migration: migration.id,
      direction,
      from_format: from,
      to_format: to,
      state: 'running',
      started_at: new Date(this.options.now()).toISOString(),
      shards: this.options.shards,
      backup_id: progress.backup_id,
    };
    await saveNodeJson(fs, dataDir);
    await writeJournal(fs, dataDir, journal);
    this.options.log.info({ migration: migration.id, direction, run_id: progress.run_id }, 'migration: rewriting the shards');
    const rewrite = async (shard: number) =>
      (await this.options.shard(shard, { type: 'migrate_storage', to, ...(this.options.fileDelayMs !== undefined ? { file_delay_ms: this.options.fileDelayMs } : {}) })) as unknown as ShardStepReport;
    try {
      await this.enter(progress, 'rewriting');
      for (let shard = 0; shard < this.options.shards; shard++) {
        progress.shard = shard;
        const report = migration.shardStep ? await migration.shardStep(shard, rewrite) : await rewrite(shard);
        if (report.health !== 'serving') throw new Error(`shard ${shard} does not serve after its rewrite`);
        if (report.digest_before !== report.digest_after) throw new Error(`shard ${shard}: the rewritten files hold other (id, version) pairs (${report.digest_before} → ${report.digest_after})`);
        progress.files_done += report.files;
      }
      progress.shard = null;
      await setNodeFormat(fs, dataDir, to);
      await this.enter(progress, 'post_validation');
      await this.postValidate(to);
    } catch (error) {
      this.options.log.error({ err: error, migration: migration.id, direction }, 'migration failed; rolling it back');
      await this.enter(progress, 'rolling_back');
      const rolledBack = await this.undo(journal);
      await this.audit('migration.auto_rollback', rolledBack ? 'ok' : 'failed', { run_id: progress.run_id, migration: migration.id, direction, error: (error as Error).message });
      throw new StepFailed((error as Error).message, rolledBack, { cause: error });
    }
    await this.enter(progress, 'committing');
    await writeJournal(fs, dataDir, { ...journal, state: 'committed' });
    try {
      for (let shard = 0; shard < this.options.shards; shard++) await this.options.shard(shard, { type: 'migration_finish', outcome: 'commit' });
      await dropNodeJson(fs, dataDir);
      await removeJournal(fs, dataDir);
    } catch (error) {
      // Committed: the data is at the new format. What is left is clean-up, which the next start finishes (the journal says committed).
      this.options.log.error({ err: error, migration: migration.id }, 'MIGRATION: committed, but removing the undo failed; restart the node to finish the clean-up (sealing waits until then)');
    }
  }

  /** Every shard back at `to`, serving, its files present; node.json at `to`. */
  private async postValidate(to: number): Promise<void> {
    if ((await this.nodeFormat()) !== to) throw new Error(`post-validation: node.json is not at format ${to}`);
    for (let shard = 0; shard < this.options.shards; shard++) {
      const status = await this.options.shard(shard, { type: 'status' });
      if (status.health !== 'serving') throw new Error(`post-validation: shard ${shard} does not serve (${String(status.reason ?? status.health)})`);
      const dir = shardDir(this.options.dataDir, shard);
      const manifest = JSON.parse(new TextDecoder().decode(await this.options.fs.readFile(join(dir, 'metadata.json')))) as ShardManifest;
      if (manifest.format_version !== to) throw new Error(`post-validation: shard ${shard}'s manifest is at format ${manifest.format_version}, not ${to}`);
      for (const entry of manifest.files) {
        if (formatOf(entry) !== to) throw new Error(`post-validation: shard ${shard}: ${entry.name} is at format ${formatOf(entry)}`);
        if (!(await this.options.fs.exists(join(dir, 'partitions', entry.name)))) throw new Error(`post-validation: shard ${shard}: ${entry.name} is listed but missing`);
      }
    }
  }

  /** Rolls a storage action back while the node runs: each shard inside its actor, then node.json. False if any part failed. */
  private async undo(journal: MigrationJournal): Promise<boolean> {
    const { fs, dataDir } = this.options;
    let whole = true;
    try {
      await writeJournal(fs, dataDir, { ...journal, state: 'rolling_back' });
      for (let shard = 0; shard < this.options.shards; shard++) {
        try {
          const reply = await this.options.shard(shard, { type: 'migration_finish', outcome: 'undo' });
          if (reply.health !== 'serving') throw new Error(`shard ${shard} does not serve after its rollback`);
        } catch (error) {
          whole = false;
          this.options.log.error({ err: error, shard }, 'MIGRATION: rolling this shard back failed; the node rolls it back at its next start');
        }
      }
      if (!whole) return false;
      await restoreNodeJson(fs, dataDir);
      await removeJournal(fs, dataDir);
      return true;
    } catch (error) {
      this.options.log.error({ err: error }, 'MIGRATION: the rollback failed; the node rolls it back at its next start');
      return false;
    }
  }

  private async audit(action: string, outcome: 'ok' | 'failed' | 'dry_run', details: Record<string, unknown>): Promise<void> {
    await this.options.audit.append({ actor: 'migration', action, outcome, details }, this.options.now()).catch((error: unknown) => {
      this.options.log.error({ err: error, action }, 'could not write the audit record of a migration');
    });
  }
}

class StepFailed extends Error {
  override readonly name = 'StepFailed';
  constructor(
    message: string,
    readonly rolledBack: boolean,
    options: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export type { ShardWork };
