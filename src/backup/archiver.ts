// One round of continuous WAL archiving (src/backup/wal-archive.ts): for
// each shard, the durable WAL entries after what the archive holds are
// written as a chunk, then the shard may drop the retired segments the
// archive now covers. Run every `backup.wal_archive_interval_s` by the
// BackupActor, so the recovery point trails the newest acknowledged write
// by at most about one interval plus a round.

import type { Logger } from '../log.js';
import { scanSegment, type WalEntry } from '../storage/wal.js';
import type { WalBytes, WalPosition } from '../storage/shard-store.js';
import type { ArchiveState, WalArchive } from './wal-archive.js';

/** Most entries in one chunk, so that no round builds one unbounded buffer. */
export const CHUNK_ENTRIES_MAX = 50_000;

export interface ArchiveSource {
  shards: number;
  /** The shard's durable WAL bytes not yet confirmed archived (retired segments, then live ones), after `from` if given. */
  walSince(shard: number, from?: WalPosition): Promise<{ segments: WalBytes[]; durableSeq: number }>;
  /** Tells the shard the archive holds everything up to `seq`. */
  walArchived(shard: number, seq: number): Promise<void>;
  now(): number;
  log: Logger;
}

export interface RoundReport {
  entries: number;
  chunks: number;
  /** What the round wrote to archive.json. */
  state: ArchiveState;
  shards: { shard: number; archived_seq: number; archived_at: string; entries: number; superseded?: string }[];
}

/**
 * `positions` is where each shard's previous round stopped reading (kept by
 * the caller between rounds): a round reads only the WAL bytes after it.
 * Without one (the first round of a process) a shard's WAL is read whole,
 * and entries the archive holds are skipped by seq.
 */
export async function archiveRound(archive: WalArchive, source: ArchiveSource, previous: ArchiveState | undefined, positions: Map<number, WalPosition>): Promise<RoundReport> {
  const state: ArchiveState = { updated_at: '', shards: { ...(previous?.shards ?? {}) } };
  const report: RoundReport = { entries: 0, chunks: 0, state, shards: [] };
  for (let shard = 0; shard < source.shards; shard++) {
    // Everything acknowledged before this moment is durable, so in what walSince returns.
    const at = source.now();
    let { segments, durableSeq } = await source.walSince(shard, positions.get(shard));
    let archived = await archive.archivedSeq(shard);
    let superseded: string | undefined;
    if (durableSeq < archived) {
      // Read whole again below: the new line of history starts at the beginning of what the shard holds.
      if (positions.delete(shard)) ({ segments, durableSeq } = await source.walSince(shard));
      // Behind its own incarnation's archive: a copy of the directory run beside or after the original (a restore
      // gives a new incarnation, so it is not one). The other line of history is kept aside.
      superseded = await archive.supersede(shard, at);
      source.log.warn(
        { shard, incarnation: archive.incarnation, durable_seq: durableSeq, archived_seq: archived, moved_to: superseded },
        'the data directory is behind its own WAL archive (a copy of this directory ran elsewhere?); the archive of this shard starts over',
      );
      archived = 0;
    }
    const fresh: WalEntry[] = [];
    for (const segment of segments) {
      const scan = scanSegment(segment.data, (entry) => {
        if (entry.seq > archived && entry.seq <= durableSeq && entry.seq > (fresh.at(-1)?.seq ?? 0)) fresh.push(entry);
      });
      // Durable bytes only were handed over: anything but a clean scan is damage the shard itself will report.
      if (scan.tail.kind === 'corrupt') throw new Error(`shard ${shard}: WAL ${segment.name} is damaged at byte ${scan.tail.offset}; not archived`);
    }
    if (archived > 0 && fresh.length > 0 && fresh[0]!.seq !== archived + 1) {
      source.log.error({ shard, archived_seq: archived, next_seq: fresh[0]!.seq }, 'WAL entries after the archive are gone (archiving was off?); point-in-time restore across this gap will refuse');
    }
    for (let start = 0; start < fresh.length; start += CHUNK_ENTRIES_MAX) {
      const chunk = await archive.append(shard, fresh.slice(start, start + CHUNK_ENTRIES_MAX));
      archived = chunk.last;
      report.chunks++;
    }
    await source.walArchived(shard, archived);
    const last = segments.at(-1);
    if (last) positions.set(shard, { segment: last.name, offset: last.start + last.data.byteLength });
    report.entries += fresh.length;
    state.shards[String(shard)] = { archived_seq: archived, archived_at: new Date(at).toISOString() };
    report.shards.push({ shard, archived_seq: archived, archived_at: new Date(at).toISOString(), entries: fresh.length, ...(superseded ? { superseded } : {}) });
  }
  state.updated_at = new Date(source.now()).toISOString();
  await archive.writeState(state);
  return report;
}
