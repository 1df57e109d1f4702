// The SyncActor's handling of rows written outside usage-tracker: a sweep
// finds them (the backend marks them), the configured strategy decides
// (src/sync/conflicts.ts), and the decision is carried out so that the
// mirror and local data converge: the local version written over the row,
// the edit taken in as a new local version (record.update, optimistic), the
// row removed, or the conflict parked for an admin. Every conflict, decided
// automatically or not, is recorded in the backend's sync_conflicts.

import { ProtocolError } from '../protocols/errors.js';
import { recordValidator, type StoredRecord, type UsageRecord } from '../protocols/record.js';
import { resolveConflict, type ConflictStrategy, type OutsideEdit, type PatchableValues, type Source } from '../src/sync/conflicts.js';
import type { ConflictRow, ConflictSink } from '../src/sync/sink.js';
import type { Logger } from '../src/log.js';
import type { ActorRef } from '../src/kernel/system.js';
import type { PartitionMessage, PartitionReply } from './partition.js';

/** Most outside edits handled in one sweep. */
const SWEEP_ROWS_MAX = 200;

export interface ConflictOptions {
  strategy: ConflictStrategy;
  priority: readonly Source[];
  partition: (shard: number) => ActorRef<PartitionMessage, PartitionReply>;
  shards: number;
  askTimeoutMs: number;
  log: Logger;
}

export interface SweepResult {
  resolved: number;
  parked: number;
}

export class ConflictResolver {
  private readonly validator = recordValidator();
  resolvedTotal = 0;
  parkedTotal = 0;
  failedTotal = 0;

  constructor(
    private readonly sink: ConflictSink,
    private readonly options: ConflictOptions,
  ) {}

  private async local(shard: number, id: string, userId: string): Promise<StoredRecord | undefined> {
    // A row whose shard was edited to one that does not exist has no local record.
    if (!Number.isInteger(shard) || shard < 0 || shard >= this.options.shards) return undefined;
    const reply = (await this.options.partition(shard).ask({ type: 'get', id, user_id: userId }, { timeoutMs: this.options.askTimeoutMs, caller: 'SyncActor (conflict)' })) as {
      record: StoredRecord | null;
    };
    return reply.record ?? undefined;
  }

  /**
   * Takes an edit's fields into local data as a new version, then writes
   * that version over the row (which makes it usage-tracker's again): the
   * change feed may already have offered the new version while the row was
   * still marked, and skipped it. False when the local record moved on
   * meanwhile.
   */
  private async takeRemote(local: StoredRecord, patch: Partial<UsageRecord>): Promise<boolean> {
    try {
      await this.options.partition(local.shard).ask(
        { type: 'update', id: local.id, user_id: local.user_id, expected_version: local.version, patch },
        { timeoutMs: this.options.askTimeoutMs, caller: 'SyncActor (conflict)' },
      );
    } catch (error) {
      if (error instanceof ProtocolError && error.code === 'E_CONFLICT') return false;
      throw error;
    }
    const fresh = await this.local(local.shard, local.id, local.user_id);
    if (fresh) await this.sink.repair(local.shard, [fresh]);
    return true;
  }

  /** Finds rows written outside usage-tracker and deals with each as the strategy says. */
  async sweep(): Promise<SweepResult> {
    const result: SweepResult = { resolved: 0, parked: 0 };
    for (const { edit, row } of await this.sink.outsideEdits(SWEEP_ROWS_MAX)) {
      try {
        const outcome = await this.handle(edit, row);
        if (outcome === 'resolved') result.resolved++;
        else if (outcome === 'parked') result.parked++;
      } catch (error) {
        // One row that cannot be dealt with must not hold up the others, nor the mirror.
        this.failedTotal++;
        this.options.log.warn({ err: error, shard: edit.shard, id: edit.id }, 'a row written outside usage-tracker could not be dealt with; retrying at the next sweep');
      }
    }
    this.resolvedTotal += result.resolved;
    this.parkedTotal += result.parked;
    return result;
  }

  /** Deals with one edit: resolved, parked, or left for the next sweep (the local record moved on meanwhile). */
  private async handle(edit: OutsideEdit, row: Record<string, unknown>): Promise<'resolved' | 'parked' | 'later'> {
    const local = await this.local(edit.shard, edit.id, edit.user_id);
    let resolution = resolveConflict(this.options.strategy, this.options.priority, local, edit);
    if (resolution.take === 'remote') {
      const checked = this.validator.validatePatch(resolution.patch);
      if (!checked.ok) resolution = { take: 'park', why: `the edit is not a valid record: ${checked.error.message}` };
    }
    const strategy = this.options.strategy;
    switch (resolution.take) {
      case 'local':
        await this.sink.repair(edit.shard, [local!]);
        break;
      case 'remove':
        await this.sink.remove(edit.shard, [edit.id]);
        break;
      case 'remote':
        if (!(await this.takeRemote(local!, resolution.patch))) return 'later';
        break;
      case 'park':
        await this.sink.recordConflict(edit.shard, edit.id, local, row, strategy, undefined);
        this.options.log.warn({ shard: edit.shard, id: edit.id, why: resolution.why }, 'a row written outside usage-tracker is parked for an admin');
        return 'parked';
    }
    await this.sink.recordConflict(edit.shard, edit.id, local, row, strategy, `${resolution.take}: ${resolution.why}`);
    this.options.log.info({ shard: edit.shard, id: edit.id, take: resolution.take, why: resolution.why }, 'a row written outside usage-tracker was resolved');
    return 'resolved';
  }

  list(open: boolean, limit: number): Promise<ConflictRow[]> {
    return this.sink.conflicts(open, limit);
  }

  /** An admin's decision on a parked conflict: keep the local version, or take the edit in. */
  async resolve(conflictId: number, take: 'local' | 'remote'): Promise<ConflictRow> {
    const conflict = await this.sink.conflict(conflictId);
    if (!conflict) throw new ProtocolError('E_NOT_FOUND', `no conflict ${conflictId}`, { field: 'conflict_id' });
    if (conflict.resolved_at !== null) throw new ProtocolError('E_CONFLICT', `conflict ${conflictId} was resolved at ${conflict.resolved_at} (${conflict.resolution})`);
    const userId = String(conflict.remote_record.user_id ?? conflict.local_record?.user_id ?? '');
    const local = await this.local(conflict.shard, conflict.id, userId);
    if (take === 'local') {
      if (local) await this.sink.repair(conflict.shard, [local]);
      else await this.sink.remove(conflict.shard, [conflict.id]);
    } else {
      if (!local) throw new ProtocolError('E_VALIDATION', `conflict ${conflictId}: the row has no local record to take it into; resolve it with take local`, { field: 'take' });
      const edit: OutsideEdit = { shard: conflict.shard, id: conflict.id, user_id: userId, fields: conflict.remote_record as PatchableValues, base: undefined, editedAt: Date.now() };
      const resolution = resolveConflict('source_priority', ['mirror', 'local'], local, edit);
      if (resolution.take === 'remote') {
        const checked = this.validator.validatePatch(resolution.patch);
        if (!checked.ok) throw new ProtocolError('E_VALIDATION', `conflict ${conflictId}: the edit is not a valid record (${checked.error.message}); resolve it with take local`, { field: 'take' });
        if (!(await this.takeRemote(local, checked.value))) throw new ProtocolError('E_CONFLICT', `record ${conflict.id} changed meanwhile; look at the conflict again`);
      } else {
        // The edit already equals the local version: the row only needs to be usage-tracker's again.
        await this.sink.repair(conflict.shard, [local]);
      }
    }
    await this.sink.markResolved(conflictId, `${take}: by an admin`);
    return (await this.sink.conflict(conflictId))!;
  }
}
