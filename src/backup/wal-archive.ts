// The WAL archive: every durable WAL entry of every shard, copied into the
// backup target within one archive interval of being acknowledged, so that
// a restore can replay a base backup forward to any moment (point in time).
//
//   <target>/wal/<node_id>/<shard>/<first seq>-<last seq>.wal   entries first..last, WAL frames
//   <target>/wal/<node_id>/archive.json                         per shard: archived seq, and when
//
// A chunk holds WAL frames exactly as a segment does (length, CRC32,
// entry), written through temp file, fsync and rename; its name says which
// sequence numbers it holds, and chunks of a shard follow each other with
// no gap. `archived_at` of a shard is a time at which every entry
// acknowledged before it was already in the archive: the recovery point.
// A data directory that is behind its archive (a node started on a
// restored directory) would write new entries under sequence numbers the
// archive already holds; its shard's chunks are moved aside first
// (`superseded-<time>/`), kept, never mixed with the new ones.

import { join } from 'node:path';
import type { FileSystem } from '../ports/fs.js';
import { writeFileAtomic } from '../storage/atomic.js';
import { encodeFrames, scanSegment, type WalEntry } from '../storage/wal.js';
import { BackupError } from './store.js';

const CHUNK = /^(\d{16})-(\d{16})\.wal$/;
const pad = (seq: number) => String(seq).padStart(16, '0');

export interface ChunkRef {
  name: string;
  first: number;
  last: number;
}

export interface ArchiveState {
  updated_at: string;
  shards: Record<string, { archived_seq: number; archived_at: string }>;
}

export class WalArchive {
  readonly dir: string;

  constructor(
    private readonly fs: FileSystem,
    targetDir: string,
    nodeId: string,
  ) {
    this.dir = join(targetDir, 'wal', nodeId);
  }

  shardDir(shard: number): string {
    return join(this.dir, String(shard));
  }

  /** A shard's chunks in sequence order. */
  async chunks(shard: number): Promise<ChunkRef[]> {
    const dir = this.shardDir(shard);
    if (!(await this.fs.exists(dir))) return [];
    const found: ChunkRef[] = [];
    for (const name of await this.fs.readdir(dir)) {
      const match = CHUNK.exec(name);
      if (match) found.push({ name, first: Number(match[1]), last: Number(match[2]) });
    }
    return found.sort((a, b) => a.first - b.first);
  }

  /** The highest sequence number archived for a shard (0: none). */
  async archivedSeq(shard: number): Promise<number> {
    return (await this.chunks(shard)).at(-1)?.last ?? 0;
  }

  /** Writes entries (in seq order, all after what is archived) as one chunk. */
  async append(shard: number, entries: readonly WalEntry[]): Promise<ChunkRef> {
    const first = entries[0]?.seq;
    const last = entries.at(-1)?.seq;
    if (first === undefined || last === undefined) throw new Error('an archive chunk needs at least one entry');
    const dir = this.shardDir(shard);
    await this.fs.mkdir(dir);
    const name = `${pad(first)}-${pad(last)}.wal`;
    await writeFileAtomic(this.fs, join(dir, name), encodeFrames(entries));
    return { name, first, last };
  }

  /** Moves a shard's chunks aside (kept, no longer replayed): its data directory started over behind them. */
  async supersede(shard: number, now: number): Promise<string | undefined> {
    const dir = this.shardDir(shard);
    if (!(await this.fs.exists(dir))) return undefined;
    const aside = join(this.dir, `${shard}.superseded-${new Date(now).toISOString().replace(/[-:.]/g, '')}`);
    await this.fs.rename(dir, aside);
    await this.fs.syncDir(this.dir);
    return aside;
  }

  async writeState(state: ArchiveState): Promise<void> {
    await this.fs.mkdir(this.dir);
    await writeFileAtomic(this.fs, join(this.dir, 'archive.json'), new TextEncoder().encode(JSON.stringify(state, null, 1)));
  }

  async readState(): Promise<ArchiveState | undefined> {
    const path = join(this.dir, 'archive.json');
    if (!(await this.fs.exists(path))) return undefined;
    try {
      return JSON.parse(new TextDecoder().decode(await this.fs.readFile(path))) as ArchiveState;
    } catch (error) {
      throw new BackupError(`${path} is not valid JSON; the archive's chunks are intact, but its recovery point is unknown until the next archive round`, { cause: error });
    }
  }

  /** A chunk's entries, checked whole: every frame valid, and the seqs its name promises. */
  async readChunk(shard: number, chunk: ChunkRef): Promise<WalEntry[]> {
    const path = join(this.shardDir(shard), chunk.name);
    const scan = scanSegment(await this.fs.readFile(path));
    if (scan.tail.kind !== 'clean') throw new BackupError(`archived WAL ${path} is damaged at byte ${scan.validBytes}`);
    const entries = scan.entries;
    if (entries[0]?.seq !== chunk.first || entries.at(-1)?.seq !== chunk.last) {
      throw new BackupError(`archived WAL ${path} does not hold the sequence numbers its name says (${chunk.first}-${chunk.last})`);
    }
    return entries;
  }

  /**
   * Every archived entry of a shard after `afterSeq`, in order, with no gap:
   * a missing range is a BackupError naming it. `visit` sees each entry.
   */
  async replayAfter(shard: number, afterSeq: number, visit: (entry: WalEntry) => void): Promise<{ lastSeq: number }> {
    let expected = afterSeq + 1;
    for (const chunk of await this.chunks(shard)) {
      if (chunk.last < expected) continue;
      if (chunk.first > expected) {
        throw new BackupError(`the WAL archive of shard ${shard} misses sequence numbers ${expected}-${chunk.first - 1}; restore from a later base backup, or to a time before the gap`);
      }
      for (const entry of await this.readChunk(shard, chunk)) {
        if (entry.seq < expected) continue;
        if (entry.seq !== expected) throw new BackupError(`the WAL archive of shard ${shard} misses sequence number ${expected} (in ${chunk.name})`);
        visit(entry);
        expected++;
      }
    }
    return { lastSeq: expected - 1 };
  }

  /**
   * Whether a point-in-time restore from a backup can replay its shards
   * forward: each shard's archive read whole after the backup's seq. Gives
   * how far each reaches, and what stops it (a gap, a damaged chunk).
   */
  async checkAfter(shards: readonly { shard: number; durable_seq: number }[]): Promise<{ shards: { shard: number; from_seq: number; through_seq: number }[]; problems: string[] }> {
    const reach: { shard: number; from_seq: number; through_seq: number }[] = [];
    const problems: string[] = [];
    for (const { shard, durable_seq: from } of shards) {
      try {
        const { lastSeq } = await this.replayAfter(shard, from, () => undefined);
        reach.push({ shard, from_seq: from, through_seq: lastSeq });
      } catch (error) {
        problems.push((error as Error).message);
      }
    }
    return { shards: reach, problems };
  }

  /** Removes chunks wholly at or below `seq` (no kept backup needs them). Returns how many. */
  async pruneThrough(shard: number, seq: number): Promise<number> {
    let removed = 0;
    for (const chunk of await this.chunks(shard)) {
      if (chunk.last > seq) break;
      await this.fs.unlink(join(this.shardDir(shard), chunk.name));
      removed++;
    }
    if (removed > 0) await this.fs.syncDir(this.shardDir(shard));
    return removed;
  }
}
