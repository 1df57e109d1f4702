// A node: the NodeSupervisor tree of DESIGN §2 on its transports.
//
//   <node> NodeSupervisor (one_for_one)
//   ├── shards       ShardSupervisor (one_for_one)
//   │   └── partition-<k>  PartitionActor, one per shard
//   ├── ingest       IngestActor pool (one_for_one)
//   ├── sync         SyncSupervisor (one_for_one)
//   ├── maintenance  MaintenanceSupervisor (one_for_one)
//   └── api          ApiActor (the protocol endpoints)
//
// Children start in that order and stop in reverse, so the API stops taking
// requests before anything behind it stops, and the shards stop last, after
// every write in flight is answered. A mirror that is not configured has no
// SyncActor (supervisors/sync.ts); the maintenance actors are wired in
// supervisors/maintenance.ts.
// Transport: `embedded` always serves in-process; it also serves NATS when a
// server is reachable. `nats` requires NATS and fails to start without it.

import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Gateway, type EndpointReply } from '../actors/gateway.js';
import { ingestBehavior, type IngestMessage } from '../actors/ingest.js';
import { partitionBehavior, type PartitionMessage, type PartitionReply } from '../actors/partition.js';
import { partitionMessageSchema } from '../actors/partition-messages.js';
import { PatternApi } from '../actors/pattern-api.js';
import { retentionSettings } from '../actors/retention.js';
import { StorageApi } from '../actors/storage-api.js';
import { ChromaSearch } from '../src/sync/chroma-search.js';
import { nodeFileSystem, type FileSystem } from '../src/ports/fs.js';
import { loadPriceTable, type PriceTable } from '../src/pricing/price-table.js';
import { lockDataDir, type DataDirLock } from '../src/storage/data-dir-lock.js';
import { dataDirEntries, forgetFailedStart, incarnationOf, makeDataDir, openDataDir, type Lineage, type NodeMeta } from '../src/storage/node-meta.js';
import { AuditLog } from '../src/audit/audit-log.js';
import { recoverMigration } from '../src/migration/journal.js';
import { maintenanceWiring } from './maintenance.js';
import { syncWiring } from './sync.js';
import { actorChild } from './worker.js';
import { ApiActor } from '../actors/api.js';
import { endpointHandlers } from '../actors/endpoints.js';
import type { MigrationSeams } from '../actors/migration.js';
import { DEFAULT_LIMITS, type ProtocolLimits } from '../protocols/limits.js';
import { PROTOCOL_VERSION } from '../protocols/subjects.js';
import type { Config } from '../src/config/schema.js';
import type { ExitReason } from '../src/kernel/actor.js';
import { ActorSystem } from '../src/kernel/system.js';
import { createLogger, type Logger } from '../src/log.js';
import { systemClock, type Clock } from '../src/ports/clock.js';
import { EmbeddedTransport } from '../src/transport/embedded.js';
import { connectNats, type NatsTransport } from '../src/transport/nats.js';
import { VERSION } from '../src/version.js';
import type { ChildSpec, SupervisorFlags } from './spec.js';
import { Supervisor, supervisorChild } from './supervisor.js';
import type { StatusNode } from './status.js';

export interface NodeOptions {
  log?: Logger;
  clock?: Clock;
  /** Shared in-process transport (several nodes in one process, tests). */
  embedded?: EmbeddedTransport;
  /** Called when the tree gives up (the root supervisor exceeded its intensity). */
  onFatal?: (error: unknown) => void;
  /** The filesystem under the data directory (tests inject faults here). */
  fs?: FileSystem;
  /**
   * Tests only: the migration registry (default: this release's), the crash
   * fixture's pause per rewritten file, and `onStage`, called and awaited as
   * a migration run enters each stage so a test can hold it there.
   */
  migrations?: MigrationSeams;
}

export interface StatusReply {
  node_id: string;
  cluster_id: string;
  /** The data directory's identity (node.json), and where a restored one came from. */
  incarnation: string;
  lineage: Lineage | null;
  version: string;
  protocol: number;
  /** ISO 8601 UTC with milliseconds, as every time in a reply. */
  started_at: string;
  uptime_ms: number;
  /** `nats`: the node's link to NATS as it knows it; `off` when it serves in-process only. */
  transport: { kind: Config['transport']['kind']; nats: 'connected' | 'reconnecting' | 'disconnected' | 'off'; subject_prefix: string };
  tree: StatusNode;
}

const natsState = { connected: 'connected', reconnecting: 'reconnecting', closed: 'disconnected' } as const;

export class UsageNode {
  private stopping: Promise<void> | undefined;

  constructor(
    readonly config: Config,
    readonly system: ActorSystem,
    readonly root: Supervisor,
    readonly embedded: EmbeddedTransport,
    readonly nats: NatsTransport | undefined,
    readonly startedAt: number,
    private readonly ownsEmbedded: boolean,
    private readonly lock: DataDirLock,
    readonly identity: { incarnation: string; lineage: Lineage | null },
  ) {}

  get nodeId(): string {
    return this.config.node.id;
  }

  status(): StatusReply {
    const now = this.system.clock.now();
    return {
      node_id: this.config.node.id,
      cluster_id: this.config.cluster.id,
      incarnation: this.identity.incarnation,
      lineage: this.identity.lineage,
      version: VERSION,
      protocol: PROTOCOL_VERSION,
      started_at: new Date(this.startedAt).toISOString(),
      uptime_ms: now - this.startedAt,
      transport: {
        kind: this.config.transport.kind,
        nats: this.nats ? natsState[this.nats.link] : 'off',
        subject_prefix: this.config.transport.subject_prefix,
      },
      tree: this.root.status(),
    };
  }

  /** Stops the tree in reverse order, then the transports (draining NATS). Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      await this.root.stop();
      this.system.unlisten();
      await this.nats?.drain().catch(() => undefined);
      if (this.ownsEmbedded) await this.embedded.drain();
      await this.lock.release();
    })();
    return this.stopping;
  }
}

export function limitsOf(config: Config): ProtocolLimits {
  return { ...DEFAULT_LIMITS, payloadBytesMax: config.limits.payload_bytes_max, batchRecordsMax: config.limits.batch_records_max };
}

export function supervisionFlags(config: Config): Partial<SupervisorFlags> {
  return {
    intensity: config.supervision.intensity,
    periodMs: config.supervision.period_ms,
    backoffBaseMs: config.supervision.backoff_base_ms,
    backoffMaxMs: config.supervision.backoff_max_ms,
  };
}

export async function startNode(config: Config, options: NodeOptions = {}): Promise<UsageNode> {
  const log = options.log ?? createLogger({ level: config.log.level, format: config.log.format });
  const clock = options.clock ?? systemClock;
  const fs = options.fs ?? nodeFileSystem;
  const dataDir = resolve(config.node.data_dir);
  const before = await dataDirEntries(fs, dataDir);
  await makeDataDir(fs, dataDir);
  const lock = await lockDataDir(dataDir);
  let meta: (NodeMeta & { created: boolean }) | undefined;
  /** A start that fails gives up the lock, and leaves a directory it created as it found it. */
  const abandon = async () => {
    await lock.release();
    if (meta?.created) await forgetFailedStart(dataDir, before);
  };
  let prices: PriceTable | undefined;
  let nats: NatsTransport | undefined;
  try {
    meta = await openDataDir(fs, dataDir, { node_id: config.node.id, cluster_id: config.cluster.id, shards: config.cluster.shards }, clock.now());
    // Before any shard opens: a migration a crash interrupted is rolled back (or, if it had committed, completed).
    await recoverMigration({ fs, dataDir, shards: config.cluster.shards, log, audit: new AuditLog(fs, dataDir), now: clock.now() });
    prices = loadPrices(config, log);
    nats = await openNats(config, log);
  } catch (error) {
    await abandon();
    throw error;
  }
  const identity = { incarnation: incarnationOf(meta), lineage: meta.lineage ?? null };
  const embedded = options.embedded ?? new EmbeddedTransport();
  const system = new ActorSystem({
    nodeId: config.node.id,
    log,
    clock,
    transport: nats ?? embedded,
    subjectPrefix: config.transport.subject_prefix,
    mailboxCapacity: config.limits.mailbox_capacity,
    askTimeoutMs: config.limits.ask_timeout_ms,
  });
  let node: UsageNode | undefined;
  const flags = supervisionFlags(config);
  const shardCount = config.cluster.shards;
  const partitionPath = (shard: number) => `${config.node.id}/shards/partition-${shard}`;
  const partition = (shard: number) => system.ref<PartitionMessage, PartitionReply>(partitionPath(shard));
  const shardStatus = new Map<number, () => Record<string, unknown>>();
  /** What a shard accepts over the internal actor subject: checked once, where a body enters. */
  const retentionDirs = retentionSettings(config);
  const partitionRemote = (shard: number) =>
    partitionMessageSchema({ shard, shards: shardCount, archiveDir: retentionDirs.archiveDir, exportDir: retentionDirs.exportDir, limits: limitsOf(config), now: () => clock.now() });
  const partitions: ChildSpec[] = Array.from({ length: shardCount }, (_, shard) =>
    actorChild({
      id: `partition-${shard}`,
      mailboxCapacity: config.limits.mailbox_capacity,
      shutdownMs: config.supervision.shutdown_ms,
      remote: partitionRemote(shard),
      detail: () => shardStatus.get(shard)?.() ?? {},
      behavior: (ctx) =>
        partitionBehavior(
          {
            shard,
            nodeId: config.node.id,
            dir: join(dataDir, 'shards', String(shard)),
            fs,
            fsync: config.durability.fsync === 'always',
            memtableRecordsMax: config.storage.memtable_records_max,
            cacheBytesMax: Math.max(1 << 20, Math.floor(config.storage.cache_bytes_max / shardCount)),
            sealIntervalMs: config.storage.seal_interval_s * 1000,
            walArchive: config.backup.wal_archive,
            self: () => partition(shard),
            publishStatus: (status) => shardStatus.set(shard, status),
          },
          ctx,
        ),
    }),
  );
  const ingestDeps = {
    limits: limitsOf(config),
    now: () => clock.now(),
    shards: shardCount,
    prices,
    partition,
    askTimeoutMs: config.limits.ask_timeout_ms,
  };
  const ingestPool: ChildSpec[] = Array.from({ length: config.ingest.pool_size }, (_, index) =>
    actorChild({ id: `ingest-${index}`, mailboxCapacity: config.limits.mailbox_capacity, behavior: () => ingestBehavior(ingestDeps) }),
  );
  const ingestRefs = ingestPool.map((spec) => system.ref<IngestMessage, EndpointReply>(`${config.node.id}/ingest/${spec.id}`));
  let nextIngest = 0;
  const ingest = (body: unknown) =>
    ingestRefs[nextIngest++ % ingestRefs.length]!.ask({ body }, { timeoutMs: config.limits.ask_timeout_ms * 2, caller: 'ApiActor (ingest)' });
  const sync = syncWiring(config, system, partition, { fs, dataDir });
  const chroma = config.backends.chroma;
  const storage = new StorageApi({ shards: shardCount, partition, askTimeoutMs: config.limits.ask_timeout_ms, queryTimeoutMs: config.limits.query_timeout_ms });
  const maintenance = maintenanceWiring(config, system, { fs, dataDir, incarnation: identity.incarnation, lineage: identity.lineage, partition, syncBackends: sync.api.configured(), ...(options.migrations ? { migrations: options.migrations } : {}) });
  const patterns = new PatternApi({
    storage,
    search: chroma ? new ChromaSearch({ url: chroma.url, collectionPrefix: chroma.collection_prefix, requestTimeoutMs: config.limits.query_timeout_ms }) : undefined,
  });
  const api: ChildSpec = {
    id: 'api',
    kind: 'worker',
    shutdownMs: config.supervision.shutdown_ms,
    async start(ctx) {
      const handlers = endpointHandlers({
        limits: limitsOf(config),
        now: () => clock.now(),
        status: () => ({ ...node!.status() }),
        ingest,
        storage,
        sync: sync.api,
        patterns,
        backup: maintenance.backup,
        migration: maintenance.migration,
        retention: maintenance.retention,
      });
      const actor = new ApiActor({
        gateway: new Gateway(handlers, limitsOf(config), ctx.log),
        subjects: system.subjects,
        nodeId: config.node.id,
        version: VERSION,
        queueGroup: config.transport.nats.queue_group,
        embedded,
        nats,
        log: ctx.log,
      });
      await actor.start();
      return { stop: () => actor.stop(), kill: () => actor.kill(), status: () => ({ detail: actor.status() }) };
    },
  };
  const root = new Supervisor({
    path: config.node.id,
    system,
    flags,
    children: [
      supervisorChild('shards', partitions, flags),
      supervisorChild('ingest', ingestPool, flags),
      supervisorChild('sync', sync.children, flags),
      supervisorChild('maintenance', maintenance.children, flags),
      api,
    ],
    onExit: (reason: ExitReason) => {
      if (reason.kind === 'error') {
        log.fatal({ err: reason.error }, 'the node supervisor gave up');
        options.onFatal?.(reason.error);
      }
    },
  });
  await system.listen(nats ?? embedded);
  try {
    await root.start();
  } catch (error) {
    system.unlisten();
    await nats?.drain().catch(() => undefined);
    await abandon();
    throw error;
  }
  node = new UsageNode(config, system, root, embedded, nats, clock.now(), options.embedded === undefined, lock, identity);
  log.info(
    { node_id: config.node.id, incarnation: identity.incarnation, transport: config.transport.kind, nats: nats ? 'connected' : 'off', subject_prefix: config.transport.subject_prefix },
    'node started',
  );
  return node;
}

/** The price table, or none (every record without cost_usd is then cost_source unknown). A bad file stops the start. */
function loadPrices(config: Config, log: Logger): PriceTable | undefined {
  const path = resolve(config.ingest.price_file);
  if (!existsSync(path)) {
    log.warn({ price_file: path }, 'no price file: records sent without cost_usd get cost_source unknown');
    return undefined;
  }
  return loadPriceTable(path);
}

async function openNats(config: Config, log: Logger): Promise<NatsTransport | undefined> {
  const { nats } = config.transport;
  const options = {
    servers: nats.servers,
    name: `usage-tracker:${config.node.id}`,
    connectTimeoutMs: nats.connect_timeout_ms,
    reconnectBaseMs: nats.reconnect_base_ms,
    reconnectMaxMs: nats.reconnect_max_ms,
    log,
    ...(nats.user !== undefined ? { user: nats.user } : {}),
    ...(nats.pass !== undefined ? { pass: nats.pass } : {}),
    ...(nats.token !== undefined ? { token: nats.token } : {}),
  };
  if (config.transport.kind === 'nats') return connectNats(options);
  try {
    return await connectNats(options);
  } catch (error) {
    log.info({ servers: nats.servers }, `NATS not reachable (${(error as Error).message}); serving in-process only`);
    return undefined;
  }
}
