// Mirror deletions retention still owes: `<data_dir>/retention/pending.json`,
// per backend and shard the ids removed locally that the mirror may still
// hold. Written atomically after a shard's removal is committed and before
// the mirror is asked, so a mirror that is down (or a crash) never loses a
// deletion: the next run retries every pending one. Also holds the run
// state of the schedule (`state.json`: when the last run finished).

import { join } from 'node:path';
import type { FileSystem } from '../ports/fs.js';
import { writeFileAtomic } from '../storage/atomic.js';

export type PendingDeletions = Record<string, Record<string, string[]>>;

export interface RetentionState {
  last_run_at?: number;
  last_run_id?: string;
}

async function readJson<T>(fs: FileSystem, path: string, empty: T): Promise<T> {
  if (!(await fs.exists(path))) return empty;
  return JSON.parse(new TextDecoder().decode(await fs.readFile(path))) as T;
}

export class RetentionFiles {
  readonly dir: string;

  constructor(
    private readonly fs: FileSystem,
    dataDir: string,
  ) {
    this.dir = join(dataDir, 'retention');
  }

  pending(): Promise<PendingDeletions> {
    return readJson(this.fs, join(this.dir, 'pending.json'), {});
  }

  async savePending(pending: PendingDeletions): Promise<void> {
    await this.fs.mkdir(this.dir);
    await writeFileAtomic(this.fs, join(this.dir, 'pending.json'), new TextEncoder().encode(JSON.stringify(pending)));
  }

  state(): Promise<RetentionState> {
    return readJson(this.fs, join(this.dir, 'state.json'), {});
  }

  async saveState(state: RetentionState): Promise<void> {
    await this.fs.mkdir(this.dir);
    await writeFileAtomic(this.fs, join(this.dir, 'state.json'), new TextEncoder().encode(JSON.stringify(state)));
  }
}

/** Adds ids to a backend's pending list of a shard, without repeats. */
export function addPending(pending: PendingDeletions, backend: string, shard: number, ids: readonly string[]): void {
  if (ids.length === 0) return;
  const shards = (pending[backend] ??= {});
  shards[String(shard)] = [...new Set([...(shards[String(shard)] ?? []), ...ids])];
}

/** Counts per backend, for status. */
export function pendingCounts(pending: PendingDeletions): Record<string, number> {
  return Object.fromEntries(Object.entries(pending).map(([backend, shards]) => [backend, Object.values(shards).reduce((sum, ids) => sum + ids.length, 0)]));
}
