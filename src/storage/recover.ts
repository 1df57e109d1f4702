// Recovery of a shard at open: verify and index every sealed file in the
// manifest, remove leftovers of an interrupted seal (files the manifest does
// not list, temp files), then replay the WAL after sealed_seq. A torn tail
// of the last segment is cut off silently; any other damage is corruption
// and the shard refuses to serve.

import { join } from 'node:path';
import { readPartition } from './partition-file.js';
import { recoverRollups } from '../retention/rollup-file.js';
import type { ShardStore } from './shard-store.js';
import { scanSegment, segmentFirstSeq } from './wal.js';

export interface Recovery {
  corrupt?: string;
  /** The segment to keep appending to, if any. */
  segment?: string;
  tornBytes: number;
}

export async function recoverShard(store: ShardStore, manifestFound: boolean): Promise<Recovery> {
  const { fs } = store.options;
  const listed = new Set(store.manifest.files.map((file) => file.name));
  const present = (await fs.readdir(store.partitionDir)).filter((name) => !name.startsWith('.'));
  if (!manifestFound && present.length > 0) {
    // Without a manifest nothing says which files are whole; deleting them would lose sealed data.
    return { corrupt: `metadata.json is missing but ${present.length} sealed file(s) exist; restore metadata.json from a backup`, tornBytes: 0 };
  }
  // Files the manifest does not list are leftovers of a seal that crashed before its manifest: the WAL still has their records.
  for (const name of await fs.readdir(store.partitionDir)) {
    if (!listed.has(name)) await fs.unlink(join(store.partitionDir, name));
  }
  for (const name of await fs.readdir(store.options.dir)) {
    if (name.endsWith('.tmp')) await fs.unlink(join(store.options.dir, name));
  }
  for (const [index, entry] of store.manifest.files.entries()) {
    try {
      store.indexFile(index, await readPartition(fs, store.partitionDir, entry));
    } catch (error) {
      return { corrupt: `sealed file ${(error as Error).message}`, tornBytes: 0 };
    }
  }
  // Rollups (retention): unlisted ones are leftovers of a run cut short before its manifest; listed ones are verified.
  const rollups = await recoverRollups(fs, store.options.dir, store.manifest.rollups ?? []);
  if ('corrupt' in rollups) return { corrupt: rollups.corrupt, tornBytes: 0 };
  store.rollups = rollups.rows;

  const segments = (await fs.readdir(store.walDir))
    .filter((name) => segmentFirstSeq(name) !== undefined)
    .sort();
  // Every segment is read and checked before anything is changed on disk. Entries go
  // to the memtable as they are read: if a later segment turns out corrupt, the
  // shard refuses to serve and that memory is never used.
  const torn: { name: string; validBytes: number; droppedBytes: number }[] = [];
  let lastSeq = store.manifest.sealed_seq;
  for (const [position, name] of segments.entries()) {
    let outOfOrder: string | undefined;
    const scan = scanSegment(await fs.readFile(join(store.walDir, name)), (entry) => {
      if (outOfOrder !== undefined || entry.seq <= store.manifest.sealed_seq) return;
      if (entry.seq <= lastSeq) {
        outOfOrder = `WAL ${name}: sequence ${entry.seq} after ${lastSeq}`;
        return;
      }
      lastSeq = entry.seq;
      store.putMem(entry.record, entry.seq);
    });
    if (outOfOrder !== undefined) return { corrupt: outOfOrder, tornBytes: 0 };
    if (scan.tail.kind === 'corrupt') return { corrupt: `WAL ${name}: ${scan.tail.reason} at byte ${scan.tail.offset}`, tornBytes: 0 };
    if (scan.tail.kind === 'torn' && position !== segments.length - 1) {
      return { corrupt: `WAL ${name}: damaged frame at byte ${scan.validBytes} with a later segment after it`, tornBytes: 0 };
    }
    if (scan.tail.kind === 'torn') torn.push({ name, validBytes: scan.validBytes, droppedBytes: scan.tail.droppedBytes });
  }
  let tornBytes = 0;
  for (const { name, validBytes, droppedBytes } of torn) {
    tornBytes = droppedBytes;
    const handle = await fs.open(join(store.walDir, name), 'append');
    await handle.truncate(validBytes);
    await handle.datasync();
    await handle.close();
  }
  store.nextSeq = lastSeq + 1;
  const segment = segments.at(-1);
  return segment === undefined ? { tornBytes } : { segment, tornBytes };
}
