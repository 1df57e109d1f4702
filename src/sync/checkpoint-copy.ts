// A local copy of one mirror's checkpoints, `<data_dir>/sync/<backend>.json`,
// written only by that backend's SyncActor. The checkpoints the backend
// stores (sink.ts) are the truth and the only place sync resumes from; this
// copy only lets `sync status` tell how far the mirror got while the
// backend cannot be asked, such as after a restart with the mirror down, so
// that the lag counts from the oldest record the mirror really lacks. It is
// written at most once a second while the checkpoints move, and at stop:
// after a crash it may be about a second behind the backend, which makes
// the lag shown until the next connect a little larger, never smaller.
//
// Format: {"checkpoints": {"<shard>": <seq>, ...}}.

import { join } from 'node:path';
import type { FileSystem } from '../ports/fs.js';
import { writeFileAtomic } from '../storage/atomic.js';

export class CheckpointCopy {
  readonly path: string;

  constructor(
    private readonly fs: FileSystem,
    dataDir: string,
    backend: string,
  ) {
    this.path = join(dataDir, 'sync', `${backend}.json`);
  }

  /**
   * The checkpoints last written, shard by shard (0 for a shard the copy
   * does not name); undefined when there is no copy. Throws, naming the
   * file, when it is not a copy this file wrote.
   */
  async read(shards: number): Promise<number[] | undefined> {
    if (!(await this.fs.exists(this.path))) return undefined;
    const parsed = JSON.parse(new TextDecoder().decode(await this.fs.readFile(this.path))) as { checkpoints?: unknown };
    const checkpoints = parsed?.checkpoints;
    if (checkpoints === null || typeof checkpoints !== 'object') throw new Error(`${this.path}: checkpoints must be a map of shard to seq`);
    return Array.from({ length: shards }, (_, shard) => {
      const seq = (checkpoints as Record<string, unknown>)[String(shard)] ?? 0;
      if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) throw new Error(`${this.path}: checkpoint of shard ${shard} must be a whole number ≥ 0`);
      return seq;
    });
  }

  async write(checkpoints: readonly number[]): Promise<void> {
    await this.fs.mkdir(join(this.path, '..'));
    const body = { checkpoints: Object.fromEntries(checkpoints.map((seq, shard) => [String(shard), seq])) };
    await writeFileAtomic(this.fs, this.path, new TextEncoder().encode(JSON.stringify(body)));
  }
}
