// The SyncSupervisor's children: one SyncActor per configured backend, and
// the SyncApi the admin endpoints use to reach them. A backend that is not
// configured has no actor; one that is configured but unreachable has an
// actor that keeps retrying (never fatal to the node).

import type { EndpointReply } from '../actors/gateway.js';
import type { SyncApi } from '../actors/endpoints.js';
import type { PartitionMessage, PartitionReply } from '../actors/partition.js';
import { syncBehavior, type SyncMessage, type SyncOptions } from '../actors/sync.js';
import type { SyncBackend } from '../protocols/requests.js';
import type { Config } from '../src/config/schema.js';
import type { ActorRef, ActorSystem } from '../src/kernel/system.js';
import type { FileSystem } from '../src/ports/fs.js';
import { CheckpointCopy } from '../src/sync/checkpoint-copy.js';
import { ChromaSink } from '../src/sync/chroma-sink.js';
import { PostgresSink } from '../src/sync/postgres-sink.js';
import type { SyncSink } from '../src/sync/sink.js';
import type { ChildSpec } from './spec.js';
import { actorChild } from './worker.js';

export interface SyncWiring {
  children: ChildSpec[];
  api: SyncApi;
}

/** Status of one backend in the node's status tree: the summary, not every shard. */
function summary(status: Record<string, unknown>): Record<string, unknown> {
  const shards = (status.shards as { lag_records: number; lag_seconds: number }[] | undefined) ?? [];
  return {
    state: status.state,
    lag_records: shards.reduce((sum, shard) => sum + shard.lag_records, 0),
    lag_seconds: Math.max(0, ...shards.map((shard) => shard.lag_seconds)),
    ...(status.last_error !== undefined && status.state === 'retrying' ? { last_error: status.last_error } : {}),
  };
}

/** The settings every backend's section has. */
interface LoopSettings {
  batch_records_max: number;
  window_ms: number;
  retry_base_ms: number;
  retry_max_ms: number;
}

export function syncWiring(
  config: Config,
  system: ActorSystem,
  partition: (shard: number) => ActorRef<PartitionMessage, PartitionReply>,
  files: { fs: FileSystem; dataDir: string },
): SyncWiring {
  const statusOf = new Map<SyncBackend, () => Record<string, unknown>>();
  const children: ChildSpec[] = [];
  /** A SyncActor child; the sink is made anew at every (re)start. */
  const child = (backend: SyncBackend, sink: () => SyncSink, settings: LoopSettings, parallelism: number, conflicts?: SyncOptions['conflicts']): ChildSpec =>
    actorChild<SyncMessage, unknown>({
      id: backend,
      mailboxCapacity: 256,
      shutdownMs: config.supervision.shutdown_ms,
      detail: () => summary(statusOf.get(backend)?.() ?? {}),
      behavior: (ctx) =>
        syncBehavior(
          {
            sink: sink(),
            shards: config.cluster.shards,
            partition,
            batchRecordsMax: settings.batch_records_max,
            windowMs: settings.window_ms,
            retryBaseMs: settings.retry_base_ms,
            retryMaxMs: settings.retry_max_ms,
            askTimeoutMs: config.limits.query_timeout_ms,
            parallelism,
            checkpointCopy: new CheckpointCopy(files.fs, files.dataDir, backend),
            ...(conflicts ? { conflicts } : {}),
          },
          ctx,
          (status) => statusOf.set(backend, status),
        ),
    });
  const postgres = config.backends.postgres;
  if (postgres) {
    const sink = () =>
      new PostgresSink({ url: postgres.url, schema: postgres.schema, poolMax: postgres.pool_max, connectTimeoutMs: 5000, statementTimeoutMs: postgres.statement_timeout_ms });
    children.push(child('postgres', sink, postgres, postgres.pool_max, { strategy: postgres.conflict_strategy, priority: postgres.source_priority }));
  }
  const chroma = config.backends.chroma;
  if (chroma) {
    const sink = () =>
      new ChromaSink({ url: chroma.url, collectionPrefix: chroma.collection_prefix, requestTimeoutMs: chroma.request_timeout_ms, requestRecordsMax: chroma.batch_records_max });
    // Each batch writes three collections already; one shard at a time bounds the load on the server.
    children.push(child('chroma', sink, chroma, 1));
  }
  const ref = (backend: SyncBackend) => system.ref<SyncMessage, EndpointReply>(`${config.node.id}/sync/${backend}`);
  const timeoutMs = config.limits.query_timeout_ms;
  return {
    children,
    api: {
      configured: () => children.map((child) => child.id as SyncBackend),
      status: async (backend) => (await ref(backend).ask({ type: 'status' }, { timeoutMs, caller: 'admin.sync.status' })) as Record<string, unknown>,
      conflicts: async (backend, open, limit) =>
        (await ref(backend).ask({ type: 'conflicts', open, limit }, { timeoutMs, caller: 'admin.sync.conflicts' })) as Record<string, unknown>,
      resolve: async (backend, conflictId, take) =>
        (await ref(backend).ask({ type: 'resolve', conflict_id: conflictId, take }, { timeoutMs, caller: 'admin.sync.resolve' })) as Record<string, unknown>,
      verify: async (backend, repair, shards) =>
        // Each shard may take minutes on a large store; the ask allows for all of them.
        (await ref(backend).ask({ type: 'verify', repair, ...(shards ? { shards } : {}) }, { timeoutMs: 10 * 60_000 * (shards?.length ?? config.cluster.shards), caller: 'admin.sync.verify' })) as Record<string, unknown>,
      resync: async (backend, fromSeq, shards) =>
        (await ref(backend).ask({ type: 'resync', from_seq: fromSeq, ...(shards ? { shards } : {}) }, { timeoutMs, caller: 'admin.sync.resync' })) as Record<string, unknown>,
    },
  };
}
