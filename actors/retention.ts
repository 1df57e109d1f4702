// RetentionActor: applies the retention policies of cluster.yml, on a
// schedule (`retention.schedule_interval_hours`) and on demand
// (admin.retention.run). One run at a time: a second one while it runs is
// E_CONFLICT. A run:
//   1. retries the mirror deletions earlier runs still owe (pending.json);
//   2. asks each PartitionActor to plan and apply retention to its shard
//      (src/retention/shard-run.ts: the shard's single writer commits it);
//   3. records the ids a shard removed as pending for every mirror, then
//      asks the mirrors (through their SyncActors) to delete them; what a
//      mirror that is down could not take stays pending for the next run;
//   4. applies the other categories: audit month files, temp files, the
//      Chroma collections (analytics_insights_days); backups are the
//      BackupActor's (backups_days);
//   5. writes an audit record for every action, and for a dry run one with
//      outcome dry_run per shard and policy.
// A dry run changes nothing but the audit log.

import { randomBytes } from 'node:crypto';
import { ProtocolError, toProtocolError } from '../protocols/errors.js';
import { AuditLog } from '../src/audit/audit-log.js';
import { later, type ActorContext, type Behavior, type Later } from '../src/kernel/actor.js';
import type { ActorRef } from '../src/kernel/system.js';
import type { FileSystem } from '../src/ports/fs.js';
import type { TimerHandle } from '../src/ports/clock.js';
import { expiredAuditFiles, expiredTempFiles } from '../src/retention/categories.js';
import type { LegalHold, RetentionPolicy } from '../src/retention/config.js';
import { addPending, pendingCounts, RetentionFiles, type PendingDeletions } from '../src/retention/pending.js';
import { DAY_MS } from '../src/retention/plan.js';
import type { ShardRetentionOutcome, ShardRetentionResult } from '../src/retention/shard-run.js';
import type { PartitionMessage, PartitionReply } from './partition.js';
import type { SyncMessage } from './sync.js';
import type { Config } from '../src/config/schema.js';
import type { ActorSystem } from '../src/kernel/system.js';
import { effectivePolicies } from '../src/retention/config.js';
import { resolve } from 'node:path';

export type RetentionMessage = { type: 'run'; dry_run: boolean; trigger: 'admin' | 'schedule' } | { type: 'status' };

/** A mirror as retention sees it: its SyncActor deletes ids, and Chroma drops items by age. */
export interface RetentionMirror {
  backend: string;
  remove(shard: number, ids: string[]): Promise<void>;
  /** Drops items older than maxDays (or the collection's own, shorter, retention). */
  expire?(nowMs: number, maxDays: number): Promise<void>;
}

export interface RetentionSettings {
  policies: RetentionPolicy[];
  holds: LegalHold[];
  aggregatedMetricsDays: number;
  analyticsInsightsDays: number;
  auditLogsDays: number;
  backupsDays: number;
  tempDays: number;
  archiveDir: string;
  exportDir: string;
  /** 0: no schedule. */
  scheduleIntervalMs: number;
}

export interface RetentionOptions {
  fs: FileSystem;
  dataDir: string;
  shards: number;
  partition: (shard: number) => ActorRef<PartitionMessage, PartitionReply>;
  settings: RetentionSettings;
  mirrors: RetentionMirror[];
  /** Bound on one shard's retention. */
  shardTimeoutMs: number;
  self?: () => ActorRef<RetentionMessage, unknown>;
}

interface Progress {
  run_id: string;
  dry_run: boolean;
  started_at: string;
  shards_done: number;
  shards_total: number;
}

const TIMER_MS_MAX = 2 ** 31 - 1;
const compactTime = (ms: number) => new Date(ms).toISOString().replace(/[-:.]/g, '');

export function retentionBehavior(options: RetentionOptions, ctx: ActorContext): Behavior<RetentionMessage, unknown> {
  const { settings } = options;
  const audit = new AuditLog(options.fs, options.dataDir);
  const files = new RetentionFiles(options.fs, options.dataDir);
  const startedAt = ctx.clock.now();
  let running: Progress | undefined;
  let lastRun: Record<string, unknown> | undefined;
  let nextRunAt: number | undefined;
  let timer: TimerHandle | undefined;
  const record = (action: string, outcome: 'ok' | 'failed' | 'dry_run', details: Record<string, unknown>) =>
    audit.append({ actor: 'retention', action, outcome, details }, ctx.clock.now());

  const schedule = async () => {
    if (settings.scheduleIntervalMs <= 0) return;
    const state = await files.state().catch(() => ({ last_run_at: undefined }));
    // The first run of a new node waits one interval, so a restart never triggers a run by itself.
    nextRunAt = (state.last_run_at ?? startedAt) + settings.scheduleIntervalMs;
    timer?.cancel();
    // Timers hold at most 2^31 - 1 ms (about 24.8 days); a longer wait re-arms on the way.
    const waitMs = Math.min(TIMER_MS_MAX, Math.max(0, nextRunAt - ctx.clock.now()));
    timer = ctx.clock.setTimer(waitMs, () => {
      if (nextRunAt !== undefined && ctx.clock.now() < nextRunAt) {
        void schedule();
        return;
      }
      try {
        options.self?.().tell({ type: 'run', dry_run: false, trigger: 'schedule' });
      } catch (error) {
        ctx.log.warn({ err: error }, 'scheduled retention run could not be queued; trying at the next interval');
        void schedule();
      }
    });
  };
  void schedule().catch((error: unknown) => ctx.log.error({ err: error }, 'retention schedule failed'));

  const retryMirrors = async (pending: PendingDeletions): Promise<Record<string, unknown>> => {
    const report: Record<string, unknown> = {};
    for (const mirror of options.mirrors) {
      const shards = pending[mirror.backend];
      if (!shards) continue;
      let removed = 0;
      try {
        for (const [shard, ids] of Object.entries(shards)) {
          await mirror.remove(Number(shard), ids);
          removed += ids.length;
          delete shards[shard];
          await files.savePending(pending);
        }
        delete pending[mirror.backend];
        await files.savePending(pending);
        report[mirror.backend] = { removed, pending: 0 };
        if (removed > 0) await record('mirror_delete', 'ok', { backend: mirror.backend, records: removed });
      } catch (error) {
        const left = pendingCounts({ [mirror.backend]: shards })[mirror.backend] ?? 0;
        report[mirror.backend] = { removed, pending: left, error: (error as Error).message };
        await record('mirror_delete', 'failed', { backend: mirror.backend, records: removed, pending: left, error: (error as Error).message });
      }
    }
    // A backend no longer configured keeps its pending ids, shown in status.
    return report;
  };

  const run = async (dryRun: boolean, trigger: string): Promise<Record<string, unknown>> => {
    const now = ctx.clock.now();
    const runId = `${compactTime(now)}-${randomBytes(3).toString('hex')}`;
    running = { run_id: runId, dry_run: dryRun, started_at: new Date(now).toISOString(), shards_done: 0, shards_total: options.shards };
    const pending = await files.pending();
    const shards: ShardRetentionResult[] = [];
    let failed = 0;
    for (let shard = 0; shard < options.shards; shard++) {
      let outcome: ShardRetentionOutcome;
      try {
        outcome = (await options.partition(shard).ask(
          {
            type: 'retention',
            input: {
              run_id: runId,
              now,
              dry_run: dryRun,
              policies: settings.policies,
              holds: settings.holds,
              aggregated_metrics_days: settings.aggregatedMetricsDays,
              archive_dir: settings.archiveDir,
              export_dir: settings.exportDir,
            },
          },
          { timeoutMs: options.shardTimeoutMs, caller: 'RetentionActor (shard)' },
        )) as unknown as ShardRetentionOutcome;
      } catch (error) {
        failed++;
        const body = toProtocolError(error).toBody();
        shards.push({ shard, state: 'skipped', reason: `${body.code}: ${body.message}` } as ShardRetentionResult);
        await record('shard', 'failed', { run_id: runId, shard, error: body.message });
        running.shards_done++;
        continue;
      }
      const { result } = outcome;
      shards.push(result);
      if (outcome.committed && outcome.removed_ids.length > 0) {
        for (const mirror of options.mirrors) addPending(pending, mirror.backend, shard, outcome.removed_ids);
        await files.savePending(pending);
      }
      for (const policy of result.policies) {
        if (policy.records === 0 && policy.held === 0) continue;
        await record(policy.action, dryRun ? 'dry_run' : 'ok', {
          run_id: runId,
          trigger,
          policy: policy.name,
          type: policy.type,
          shard,
          records: policy.records,
          held: policy.held,
          holds: policy.holds,
          outputs: policy.outputs,
          files_dropped: result.files_dropped,
          files_rewritten: result.files_rewritten,
          files_compressed: result.files_compressed,
          rollups_written: result.rollups_written,
          rollups_dropped: result.rollups_dropped,
          records_removed: result.records_removed,
          records_rolled_up: result.records_rolled_up,
          records_archived: result.records_archived,
          records_exported: result.records_exported,
        });
      }
      if (result.rollups_dropped.length > 0 && result.policies.every((policy) => policy.action !== 'aggregate' || policy.records === 0)) {
        await record('aggregated_metrics', dryRun ? 'dry_run' : 'ok', { run_id: runId, shard, rollups_dropped: result.rollups_dropped });
      }
      running.shards_done++;
    }

    const categories: Record<string, unknown> = {};
    const auditFiles = await expiredAuditFiles(options.fs, options.dataDir, now, settings.auditLogsDays);
    const tempFiles = await expiredTempFiles(options.fs, options.dataDir, now, settings.tempDays);
    if (!dryRun) for (const path of [...auditFiles, ...tempFiles]) await options.fs.unlink(path);
    categories.audit_logs = { days: settings.auditLogsDays, files_removed: auditFiles };
    categories.temp = { days: settings.tempDays, files_removed: tempFiles };
    if (auditFiles.length > 0) await record('audit_logs', dryRun ? 'dry_run' : 'ok', { run_id: runId, files: auditFiles });
    if (tempFiles.length > 0) await record('temp', dryRun ? 'dry_run' : 'ok', { run_id: runId, files: tempFiles });
    categories.backups = { days: settings.backupsDays, handled_by: 'BackupActor' };
    const analyticsCutoff = now - settings.analyticsInsightsDays * DAY_MS;
    const analytics: Record<string, unknown> = { days: settings.analyticsInsightsDays, before: new Date(analyticsCutoff).toISOString() };
    for (const mirror of options.mirrors) {
      if (!mirror.expire || dryRun) continue;
      try {
        await mirror.expire(now, settings.analyticsInsightsDays);
        analytics[mirror.backend] = 'done';
        await record('analytics_insights', 'ok', { run_id: runId, backend: mirror.backend, before: analyticsCutoff });
      } catch (error) {
        analytics[mirror.backend] = `failed: ${(error as Error).message}`;
        await record('analytics_insights', 'failed', { run_id: runId, backend: mirror.backend, error: (error as Error).message });
      }
    }
    categories.analytics_insights = analytics;

    const mirrors = dryRun ? { pending: pendingCounts(pending) } : { ...(await retryMirrors(pending)), pending: pendingCounts(pending) };
    const totals = {
      records_removed: sum(shards, 'records_removed'),
      records_rolled_up: sum(shards, 'records_rolled_up'),
      records_archived: sum(shards, 'records_archived'),
      records_exported: sum(shards, 'records_exported'),
      files_dropped: shards.reduce((total, shard) => total + (shard.files_dropped?.length ?? 0), 0),
      files_rewritten: shards.reduce((total, shard) => total + (shard.files_rewritten?.length ?? 0), 0),
      files_compressed: shards.reduce((total, shard) => total + (shard.files_compressed?.length ?? 0), 0),
    };
    const reply = {
      run_id: runId,
      dry_run: dryRun,
      trigger,
      now: new Date(now).toISOString(),
      started_at: new Date(now).toISOString(),
      finished_at: new Date(ctx.clock.now()).toISOString(),
      policies: settings.policies,
      legal_holds: settings.holds.map((hold) => hold.id),
      shards,
      shards_failed: failed,
      totals,
      categories,
      mirrors,
    };
    await record('run', dryRun ? 'dry_run' : failed > 0 ? 'failed' : 'ok', { run_id: runId, trigger, ...totals, shards_failed: failed });
    if (!dryRun) {
      await files.saveState({ last_run_at: ctx.clock.now(), last_run_id: runId });
      await schedule();
    }
    lastRun = { run_id: runId, dry_run: dryRun, trigger, started_at: reply.started_at, finished_at: reply.finished_at, totals, shards_failed: failed };
    return reply;
  };

  const status = async () => {
    const pending = await files.pending();
    const state = await files.state();
    return {
      running: running ?? null,
      last_run: lastRun ?? (state.last_run_at !== undefined ? { run_id: state.last_run_id, finished_at: new Date(state.last_run_at).toISOString() } : null),
      next_run: nextRunAt !== undefined ? new Date(nextRunAt).toISOString() : null,
      schedule_interval_hours: settings.scheduleIntervalMs / 3_600_000,
      pending_mirror_deletions: pendingCounts(pending),
      legal_holds: settings.holds,
      policies: settings.policies,
      categories: {
        raw_usage: 'policies',
        aggregated_metrics_days: settings.aggregatedMetricsDays,
        analytics_insights_days: settings.analyticsInsightsDays,
        audit_logs_days: settings.auditLogsDays,
        temp_days: settings.tempDays,
        backups_days: { days: settings.backupsDays, handled_by: 'BackupActor' },
      },
      archive_dir: settings.archiveDir,
      export_dir: settings.exportDir,
    };
  };

  return {
    receive(message): unknown | Later<unknown> {
      switch (message.type) {
        case 'run': {
          if (running) {
            if (message.trigger === 'schedule') return { skipped: 'a run is in progress' };
            throw new ProtocolError('E_CONFLICT', `retention run ${running.run_id} is running (${running.shards_done}/${running.shards_total} shards); try again when it is done`);
          }
          return later(
            run(message.dry_run, message.trigger)
              .catch(async (error: unknown) => {
                ctx.log.warn({ err: error }, 'retention run failed');
                await record('run', 'failed', { error: (error as Error).message }).catch(() => undefined);
                if (message.trigger === 'schedule') await schedule().catch(() => undefined);
                throw error;
              })
              .finally(() => (running = undefined)),
          );
        }
        case 'status':
          return later(status());
        default:
          throw new ProtocolError('E_BAD_REQUEST', `unknown retention message ${(message as { type?: unknown }).type}`);
      }
    },
    stopped() {
      timer?.cancel();
    },
  };
}

function sum(shards: readonly ShardRetentionResult[], key: 'records_removed' | 'records_rolled_up' | 'records_archived' | 'records_exported'): number {
  return shards.reduce((total, shard) => total + (shard[key] ?? 0), 0);
}

/** The retention settings of a node's configuration, directories resolved. */
export function retentionSettings(config: Config): RetentionSettings {
  const retention = config.retention;
  return {
    policies: effectivePolicies(retention),
    holds: retention.legal_holds,
    aggregatedMetricsDays: retention.aggregated_metrics_days,
    analyticsInsightsDays: retention.analytics_insights_days,
    auditLogsDays: retention.audit_logs_days,
    backupsDays: retention.backups_days,
    tempDays: retention.temp_days,
    archiveDir: resolve(retention.archive_dir),
    exportDir: resolve(retention.export_dir),
    scheduleIntervalMs: retention.schedule_interval_hours * 3_600_000,
  };
}

/** Most ids in one deletion asked of a SyncActor. */
const MIRROR_IDS_PER_ASK = 10_000;

/** The configured mirrors, reached through their SyncActors (`<node>/sync/<backend>`). */
export function retentionMirrors(config: Config, system: ActorSystem, backends: readonly string[]): RetentionMirror[] {
  return backends.map((backend) => {
    const ref = system.ref<SyncMessage, unknown>(`${config.node.id}/sync/${backend}`);
    const options = { timeoutMs: 120_000, caller: `RetentionActor (${backend})` };
    return {
      backend,
      async remove(shard, ids) {
        for (let start = 0; start < ids.length; start += MIRROR_IDS_PER_ASK) await ref.ask({ type: 'remove', shard, ids: ids.slice(start, start + MIRROR_IDS_PER_ASK) }, options);
      },
      ...(backend === 'chroma'
        ? {
            async expire(nowMs: number, maxDays: number) {
              await ref.ask({ type: 'expire', now: nowMs, max_days: maxDays }, options);
            },
          }
        : {}),
    };
  });
}
