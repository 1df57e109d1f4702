// What a SyncActor needs of a backend: connect (and prepare its schema),
// read its per-shard checkpoints, and apply a batch of one shard's changes
// together with the new checkpoint, idempotently. A sink never decides
// when to retry: it throws, and the actor backs off.

import type { StoredRecord } from '../../protocols/record.js';
import type { OutsideEdit } from './conflicts.js';
import type { ShardDigest } from './merkle.js';

export interface SyncSink {
  /** `postgres` or `chroma`: the name in status and logs. */
  readonly backend: string;
  /** Opens connections and prepares the schema; throws when the backend is unreachable. */
  connect(): Promise<void>;
  /** The seq each shard has been applied up to, as stored in the backend itself. */
  checkpoints(): Promise<Map<number, number>>;
  /**
   * Applies `records` (current versions from the shard's change feed) and
   * moves the shard's checkpoint to `nextSeq`, so that a replay of the same
   * batch changes nothing. A record never overwrites a newer version.
   */
  apply(shard: number, records: readonly StoredRecord[], nextSeq: number): Promise<void>;
  /** Moves a shard's checkpoint (resync). */
  setCheckpoint(shard: number, seq: number): Promise<void>;
  close(): Promise<void>;
}

/** A sink that can be compared with local data and repaired (admin.sync.verify). */
export interface VerifiableSink extends SyncSink {
  /** The backend's anti-entropy tree of one shard (src/sync/merkle.ts). */
  digest(shard: number): Promise<ShardDigest>;
  /** Id to version of the backend's rows of one shard, UTC day and set of buckets. */
  versionsIn(shard: number, day: string, buckets: readonly number[]): Promise<Map<string, number>>;
  /** Writes records whatever the backend holds for them (a repair), without moving the checkpoint. */
  repair(shard: number, records: readonly StoredRecord[]): Promise<void>;
  /** Removes rows that local data does not have. */
  remove(shard: number, ids: readonly string[]): Promise<void>;
}

export function isVerifiable(sink: SyncSink): sink is VerifiableSink {
  return typeof (sink as Partial<VerifiableSink>).digest === 'function';
}

/** A conflict as kept in the backend (sync_conflicts): open until resolved. */
export interface ConflictRow {
  conflict_id: number;
  shard: number;
  id: string;
  local_version: number;
  local_record: Record<string, unknown> | null;
  remote_record: Record<string, unknown>;
  strategy: string;
  detected_at: string;
  resolved_at: string | null;
  resolution: string | null;
}

/** A sink that can tell rows written outside usage-tracker and keep a record of what was done about them. */
export interface ConflictSink extends VerifiableSink {
  /** Rows written outside usage-tracker that have no open conflict, oldest edit first, at most `limit`. */
  outsideEdits(limit: number): Promise<{ edit: OutsideEdit; row: Record<string, unknown> }[]>;
  /** Records a conflict: resolved now (`resolution`), or open for an admin (`resolution` undefined). */
  recordConflict(shard: number, id: string, local: StoredRecord | undefined, row: Record<string, unknown>, strategy: string, resolution: string | undefined): Promise<number>;
  conflicts(open: boolean, limit: number): Promise<ConflictRow[]>;
  conflict(conflictId: number): Promise<ConflictRow | undefined>;
  markResolved(conflictId: number, resolution: string): Promise<void>;
}

export function canResolveConflicts(sink: SyncSink): sink is ConflictSink {
  return typeof (sink as Partial<ConflictSink>).outsideEdits === 'function';
}
