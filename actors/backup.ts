// BackupActor: takes, lists, verifies and restores backups of this node's
// data directory into `backup.target_dir` (src/backup/), archives the WAL
// continuously for point-in-time restore, and takes scheduled backups.
//
// - One long job at a time (create, verify, restore, prune): a second one
//   while it runs is E_CONFLICT, not a queue that could grow without bound.
//   A scheduled backup that finds a job running waits for the next check.
// - Archive rounds run every `wal_archive_interval_s`, one at a time, beside
//   the jobs (a round only appends chunks; a backup only writes objects).
// - Every job writes an audit record (src/audit/audit-log.ts).
// - Backups, the archive and the schedule are of this data directory's
//   incarnation (node.json); a restore may choose another (an earlier life
//   of the directory), never combine two.
// - A refused job (a BackupError: the caller's to fix) is logged as one
//   line without a stack; anything else is logged whole.

import { ProtocolError } from '../protocols/errors.js';
import { later, type ActorContext, type Behavior, type Later } from '../src/kernel/actor.js';
import type { ActorRef } from '../src/kernel/system.js';
import type { FileSystem } from '../src/ports/fs.js';
import type { TimerHandle } from '../src/ports/clock.js';
import { AuditLog } from '../src/audit/audit-log.js';
import { archiveRound, type RoundReport } from '../src/backup/archiver.js';
import { createBackup, verifyBackup, type ShardSnapshot } from '../src/backup/backup.js';
import { dueBackup, pruneBackups } from '../src/backup/prune.js';
import { restore, type RestoreRequest } from '../src/backup/restore.js';
import { BackupError, BackupStore, incarnationOfBackup, refsOf, type BackupKind, type BackupManifest } from '../src/backup/store.js';
import { WalArchive, type ArchiveState } from '../src/backup/wal-archive.js';
import type { Lineage } from '../src/storage/node-meta.js';
import type { WalBytes, WalPosition } from '../src/storage/shard-store.js';
import type { PartitionMessage, PartitionReply } from './partition.js';

export type BackupMessage =
  | { type: 'create'; kind: BackupKind }
  | { type: 'list' }
  | { type: 'verify'; backup_id: string }
  | { type: 'restore'; request: RestoreRequest }
  | { type: 'archive' }
  | { type: 'schedule' };

export interface BackupOptions {
  fs: FileSystem;
  dataDir: string;
  targetDir: string;
  nodeId: string;
  /** The data directory's incarnation, and where it came from if restored (node.json). */
  incarnation: string;
  lineage?: Lineage | null;
  shards: number;
  partition: (shard: number) => ActorRef<PartitionMessage, PartitionReply>;
  /** Bound on one shard's snapshot. */
  snapshotTimeoutMs: number;
  /** Continuous WAL archiving every this many ms; absent: off. */
  walArchiveIntervalMs?: number;
  /** Scheduled backups; absent: off. */
  schedule?: { fullIntervalMs: number; incrementalIntervalMs: number; keepDays: number; checkIntervalMs: number };
  /** This actor's own ref, for timers that must go through the mailbox. */
  self?: () => ActorRef<BackupMessage, unknown>;
}

/** A backup as listed: the manifest without its per-file detail. */
function summaryOf(manifest: BackupManifest): Record<string, unknown> {
  return {
    backup_id: manifest.backup_id,
    kind: manifest.kind,
    incarnation: incarnationOfBackup(manifest),
    parent: manifest.parent,
    created_at: manifest.created_at,
    completed_at: manifest.completed_at ?? null,
    shards: manifest.shards.length,
    files: manifest.shards.reduce((sum, shard) => sum + refsOf(shard).length, 1),
    objects_written: manifest.objects_written,
    bytes_written: manifest.bytes_written,
    durable_seqs: manifest.shards.map((shard) => shard.durable_seq),
  };
}

/** BackupError (bad id, missing parent, damaged object, target exists) is the caller's to fix: E_VALIDATION or E_NOT_FOUND. */
function asProtocolError(error: unknown): never {
  if (error instanceof BackupError) throw new ProtocolError(error.notFound ? 'E_NOT_FOUND' : 'E_VALIDATION', error.message);
  throw error;
}

/** Every incarnation the target holds backups or an archive of, with what a restore could use. */
async function incarnationsOf(store: BackupStore, backups: readonly BackupManifest[], options: BackupOptions, ownState: ArchiveState | undefined) {
  const names = new Set([options.incarnation, ...backups.map(incarnationOfBackup), ...(await WalArchive.incarnations(options.fs, store.dir, options.nodeId))]);
  return Promise.all(
    [...names].sort().map(async (incarnation) => {
      const own = backups.filter((backup) => incarnationOfBackup(backup) === incarnation);
      const state = incarnation === options.incarnation ? ownState : await new WalArchive(options.fs, store.dir, options.nodeId, incarnation).readState().catch(() => undefined);
      return {
        incarnation,
        current: incarnation === options.incarnation,
        backups: own.length,
        oldest_backup: own[0]?.backup_id ?? null,
        newest_backup: own.at(-1)?.backup_id ?? null,
        recovery_point: recoveryPointOf(state),
      };
    }),
  );
}

/** The moment up to which every shard's acknowledged writes are archived. */
const recoveryPointOf = (state: ArchiveState | undefined): string | null => (state ? (Object.values(state.shards).map((shard) => shard.archived_at).sort()[0] ?? null) : null);

export function backupBehavior(options: BackupOptions, ctx: ActorContext): Behavior<BackupMessage, unknown> {
  const store = new BackupStore(options.fs, options.targetDir);
  const archiveOf = (incarnation: string) => new WalArchive(options.fs, options.targetDir, options.nodeId, incarnation);
  const archive = archiveOf(options.incarnation);
  const audit = new AuditLog(options.fs, options.dataDir);
  let running: string | undefined;
  let archiving: Promise<RoundReport | undefined> | undefined;
  /** Where each shard's last archive round stopped reading its WAL. */
  const positions = new Map<number, WalPosition>();
  let lastRound: { at: string; ok: boolean; error?: string; entries?: number } | undefined;
  /**
   * The archive's state as of `lastRound`: read once from archive.json, then
   * set together with lastRound when a round ends, so that a listing never
   * pairs a round's new recovery point (written to archive.json before the
   * round ends) with the status of the round before it.
   */
  let archived: Promise<ArchiveState | undefined> = archive.readState().catch(() => undefined);
  const timers = new Map<string, TimerHandle>();

  const record = (action: string, outcome: 'ok' | 'failed', details: Record<string, unknown>) =>
    audit.append({ actor: 'backup', action, outcome, details }, ctx.clock.now()).catch((error: unknown) => ctx.log.error({ err: error, action }, 'could not write the audit record'));

  const job = (name: string, action: string, work: () => Promise<Record<string, unknown>>): Later<unknown> => {
    if (running) throw new ProtocolError('E_CONFLICT', `${running} is running; try again when it is done`);
    running = name;
    const started = ctx.clock.monotonicMs();
    return later(
      work()
        .then(async (result) => {
          ctx.log.info({ job: name, ms: Math.round(ctx.clock.monotonicMs() - started), ...result }, 'backup job done');
          await record(action, 'ok', result);
          return result;
        })
        .catch(async (error: unknown) => {
          if (error instanceof BackupError) ctx.log.warn({ job: name, reason: error.message }, 'backup job refused');
          else ctx.log.warn({ job: name, err: error }, 'backup job failed');
          await record(action, 'failed', { job: name, error: (error as Error).message });
          return asProtocolError(error);
        })
        .finally(() => (running = undefined)),
    );
  };
  const snapshot = async (shard: number) =>
    (await options.partition(shard).ask({ type: 'snapshot' }, { timeoutMs: options.snapshotTimeoutMs, caller: 'BackupActor (snapshot)' })) as unknown as ShardSnapshot;
  const create = async (kind: BackupKind) =>
    summaryOf(await createBackup({ store, fs: options.fs, dataDir: options.dataDir, shards: options.shards, kind, now: ctx.clock.now(), clock: () => ctx.clock.now(), snapshot }));

  /** One archive round; rounds never overlap, and a failed one is retried at the next interval. */
  const archiveNow = (): Promise<RoundReport | undefined> => {
    if (archiving) return archiving;
    const ask = (shard: number, message: PartitionMessage) =>
      options.partition(shard).ask(message, { timeoutMs: options.snapshotTimeoutMs, caller: 'BackupActor (WAL archive)' }) as Promise<unknown>;
    archiving = (async () => {
      try {
        const report = await archiveRound(
          archive,
          {
            shards: options.shards,
            walSince: async (shard, from) => (await ask(shard, { type: 'wal_since', ...(from ? { from } : {}) })) as { segments: WalBytes[]; durableSeq: number },
            walArchived: async (shard, seq) => void (await ask(shard, { type: 'wal_archived', through_seq: seq })),
            now: () => ctx.clock.now(),
            log: ctx.log,
          },
          await archived,
          positions,
        );
        archived = Promise.resolve(report.state);
        lastRound = { at: new Date(ctx.clock.now()).toISOString(), ok: true, entries: report.entries };
        if (report.entries > 0) ctx.log.debug({ entries: report.entries, chunks: report.chunks }, 'WAL archived');
        return report;
      } catch (error) {
        lastRound = { at: new Date(ctx.clock.now()).toISOString(), ok: false, error: (error as Error).message };
        ctx.log.warn({ err: error }, 'WAL archive round failed; retried at the next interval; retired segments stay in wal-pending/ meanwhile');
        return undefined;
      } finally {
        archiving = undefined;
      }
    })();
    return archiving;
  };

  const every = (intervalMs: number, message: BackupMessage) => {
    const arm = () => {
      timers.set(
        message.type,
        ctx.clock.setTimer(intervalMs, () => {
          try {
            options.self?.().tell(message);
          } catch {
            // A full mailbox: the next interval tries again.
          }
          arm();
        }),
      );
    };
    arm();
  };
  if (options.walArchiveIntervalMs !== undefined && options.self) every(options.walArchiveIntervalMs, { type: 'archive' });
  if (options.schedule && options.self) every(options.schedule.checkIntervalMs, { type: 'schedule' });

  /** Takes the backup the schedule says is due, then prunes what backup retention no longer keeps. */
  const scheduled = async () => {
    const schedule = options.schedule!;
    const kind = dueBackup(await store.list(), options.incarnation, ctx.clock.now(), schedule);
    if (!kind || running) return;
    await archiveNow();
    await (job(`a scheduled ${kind} backup`, 'backup.create', async () => {
      const summary = await create(kind);
      const target = { store, archiveOf, incarnations: await WalArchive.incarnations(options.fs, options.targetDir, options.nodeId), ownIncarnation: options.incarnation, shards: options.shards };
      const pruned = await pruneBackups(target, ctx.clock.now(), schedule.keepDays);
      return { ...summary, scheduled: true, pruned };
    }).promise.catch(() => undefined));
  };

  return {
    receive(message): unknown | Later<unknown> {
      switch (message.type) {
        case 'create':
          return job(`a ${message.kind} backup`, 'backup.create', () => create(message.kind));
        case 'list':
          return later(
            (async () => {
              // One moment's pair: the state and the round that wrote it.
              const [state, round] = [await archived, lastRound];
              const backups = await store.list();
              return {
                target_dir: options.targetDir,
                incarnation: options.incarnation,
                lineage: options.lineage ?? null,
                backups: backups.map(summaryOf),
                incarnations: await incarnationsOf(store, backups, options, state),
                wal_archive: {
                  enabled: options.walArchiveIntervalMs !== undefined,
                  interval_s: options.walArchiveIntervalMs === undefined ? null : options.walArchiveIntervalMs / 1000,
                  incarnation: options.incarnation,
                  dir: archive.dir,
                  recovery_point: recoveryPointOf(state),
                  last_round: round ?? null,
                },
              };
            })().catch(asProtocolError),
          );
        case 'verify':
          return job(`verifying ${message.backup_id}`, 'backup.verify', async () => {
            const report = await verifyBackup(store, options.fs, message.backup_id, ctx.log);
            const manifest = await store.manifest(message.backup_id);
            // Separate from `valid`: the backup restores as it is even when the archive after it cannot replay.
            const walArchive = await new WalArchive(options.fs, options.targetDir, manifest.node.node_id, incarnationOfBackup(manifest)).checkAfter(manifest.shards);
            return { ...report, wal_archive: walArchive };
          });
        case 'restore': {
          const { request } = message;
          const what = request.toTime !== undefined ? `to ${new Date(request.toTime).toISOString()}` : (request.backupId ?? '');
          // A point-in-time restore first archives what is durable now, so "now" is restorable.
          return job(`restoring ${what}`, 'backup.restore', async () => {
            if (request.toTime !== undefined && options.walArchiveIntervalMs !== undefined) await archiveNow();
            return { ...(await restore(store, options.fs, request, ctx.log, options.incarnation, ctx.clock.now())) };
          });
        }
        case 'archive':
          return later(archiveNow().then((report) => ({ archived: report !== undefined, ...(report ?? { error: lastRound?.error }) })));
        case 'schedule':
          void scheduled().catch((error: unknown) => ctx.log.warn({ err: error }, 'scheduled backup check failed'));
          return { checked: true };
        default:
          throw new ProtocolError('E_BAD_REQUEST', `unknown backup message ${(message as { type?: unknown }).type}`);
      }
    },
    async stopped() {
      for (const timer of timers.values()) timer.cancel();
      await archiving;
    },
  };
}
