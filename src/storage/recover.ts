// Recovery of a shard at open: verify and index every sealed file in the
// manifest, remove leftovers of an interrupted seal (files the manifest does
// not list, temp files), then replay the WAL after sealed_seq. A torn tail
// of the last segment is cut off silently; any other damage is corruption
// and the shard refuses to serve.

import { join } from 'node:path';
import { readPartition } from './partition-file.js';
import { pack, type ShardStore } from './shard-store.js';
import { scanSegment, segmentFirstSeq } from './wal.js';

export interface Recovery {
  corrupt?: string;
  /** The segment to keep appending to, if any. */
  segment?: string;
  tornBytes: number;
}

export async function recoverShard(store: ShardStore): Promise<Recovery> {
  const { fs } = store.options;
  const listed = new Set(store.manifest.files.map((file) => file.name));
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

  const segments = (await fs.readdir(store.walDir))
    .filter((name) => segmentFirstSeq(name) !== undefined)
    .sort();
  let tornBytes = 0;
  let lastSeq = store.manifest.sealed_seq;
  for (const [position, name] of segments.entries()) {
    const path = join(store.walDir, name);
    const scan = scanSegment(await fs.readFile(path));
    const last = position === segments.length - 1;
    if (scan.tail.kind === 'corrupt') return { corrupt: `WAL ${name}: ${scan.tail.reason} at byte ${scan.tail.offset}`, tornBytes };
    if (scan.tail.kind === 'torn') {
      if (!last) return { corrupt: `WAL ${name}: damaged frame at byte ${scan.validBytes} with a later segment after it`, tornBytes };
      tornBytes = scan.tail.droppedBytes;
      const handle = await fs.open(path, 'append');
      await handle.truncate(scan.validBytes);
      await handle.datasync();
      await handle.close();
    }
    for (const entry of scan.entries) {
      if (entry.seq <= store.manifest.sealed_seq) continue;
      if (entry.seq <= lastSeq) return { corrupt: `WAL ${name}: sequence ${entry.seq} after ${lastSeq}`, tornBytes };
      lastSeq = entry.seq;
      const record = entry.record;
      store.memtable.set(record.id, record);
      store.memSeq.set(record.id, entry.seq);
      store.index.set(record.id, pack(record.version, 0));
    }
  }
  store.nextSeq = lastSeq + 1;
  const segment = segments.at(-1);
  return segment === undefined ? { tornBytes } : { segment, tornBytes };
}
