// SyncActor[backend]: follows every shard's change feed and applies it to
// one backend (a SyncSink), batch by batch, with the checkpoint of each
// shard stored in the backend itself.
//
// - Catch-up mode: while a shard is behind, pages of `batchRecordsMax`
//   follow each other without pause.
// - Real-time mode: once every shard is caught up, it polls every
//   `windowMs`, so a change reaches the backend within about one window.
// - A backend that is down or slow never blocks ingest: the feed is read
//   (shards answer it beside their writes), nothing waits on the backend
//   but this actor, which backs off (exponential, capped, full jitter) and
//   retries. A failed batch leaves its checkpoint where it was.
//
// The work runs as one loop owned by the actor; its mailbox answers
// `status` and `resync` meanwhile.
//
// Lag: `lag_seconds` of a shard is now minus the write time (`updated_at`,
// which is `ingested_at` for a first version) of the oldest change the
// backend does not have yet, read from the shard itself (the change feed
// after the checkpoint), so it holds across restarts. Before the backend
// answers, the checkpoint is the last one this node saw it take, kept in
// a local copy (src/sync/checkpoint-copy.ts).

import { ProtocolError } from '../protocols/errors.js';
import type { StoredRecord } from '../protocols/record.js';
import { later, type ActorContext, type Behavior, type Later } from '../src/kernel/actor.js';
import type { ActorRef } from '../src/kernel/system.js';
import type { ConflictStrategy, Source } from '../src/sync/conflicts.js';
import type { CheckpointCopy } from '../src/sync/checkpoint-copy.js';
import { compareDigests, ShardDigest } from '../src/sync/merkle.js';
import { canResolveConflicts, isVerifiable, type SyncSink, type VerifiableSink } from '../src/sync/sink.js';
import { ConflictResolver } from './sync-conflicts.js';
import type { PartitionMessage, PartitionReply } from './partition.js';

export type SyncMessage =
  | { type: 'status' }
  | { type: 'resync'; from_seq: number; shards?: number[] }
  | { type: 'verify'; repair: boolean; shards?: number[] }
  | { type: 'conflicts'; open: boolean; limit: number }
  | { type: 'resolve'; conflict_id: number; take: 'local' | 'remote' }
  | { type: 'remove'; shard: number; ids: string[] }
  | { type: 'expire'; now: number; max_days: number };

/** How often rows written outside usage-tracker are looked for. */
const CONFLICT_SWEEP_MS = 1000;

/** Least time between two writes of the local checkpoint copy. */
const CHECKPOINT_COPY_MS = 1000;

/** How long one shard's comparison may take (it reads the whole shard on both sides). */
const VERIFY_SHARD_TIMEOUT_MS = 10 * 60_000;

/** What retention needs of a sink: remove ids of a shard; Chroma also drops items by age. */
interface RemovingSink extends SyncSink {
  remove(shard: number, ids: readonly string[]): Promise<void>;
  expireOlderThan?(nowMs: number, maxDays: number): Promise<void>;
}

export type SyncState = 'connecting' | 'catching_up' | 'realtime' | 'retrying' | 'stopped';

export interface SyncOptions {
  sink: SyncSink;
  shards: number;
  partition: (shard: number) => ActorRef<PartitionMessage, PartitionReply>;
  /** Most records read and applied per batch. */
  batchRecordsMax: number;
  /** Pause between polls once caught up. */
  windowMs: number;
  retryBaseMs: number;
  retryMaxMs: number;
  askTimeoutMs: number;
  /** Shards applied at once (each in its own transaction); at most the sink's connections. */
  parallelism: number;
  /** What to do with rows written outside usage-tracker, for a sink that can tell them. */
  conflicts?: { strategy: ConflictStrategy; priority: readonly Source[] };
  /** Jitter source in [0, 1); a port so tests can fix it. */
  random?: () => number;
  /** Where the checkpoints are kept locally, for status while the backend cannot be asked. */
  checkpointCopy?: CheckpointCopy;
}

interface ShardProgress {
  checkpoint: number;
  head: number;
  /** Write time (epoch ms) of the oldest change the backend does not have, while behind; undefined when unknown or caught up. */
  oldestWriteMs: number | undefined;
  error: string | undefined;
}

export interface ChangesReply {
  records: StoredRecord[];
  next_seq: number;
  head_seq: number;
}

export class SyncLoop {
  state: SyncState = 'connecting';
  private readonly progress: ShardProgress[];
  private lastError: { message: string; at: number } | undefined;
  private attempt = 0;
  private applied = 0;
  private stopping = false;
  private wake: (() => void) | undefined;
  private resyncs: { fromSeq: number; shards: number[]; done: (error?: unknown) => void }[] = [];
  /** Retention's deletions, applied by the loop between two batches (never under a batch read before them). */
  private removals: { run: (sink: SyncSink) => Promise<void>; done: (error?: unknown) => void }[] = [];
  private running: Promise<void> | undefined;
  /** Resolves once the local checkpoint copy is read: status waits for it, so it never shows checkpoints of 0 it does not mean. */
  private copyLoaded: Promise<void> = Promise.resolve();
  readonly resolver: ConflictResolver | undefined;
  private lastSweepMs = -Infinity;
  /** The checkpoints moved since the local copy was last written. */
  private copyDirty = false;
  private lastCopyMs = -Infinity;

  constructor(
    private readonly options: SyncOptions,
    private readonly ctx: ActorContext,
  ) {
    this.progress = Array.from({ length: options.shards }, () => ({ checkpoint: 0, head: 0, oldestWriteMs: undefined, error: undefined }));
    const sink = options.sink;
    if (options.conflicts && canResolveConflicts(sink)) {
      this.resolver = new ConflictResolver(sink, { ...options.conflicts, partition: options.partition, shards: options.shards, askTimeoutMs: options.askTimeoutMs, log: ctx.log });
    }
  }

  /** The conflict handling of this backend; E_VALIDATION when it has none. */
  conflictResolver(): ConflictResolver {
    if (!this.resolver) throw new ProtocolError('E_VALIDATION', `${this.options.sink.backend} has no conflict handling`, { field: 'backend' });
    this.requireConnected();
    return this.resolver;
  }

  /** Looks for rows written outside usage-tracker, at most every CONFLICT_SWEEP_MS. */
  private async sweepConflicts(): Promise<void> {
    if (!this.resolver || this.ctx.clock.monotonicMs() - this.lastSweepMs < CONFLICT_SWEEP_MS) return;
    this.lastSweepMs = this.ctx.clock.monotonicMs();
    await this.resolver.sweep();
  }

  start(): void {
    this.copyLoaded = this.loadCopy();
    this.running = this.run();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.wake?.();
    await this.running;
    for (const resync of this.resyncs.splice(0)) resync.done(new ProtocolError('E_UNAVAILABLE', 'sync stopped before the resync ran'));
    for (const removal of this.removals.splice(0)) removal.done(new ProtocolError('E_UNAVAILABLE', 'sync stopped before the deletion ran'));
    await this.saveCopy(true);
    await this.options.sink.close();
    this.state = 'stopped';
  }

  /** Throws E_UNAVAILABLE unless the backend is connected. */
  private requireConnected(): void {
    if (this.state === 'connecting' || this.state === 'retrying' || this.state === 'stopped') {
      const why = this.lastError ? `: ${this.lastError.message}` : '';
      throw new ProtocolError('E_UNAVAILABLE', `${this.options.sink.backend} is not connected (${this.state}${why}); try again when sync.status says it is`);
    }
  }

  /** The shards named (all by default); E_VALIDATION for one that does not exist. */
  private targets(shards: number[] | undefined): number[] {
    const targets = shards ?? this.progress.map((_, shard) => shard);
    for (const shard of targets) {
      if (!Number.isInteger(shard) || shard < 0 || shard >= this.options.shards) {
        throw new ProtocolError('E_VALIDATION', `shard ${shard} does not exist (0 to ${this.options.shards - 1})`, { field: 'shards' });
      }
    }
    return targets;
  }

  /** Moves the checkpoints of `shards` (all by default) to `fromSeq`; resolves once the loop has done it. */
  resync(fromSeq: number, shards: number[] | undefined): Promise<void> {
    let targets: number[];
    try {
      this.requireConnected();
      targets = this.targets(shards);
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise((resolve, reject) => {
      this.resyncs.push({ fromSeq, shards: targets, done: (error) => (error ? reject(error) : resolve()) });
      this.wake?.();
    });
  }

  /**
   * Anti-entropy: compares each shard's tree with the backend's (days, then
   * buckets, then rows; src/sync/merkle.ts) and, with `repair`, writes what
   * the backend misses or holds at another version and removes what local
   * data does not have. The backend is read before local data each time, so
   * a record that arrives meanwhile can only look missing (and be written
   * again, harmlessly), never extra.
   */
  async verify(repair: boolean, shards: number[] | undefined): Promise<Record<string, unknown>> {
    const sink = this.options.sink;
    if (!isVerifiable(sink)) throw new ProtocolError('E_VALIDATION', `${sink.backend} cannot be verified yet`, { field: 'backend' });
    this.requireConnected();
    const reports = [];
    for (const shard of this.targets(shards)) reports.push(await this.verifyShard(sink, shard, repair));
    const equal = reports.every((report) => report.missing + report.stale + report.extra === 0);
    this.ctx.log.info({ backend: sink.backend, repair, equal, shards: reports.length }, 'sync verify');
    return { backend: sink.backend, repair, equal, shards: reports };
  }

  private async verifyShard(sink: VerifiableSink, shard: number, repair: boolean) {
    const ask = async <T>(message: PartitionMessage) =>
      (await this.options.partition(shard).ask(message, { timeoutMs: VERIFY_SHARD_TIMEOUT_MS, caller: 'SyncActor (verify)' })) as T;
    const remote = await sink.digest(shard);
    const local = ShardDigest.fromWire((await ask<{ digest: Parameters<typeof ShardDigest.fromWire>[0] }>({ type: 'digest' })).digest);
    const difference = compareDigests(local, remote);
    const report = { shard, days_equal: difference.daysEqual, days_differ: difference.differing.length, buckets_differ: 0, missing: 0, stale: 0, extra: 0 };
    for (const { day, buckets } of difference.differing) {
      report.buckets_differ += buckets.length;
      const remoteVersions = await sink.versionsIn(shard, day, buckets);
      const { records } = await ask<{ records: StoredRecord[] }>({ type: 'bucket_records', day, buckets });
      const write: StoredRecord[] = [];
      const localIds = new Set<string>();
      for (const record of records) {
        localIds.add(record.id);
        const version = remoteVersions.get(record.id);
        if (version === record.version) continue;
        if (version === undefined) report.missing++;
        else report.stale++;
        write.push(record);
      }
      const extra = [...remoteVersions.keys()].filter((id) => !localIds.has(id));
      report.extra += extra.length;
      if (repair) {
        await sink.repair(shard, write);
        await sink.remove(shard, extra);
      }
    }
    return report;
  }

  /**
   * Retention: deletes records removed locally from the backend. Queued for
   * the loop, which runs it between two batches, so a batch read before the
   * removal cannot write the records back after it. E_UNAVAILABLE when the
   * backend is not connected (retention keeps the ids pending).
   */
  removeRecords(run: (sink: SyncSink) => Promise<void>): Promise<void> {
    try {
      this.requireConnected();
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise((resolve, reject) => {
      this.removals.push({ run, done: (error) => (error ? reject(error) : resolve()) });
      this.wake?.();
    });
  }

  private async applyRemovals(): Promise<void> {
    for (const removal of this.removals.splice(0)) {
      try {
        await removal.run(this.options.sink);
        removal.done();
      } catch (error) {
        removal.done(error);
        throw error;
      }
    }
  }

  /** Status with each shard's head and oldest unapplied change read now, so the lag counts what the loop has not polled yet. */
  async freshStatus(): Promise<Record<string, unknown>> {
    await this.copyLoaded;
    await Promise.all(this.progress.map((_, shard) => this.refreshShard(shard)));
    return this.status();
  }

  /**
   * Reads a shard's head and, while the backend lacks changes, the write
   * time of the oldest of them: the first record of the change feed after
   * the checkpoint (the feed is in seq order, so in write order).
   */
  private async refreshShard(shard: number): Promise<void> {
    const progress = this.progress[shard]!;
    const ask = { timeoutMs: this.options.askTimeoutMs, caller: 'SyncActor (status)' };
    try {
      const status = (await this.options.partition(shard).ask({ type: 'status' }, ask)) as { durable_seq?: number };
      if (typeof status.durable_seq === 'number' && status.durable_seq > progress.head) progress.head = status.durable_seq;
      const checkpoint = progress.checkpoint;
      if (checkpoint >= progress.head) {
        progress.oldestWriteMs = undefined;
        return;
      }
      const page = (await this.options.partition(shard).ask({ type: 'changes', from_seq: checkpoint, limit: 1 }, ask)) as ChangesReply;
      // The loop may have applied a page meanwhile: then what was read is no longer the oldest.
      if (progress.checkpoint === checkpoint) progress.oldestWriteMs = oldestWrite(page.records);
    } catch (error) {
      progress.error = (error as Error).message;
    }
  }

  status(): Record<string, unknown> {
    const now = this.ctx.clock.now();
    return {
      backend: this.options.sink.backend,
      state: this.state,
      applied_records: this.applied,
      ...(this.resolver ? { conflicts_resolved: this.resolver.resolvedTotal, conflicts_parked: this.resolver.parkedTotal, conflicts_failed: this.resolver.failedTotal } : {}),
      ...(this.lastError ? { last_error: this.lastError.message, last_error_at: new Date(this.lastError.at).toISOString() } : {}),
      shards: this.progress.map((shard, index) => ({
        shard: index,
        checkpoint: shard.checkpoint,
        head: shard.head,
        lag_records: Math.max(0, shard.head - shard.checkpoint),
        lag_seconds: shard.oldestWriteMs === undefined || shard.checkpoint >= shard.head ? 0 : Math.max(0, (now - shard.oldestWriteMs) / 1000),
        ...(shard.error ? { error: shard.error } : {}),
      })),
    };
  }

  private async run(): Promise<void> {
    await this.copyLoaded;
    // Before the backend answers (it may be down for long), status knows the lag from the copy and the shards.
    await Promise.all(this.progress.map((_, shard) => this.refreshShard(shard)));
    while (!this.stopping) {
      try {
        if (this.state === 'connecting' || this.state === 'retrying') await this.connect();
        await this.applyResyncs();
        await this.applyRemovals();
        const behind = await this.cycle();
        await this.saveCopy(false);
        await this.sweepConflicts();
        this.attempt = 0;
        this.state = behind ? 'catching_up' : 'realtime';
        if (!behind) await this.pause(this.options.windowMs);
      } catch (error) {
        this.fail(error);
        await this.pause(this.backoffMs());
      }
    }
  }

  /** The checkpoints of the local copy, until the backend gives its own; a copy that cannot be read is ignored. */
  private async loadCopy(): Promise<void> {
    const copy = this.options.checkpointCopy;
    if (!copy) return;
    try {
      const checkpoints = await copy.read(this.options.shards);
      checkpoints?.forEach((seq, shard) => (this.progress[shard]!.checkpoint = seq));
    } catch (error) {
      this.ctx.log.warn({ backend: this.options.sink.backend, err: error }, 'the local checkpoint copy cannot be read; status counts the lag from seq 0 until the backend answers');
    }
  }

  /** Writes the local copy when the checkpoints moved, at most every CHECKPOINT_COPY_MS unless `now`. It only serves status: a failure is logged. */
  private async saveCopy(now: boolean): Promise<void> {
    const copy = this.options.checkpointCopy;
    if (!copy || !this.copyDirty || (!now && this.ctx.clock.monotonicMs() - this.lastCopyMs < CHECKPOINT_COPY_MS)) return;
    this.copyDirty = false;
    this.lastCopyMs = this.ctx.clock.monotonicMs();
    try {
      await copy.write(this.progress.map((shard) => shard.checkpoint));
    } catch (error) {
      this.copyDirty = true;
      this.ctx.log.warn({ backend: this.options.sink.backend, err: error, path: copy.path }, 'the local checkpoint copy could not be written; sync goes on');
    }
  }

  private async connect(): Promise<void> {
    await this.options.sink.connect();
    const checkpoints = await this.options.sink.checkpoints();
    this.progress.forEach((shard, index) => (shard.checkpoint = checkpoints.get(index) ?? 0));
    this.ctx.log.info({ backend: this.options.sink.backend }, 'sync connected');
  }

  private async applyResyncs(): Promise<void> {
    for (const resync of this.resyncs.splice(0)) {
      try {
        for (const shard of resync.shards) {
          await this.options.sink.setCheckpoint(shard, resync.fromSeq);
          this.progress[shard]!.checkpoint = resync.fromSeq;
          this.copyDirty = true;
        }
        this.ctx.log.info({ backend: this.options.sink.backend, from_seq: resync.fromSeq, shards: resync.shards.length }, 'resync');
        resync.done();
      } catch (error) {
        resync.done(error);
        throw error;
      }
    }
  }

  /**
   * One page from every shard, `parallelism` shards at a time. Returns
   * whether any shard is still behind; throws the first failure once every
   * shard of the cycle has settled (the others' checkpoints stand).
   */
  private async cycle(): Promise<boolean> {
    let behind = false;
    let next = 0;
    const failures: unknown[] = [];
    const worker = async () => {
      while (next < this.options.shards && !this.stopping && failures.length === 0) {
        const shard = next++;
        try {
          if (await this.syncShard(shard)) behind = true;
        } catch (error) {
          failures.push(error);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(this.options.parallelism, this.options.shards)) }, worker));
    if (failures.length > 0) throw failures[0];
    return behind;
  }

  /** Applies one page of one shard; returns whether the shard is still behind. */
  private async syncShard(shard: number): Promise<boolean> {
    const progress = this.progress[shard]!;
    let page: ChangesReply;
    try {
      page = (await this.options
        .partition(shard)
        .ask({ type: 'changes', from_seq: progress.checkpoint, limit: this.options.batchRecordsMax }, { timeoutMs: this.options.askTimeoutMs, caller: 'SyncActor (changes)' })) as ChangesReply;
      progress.error = undefined;
    } catch (error) {
      // A shard that cannot answer (restarting, corrupt) does not hold up the others.
      progress.error = (error as Error).message;
      return false;
    }
    progress.head = Math.max(progress.head, page.head_seq);
    if (page.next_seq > progress.checkpoint) {
      progress.oldestWriteMs ??= oldestWrite(page.records);
      await this.options.sink.apply(shard, page.records, page.next_seq);
      progress.checkpoint = page.next_seq;
      this.copyDirty = true;
      this.applied += page.records.length;
      // What is left comes after this page in seq order, so it was written no earlier than the page's last record:
      // counting from that one may overstate the lag a little until the next status reads the feed, never understate it.
      if (progress.checkpoint < progress.head) progress.oldestWriteMs = oldestWrite(page.records.slice(-1)) ?? progress.oldestWriteMs;
    }
    if (progress.checkpoint < progress.head) return true;
    progress.oldestWriteMs = undefined;
    return false;
  }

  private fail(error: unknown): void {
    const message = error instanceof Error ? error.message : String(error);
    this.lastError = { message, at: this.ctx.clock.now() };
    this.attempt++;
    // Retention's deletions do not wait out an outage: it keeps them pending and retries at its next run.
    for (const removal of this.removals.splice(0)) removal.done(new ProtocolError('E_UNAVAILABLE', `${this.options.sink.backend} failed: ${message}`));
    this.state = 'retrying';
    // The first failure of a run is a warning with the cause; repeats are quieter.
    if (this.attempt === 1) this.ctx.log.warn({ backend: this.options.sink.backend, err: error }, 'sync failed; backing off and retrying');
    else this.ctx.log.debug({ backend: this.options.sink.backend, attempt: this.attempt, error: message }, 'sync retry failed');
  }

  /** Full jitter over a capped exponential. */
  private backoffMs(): number {
    const ceiling = Math.min(this.options.retryMaxMs, this.options.retryBaseMs * 2 ** Math.min(this.attempt - 1, 30));
    return Math.max(1, Math.floor((this.options.random ?? Math.random)() * ceiling));
  }

  private pause(delayMs: number): Promise<void> {
    if (this.stopping || this.resyncs.length > 0 || this.removals.length > 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = this.ctx.clock.setTimer(delayMs, () => {
        this.wake = undefined;
        resolve();
      });
      this.wake = () => {
        timer.cancel();
        this.wake = undefined;
        resolve();
      };
    });
  }
}

/** The earliest write time among records: `updated_at` (a first version's is its `ingested_at`); undefined for none. */
function oldestWrite(records: readonly StoredRecord[]): number | undefined {
  let oldest: number | undefined;
  for (const record of records) {
    const written = record.updated_at ?? record.ingested_at;
    if (oldest === undefined || written < oldest) oldest = written;
  }
  return oldest;
}

export function syncBehavior(options: SyncOptions, ctx: ActorContext, publishStatus?: (status: () => Record<string, unknown>) => void): Behavior<SyncMessage, unknown> {
  const loop = new SyncLoop(options, ctx);
  loop.start();
  publishStatus?.(() => loop.status());
  return {
    receive(message): unknown | Later<unknown> {
      switch (message.type) {
        case 'status':
          return later(loop.freshStatus());
        case 'resync':
          return later(loop.resync(message.from_seq, message.shards).then(() => loop.status()));
        case 'verify':
          return later(loop.verify(message.repair, message.shards));
        case 'conflicts':
          return later(loop.conflictResolver().list(message.open, message.limit).then((conflicts) => ({ backend: options.sink.backend, conflicts })));
        case 'remove':
          return later(
            loop.removeRecords(async (sink) => {
              if (typeof (sink as Partial<RemovingSink>).remove !== 'function') throw new ProtocolError('E_VALIDATION', `${sink.backend} cannot remove records`);
              await (sink as RemovingSink).remove(message.shard, message.ids);
            }).then(() => ({ backend: options.sink.backend, removed: message.ids.length })),
          );
        case 'expire':
          return later(
            loop.removeRecords(async (sink) => {
              if (typeof (sink as Partial<RemovingSink>).expireOlderThan !== 'function') return;
              await (sink as RemovingSink).expireOlderThan!(message.now, message.max_days);
            }).then(() => ({ backend: options.sink.backend })),
          );
        case 'resolve':
          return later(loop.conflictResolver().resolve(message.conflict_id, message.take).then((conflict) => ({ backend: options.sink.backend, conflict })));
        default:
          throw new ProtocolError('E_BAD_REQUEST', `unknown sync message ${(message as { type?: unknown }).type}`);
      }
    },
    async stopped() {
      await loop.stop();
    },
  };
}
