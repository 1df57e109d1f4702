// PartitionActor[k]: the single writer of shard k. It owns the shard's
// ShardStore; every read and write of the shard goes through its mailbox.
// Writes are answered `later`, once their WAL group is fdatasynced, so the
// mailbox keeps filling the next group meanwhile. A failed WAL write or
// fsync crashes the actor (never retried); its supervisor restarts it and
// the store recovers from disk.

import { ProtocolError } from '../protocols/errors.js';
import type { StoredRecord, UsageRecord } from '../protocols/record.js';
import type { AggregateQuery, RecordsQuery } from '../protocols/requests.js';
import { CrashWithReply, later, type ActorContext, type Behavior, type Later } from '../src/kernel/actor.js';
import type { ActorRef } from '../src/kernel/system.js';
import type { FileSystem } from '../src/ports/fs.js';
import { createAggregator, type AggregatePartial } from '../src/query/aggregate.js';
import { createShardPageSelection } from '../src/query/records.js';
import { ShardStore, type NewRecord, type WalPosition, type WriteResult } from '../src/storage/shard-store.js';
import { WalFailure } from '../src/storage/wal.js';
import { leafOf, ShardDigest } from '../src/sync/merkle.js';
import { runShardRetention, type ShardRetentionInput } from '../src/retention/shard-run.js';
import { dropShardUndo, hasShardUndo, restoreShardUndo, rewriteShard } from '../src/migration/shard-rewrite.js';

export type PartitionMessage =
  | { type: 'write'; records: NewRecord[] }
  | { type: 'get'; id: string; user_id: string }
  | { type: 'update'; id: string; user_id: string; expected_version: number; patch: Partial<UsageRecord> }
  | { type: 'aggregate'; query: AggregateQuery }
  | { type: 'records'; query: RecordsQuery }
  | { type: 'changes'; from_seq: number; limit: number }
  | { type: 'digest' }
  | { type: 'snapshot' }
  | { type: 'wal_since'; from?: WalPosition }
  | { type: 'wal_archived'; through_seq: number }
  | { type: 'bucket_records'; day: string; buckets: number[] }
  | { type: 'seal' }
  | { type: 'retention'; input: ShardRetentionInput }
  | { type: 'migrate_storage'; to: number; file_delay_ms?: number }
  | { type: 'migration_finish'; outcome: 'commit' | 'undo' }
  | { type: 'tick' }
  | { type: 'status' };

export type PartitionReply =
  | { results: WriteResult[] }
  | { record: StoredRecord | null }
  | { version: number }
  | { partial: AggregatePartial }
  | { records: StoredRecord[] }
  | { files: number; records: number }
  | Record<string, unknown>;

export interface PartitionOptions {
  shard: number;
  nodeId: string;
  dir: string;
  fs: FileSystem;
  fsync: boolean;
  memtableRecordsMax: number;
  cacheBytesMax: number;
  sealIntervalMs: number;
  /** Keep retired WAL segments until the archiver confirms them (backup.wal_archive). */
  walArchive: boolean;
  /** This actor's own ref, for timers that must go through the mailbox. */
  self?: () => ActorRef<PartitionMessage, PartitionReply>;
  /** Receives the shard's status function, for the node's status tree. */
  publishStatus?: (status: () => Record<string, unknown>) => void;
}

function walCrash(error: WalFailure, shard: number): CrashWithReply {
  const reason = error.code === 'ENOSPC' ? 'the disk is full' : `the write-ahead log failed (${error.code ?? error.message})`;
  const reply = new ProtocolError('E_UNAVAILABLE', `shard ${shard}: ${reason}; nothing in this write was acknowledged; the shard restarts`);
  return new CrashWithReply(reply.message, reply, { cause: error });
}

/** Runs a store call; a WalFailure it throws (the log broke earlier) becomes the actor's crash. */
function walGuard<T>(call: () => T, shard: number): T {
  try {
    return call();
  } catch (error) {
    throw error instanceof WalFailure ? walCrash(error, shard) : error;
  }
}

/** A WAL failure is fatal to the actor (never retried); the asker learns why, and that nothing was stored. */
function durableOrCrash<T>(durable: Promise<void>, value: T, shard: number): Promise<T> {
  return durable.then(
    () => value,
    (error: unknown) => {
      throw error instanceof WalFailure ? walCrash(error, shard) : error;
    },
  );
}

export async function partitionBehavior(options: PartitionOptions, ctx: ActorContext): Promise<Behavior<PartitionMessage, PartitionReply>> {
  const open = () =>
    ShardStore.open({
      dir: options.dir,
      shard: options.shard,
      nodeId: options.nodeId,
      now: () => ctx.clock.now(),
      fs: options.fs,
      fsync: options.fsync,
      log: ctx.log,
      memtableRecordsMax: options.memtableRecordsMax,
      cacheBytesMax: options.cacheBytesMax,
      walArchive: options.walArchive,
    });
  let store = await open();
  options.publishStatus?.(() => store.status());
  /**
   * While a migration has rewritten this shard and not yet committed or rolled
   * back (its undo exists), nothing seals: a rollback puts the old manifest back,
   * and a seal meanwhile would have trimmed WAL frames that manifest does not cover.
   */
  let migrationHold = await hasShardUndo(options.fs, options.dir);
  let sealDue = false;
  let sealTimer = ctx.clock.setTimer(options.sealIntervalMs, onSealTimer);
  function onSealTimer(): void {
    sealDue = true;
    sealTimer = ctx.clock.setTimer(options.sealIntervalMs, onSealTimer);
    // A shard without writes still seals on time: the timer asks through the mailbox.
    try {
      options.self?.().tell({ type: 'tick' });
    } catch {
      // A full mailbox means writes are arriving; they seal on their way in.
    }
  }
  /**
   * Seals when due. A failed seal (disk full, an I/O or fsync error) is not
   * retried on top of a state it may have half changed: the shard is
   * reopened from disk (the WAL still holds every record) and sealing waits
   * for the next interval.
   */
  const sealIfDue = async () => {
    if (store.health.state !== 'serving' || migrationHold) return;
    if (!store.needsSeal() && !(sealDue && store.memtable.size > 0)) return;
    sealDue = false;
    try {
      const sealed = await store.seal();
      ctx.log.info({ shard: options.shard, ...sealed }, 'sealed');
    } catch (error) {
      if (error instanceof WalFailure) throw walCrash(error, options.shard);
      ctx.log.error({ err: error, shard: options.shard }, 'sealing failed; reopening the shard from disk; the WAL still holds every record');
      await store.close().catch(() => undefined);
      store = await open();
    }
  };

  return {
    async receive(message): Promise<PartitionReply | Later<PartitionReply>> {
      switch (message.type) {
        case 'write': {
          await sealIfDue();
          const { results, durable } = walGuard(() => store.write(message.records), options.shard);
          return later(durableOrCrash(durable, { results }, options.shard));
        }
        case 'get':
          return { record: (await store.get(message.id, message.user_id)) ?? null };
        case 'update': {
          const { record, durable } = await store
            .update(message.id, message.user_id, message.expected_version, message.patch)
            .catch((error: unknown) => Promise.reject(error instanceof WalFailure ? walCrash(error, options.shard) : error));
          return later(durableOrCrash(durable, { version: record.version }, options.shard));
        }
        case 'aggregate': {
          const aggregator = createAggregator(message.query);
          store.aggregate(message.query, (record) => void aggregator.add(record));
          // Records retention rolled up answer through their rollup rows (src/retention/rollup.ts).
          store.aggregateRollups(message.query, (row) => void aggregator.addRollup(row));
          return { partial: aggregator.partial() };
        }
        case 'records': {
          const selection = createShardPageSelection(message.query);
          for await (const record of store.scan(message.query)) selection.add(record);
          return { records: selection.records() };
        }
        case 'changes':
          // Answered beside the writes: reading sealed files for a catching-up mirror must not hold up ingest.
          return later(
            store.changes(message.from_seq, message.limit).then(({ records, nextSeq, headSeq }) => ({ records, next_seq: nextSeq, head_seq: headSeq })),
          );
        case 'snapshot':
          // Awaited in the mailbox on purpose: no write, seal or WAL trim may run while the copy is taken.
          return store.snapshot();
        case 'wal_since':
          // In the mailbox, like a snapshot: no seal may retire a segment while it is read.
          return store.walSince(message.from);
        case 'wal_archived':
          return { removed: await store.walArchived(message.through_seq) };
        case 'digest':
          // Anti-entropy reads the whole shard: beside the writes, like the change feed.
          return later(shardDigest(store));
        case 'bucket_records':
          return later(bucketRecords(store, message.day, message.buckets));
        case 'seal':
          if (migrationHold) throw new ProtocolError('E_CONFLICT', `shard ${options.shard}: a migration holds sealing until it commits or rolls back`);
          return store.seal();
        case 'retention': {
          // In the mailbox: the plan is made and committed on a shard nothing else writes meanwhile (src/retention/shard-run.ts).
          if (migrationHold) throw new ProtocolError('E_CONFLICT', `shard ${options.shard}: a migration holds the shard until it commits or rolls back`);
          let outcome;
          try {
            outcome = await runShardRetention(store, message.input, ctx.log);
          } catch (error) {
            if (error instanceof WalFailure) throw walCrash(error, options.shard);
            if (!message.input.dry_run) {
              // Nothing was committed, or it was and the old files linger: either way the disk says which, so read it again.
              await store.close().catch(() => undefined);
              store = await open();
            }
            throw error;
          }
          if (outcome.committed) {
            await store.close();
            store = await open();
          }
          return { ...outcome };
        }
        case 'migrate_storage': {
          // In the mailbox: nothing else touches the shard while its files are rewritten. The shard reopens on the new manifest.
          if (store.health.state !== 'serving') throw new ProtocolError('E_UNAVAILABLE', `shard ${options.shard} refuses to serve: ${store.health.reason}`);
          // One rewrite per migration: a second, before the first commits or rolls back, would find its undo and crash the shard.
          if (migrationHold) throw new ProtocolError('E_CONFLICT', `shard ${options.shard}: a migration holds the shard until it commits or rolls back`);
          migrationHold = true;
          const { report } = await rewriteShard({
            fs: options.fs,
            dir: options.dir,
            shard: options.shard,
            manifest: store.manifest,
            to: message.to,
            ...(message.file_delay_ms !== undefined ? { fileDelayMs: message.file_delay_ms } : {}),
          });
          await store.close();
          store = await open();
          return { ...report, health: store.health.state, format_version: store.manifest.format_version };
        }
        case 'migration_finish': {
          if (message.outcome === 'commit') await dropShardUndo(options.fs, options.dir);
          else {
            await store.close();
            await restoreShardUndo(options.fs, options.dir);
            store = await open();
          }
          migrationHold = false;
          return { health: store.health.state, format_version: store.manifest.format_version };
        }
        case 'tick':
          await sealIfDue();
          return store.status();
        case 'status':
          return store.status();
        default:
          throw new ProtocolError('E_BAD_REQUEST', `unknown partition message ${(message as { type?: unknown }).type}`);
      }
    },
    async stopped() {
      sealTimer.cancel();
      await store.close();
    },
  };
}

/** The shard's anti-entropy tree over every current, durable record (src/sync/merkle.ts). */
async function shardDigest(store: ShardStore): Promise<{ digest: ReturnType<ShardDigest['toWire']> }> {
  const digest = new ShardDigest();
  for await (const record of store.scan({})) digest.add(record.id, record.version, record.ts);
  return { digest: digest.toWire() };
}

/** The current records of one UTC day whose ids fall in `buckets`. */
async function bucketRecords(store: ShardStore, day: string, buckets: number[]): Promise<{ records: StoredRecord[] }> {
  const from = Date.parse(`${day}T00:00:00.000Z`);
  if (Number.isNaN(from)) throw new ProtocolError('E_VALIDATION', `day ${day} is not a YYYY-MM-DD date`, { field: 'day' });
  const wanted = new Set(buckets);
  const records: StoredRecord[] = [];
  for await (const record of store.scan({ from, to: from + 86_400_000 })) if (wanted.has(leafOf(record.id, record.version).bucket)) records.push(record);
  return { records };
}
