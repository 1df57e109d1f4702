// What a SyncActor needs of a backend: connect (and prepare its schema),
// read its per-shard checkpoints, and apply a batch of one shard's changes
// together with the new checkpoint, idempotently. A sink never decides
// when to retry: it throws, and the actor backs off.

import type { StoredRecord } from '../../protocols/record.js';
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
