// The WAL archive: every durable WAL entry of every shard, copied into the
// backup target within one archive interval of being acknowledged, so that
// a restore can replay a base backup forward to any moment (point in time).
// It is kept per incarnation of the data directory (src/storage/node-meta.ts):
// a directory deleted and created again, or restored, is a new history,
// and its entries never land among another history's under the same seqs.
//
//   <target>/wal/<node_id>/<incarnation>/<shard>/<first seq>-<last seq>.wal   entries first..last
//   <target>/wal/<node_id>/<incarnation>/archive.json                         per shard: archived seq, and when
//   <target>/wal/<node_id>/<shard>/...                                        the legacy incarnation (archives
//                                                                             written before incarnations)
//
// A chunk is a header naming its incarnation, then WAL frames exactly as a
// segment holds them (length, CRC32, entry; docs/durability.md):
//
//   header = "UTWA" | version (u8, 1) | n (u8) | incarnation (n ASCII bytes) | crc32 of the bytes before (u32 LE)
//
// Legacy chunks have no header (their first four bytes are a frame's
// length, far below the magic's value as a u32), and are read only as the
// legacy incarnation. A chunk is written through temp file, fsync and
// rename; its name says which sequence numbers it holds, and chunks of a
// shard follow each other with no gap. `archived_at` of a shard is a time
// at which every entry acknowledged before it was already in the archive:
// the recovery point. A data directory behind its own archive (a copy of a
// directory run beside the original, or a restore by an older build)
// would write new entries under seqs the archive already holds; its
// shard's chunks are moved aside first (`<shard>.superseded-<time>/`),
// kept, never mixed with the new ones.

import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { INCARNATION_ID } from '../../protocols/requests.js';
import type { FileSystem } from '../ports/fs.js';
import { writeFileAtomic } from '../storage/atomic.js';
import { LEGACY_INCARNATION } from '../storage/node-meta.js';
import { encodeFrames, scanSegment, type WalEntry } from '../storage/wal.js';
import { BackupError } from './store.js';

const CHUNK = /^(\d{16})-(\d{16})\.wal$/;
const pad = (seq: number) => String(seq).padStart(16, '0');
const MAGIC = [0x55, 0x54, 0x57, 0x41]; // "UTWA"
const HEADER_VERSION = 1;

/** A chunk's header: it names the incarnation whose entries follow. */
export function encodeChunkHeader(incarnation: string): Uint8Array {
  const name = new TextEncoder().encode(incarnation);
  const header = new Uint8Array(6 + name.byteLength + 4);
  header.set(MAGIC, 0);
  header[4] = HEADER_VERSION;
  header[5] = name.byteLength;
  header.set(name, 6);
  new DataView(header.buffer).setUint32(6 + name.byteLength, crc32(header.subarray(0, 6 + name.byteLength)), true);
  return header;
}

/** Splits a chunk into the incarnation its header names (undefined: a legacy chunk, no header) and its frames. */
export function splitChunk(bytes: Uint8Array, path: string): { incarnation: string | undefined; frames: Uint8Array } {
  if (bytes.byteLength < 4 || MAGIC.some((byte, i) => bytes[i] !== byte)) return { incarnation: undefined, frames: bytes };
  const length = bytes[5] ?? 0;
  const end = 6 + length;
  if (bytes.byteLength < end + 4 || bytes[4] !== HEADER_VERSION) throw new BackupError(`archived WAL ${path} has a damaged header`);
  if (new DataView(bytes.buffer, bytes.byteOffset).getUint32(end, true) !== crc32(bytes.subarray(0, end))) throw new BackupError(`archived WAL ${path} has a damaged header (bad checksum)`);
  const incarnation = new TextDecoder().decode(bytes.subarray(6, end));
  if (!INCARNATION_ID.test(incarnation)) throw new BackupError(`archived WAL ${path} names incarnation ${JSON.stringify(incarnation)}, which is not one`);
  return { incarnation, frames: bytes.subarray(end + 4) };
}

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
    readonly incarnation: string,
  ) {
    if (!INCARNATION_ID.test(incarnation)) throw new TypeError(`${JSON.stringify(incarnation)} is not an incarnation id`);
    this.dir = incarnation === LEGACY_INCARNATION ? join(targetDir, 'wal', nodeId) : join(targetDir, 'wal', nodeId, incarnation);
  }

  /** The incarnations that have an archive of a node in `targetDir` (legacy: chunks from before incarnations). */
  static async incarnations(fs: FileSystem, targetDir: string, nodeId: string): Promise<string[]> {
    const root = join(targetDir, 'wal', nodeId);
    if (!(await fs.exists(root))) return [];
    const names = await fs.readdir(root);
    const found = names.filter((name) => name !== LEGACY_INCARNATION && INCARNATION_ID.test(name));
    if (names.some((name) => /^\d+$/.test(name) && name.length < 16) || names.includes('archive.json')) found.push(LEGACY_INCARNATION);
    return found.sort();
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
    const frames = encodeFrames(entries);
    if (this.incarnation === LEGACY_INCARNATION) {
      await writeFileAtomic(this.fs, join(dir, name), frames);
    } else {
      const header = encodeChunkHeader(this.incarnation);
      const bytes = new Uint8Array(header.byteLength + frames.byteLength);
      bytes.set(header, 0);
      bytes.set(frames, header.byteLength);
      await writeFileAtomic(this.fs, join(dir, name), bytes);
    }
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

  /** A chunk's entries, checked whole: of this incarnation, every frame valid, and the seqs its name promises. */
  async readChunk(shard: number, chunk: ChunkRef): Promise<WalEntry[]> {
    const path = join(this.shardDir(shard), chunk.name);
    const bytes = await this.fs.readFile(path);
    const { incarnation, frames } = splitChunk(bytes, path);
    if ((incarnation ?? LEGACY_INCARNATION) !== this.incarnation) {
      throw new BackupError(`archived WAL ${path} belongs to incarnation ${incarnation ?? `${LEGACY_INCARNATION} (it has no header)`}, not ${this.incarnation}; it is not replayed with this history`);
    }
    const scan = scanSegment(frames);
    if (scan.tail.kind !== 'clean') throw new BackupError(`archived WAL ${path} is damaged at byte ${bytes.byteLength - frames.byteLength + scan.validBytes}`);
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
