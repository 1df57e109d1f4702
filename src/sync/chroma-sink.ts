// The Chroma mirror as a sync sink: every record, at its latest version, in
// three collections (seed §1) with the record's feature vector (features.ts)
// as its embedding, and each shard's checkpoint kept in Chroma itself.
//
// Promises:
// - Collections `<prefix>usage_patterns` (365 days), `<prefix>cost_optimization`
//   (180) and `<prefix>performance_metrics` (90), their retention in the
//   collection metadata (the RetentionActor deletes by `ts`; this file never
//   deletes for age). All three hold the same items with the same vector;
//   they differ in how long they keep them and in the question asked of
//   them. Item id `<shard>:<record id>` (split at the first ':'), metadata as
//   in `chromaMetadata`: `cost_usd` only when the cost is known, never 0 for
//   unknown.
// - Distance `l2` (Chroma's is squared Euclidean): the features are bounded
//   and centred, and their magnitude means something (0 is "neutral"), so a
//   squared L2 distance is a plain sum of per-feature contributions, readable
//   feature by feature. Cosine would throw magnitude away (1k tokens for
//   $0.01 would point the same way as 1M tokens for $10) and is undefined for
//   an all-neutral query vector.
// - Checkpoints in `<prefix>sync_checkpoints`: one item per shard, id
//   `shard-<k>`, embedding [0], metadata {seq}.
// - `apply` writes the records into the three collections, then the
//   checkpoint. Chroma has no transactions: a crash in between leaves the
//   checkpoint behind, so the batch is replayed, and replaying changes
//   nothing (upserts of the same versions). A record never overwrites a
//   newer version: the stored versions are read first (only this sink's
//   SyncActor writes these collections, so nothing moves in between).
// - Chroma's upsert merges metadata and ignores nulls, so a newer version
//   that lost a key (a cost that became unknown) would keep the old value:
//   such items are deleted, then written. A crash in between leaves them
//   missing until the replay writes them back.
// - Every request is bounded by `requestTimeoutMs`; a timeout aborts the
//   connection's requests (none lands late) and the sink must connect again.
// - Requests carry at most the server's max batch size of items (and at
//   most `requestRecordsMax`); a larger batch is split.

import { ChromaClient, ChromaConnectionError, type Collection, type Metadata } from 'chromadb';
import type { StoredRecord } from '../../protocols/record.js';
import { FEATURE_DIMENSIONS, FEATURE_VERSION, featuresOf } from './features.js';
import type { SyncSink } from './sink.js';

export interface ChromaSinkOptions {
  /** `http://host:port` of the Chroma server (v2 API). */
  url: string;
  /** Put before every collection name, so that test runs (or deployments) sharing a server keep apart. Production: ''. */
  collectionPrefix: string;
  /** Bound on each request, so a hung server becomes an error and a retry, not a stuck actor. Default 30 000. */
  requestTimeoutMs?: number;
  /** Most items in one request, below the server's own maximum. Default 1000. */
  requestRecordsMax?: number;
}

export class ChromaSinkError extends Error {
  override readonly name = 'ChromaSinkError';
}

export interface RecordCollection {
  readonly name: 'usage_patterns' | 'cost_optimization' | 'performance_metrics';
  readonly retentionDays: number;
  readonly description: string;
}

/** The record collections of seed §1, with their retention. */
export const RECORD_COLLECTIONS: readonly RecordCollection[] = Object.freeze([
  { name: 'usage_patterns', retentionDays: 365, description: 'User usage patterns and behavior analysis' },
  { name: 'cost_optimization', retentionDays: 180, description: 'Cost optimization insights and recommendations' },
  { name: 'performance_metrics', retentionDays: 90, description: 'Performance metrics and latency analysis' },
]);

export const CHECKPOINT_COLLECTION = 'sync_checkpoints';

const DEFAULTS = { requestTimeoutMs: 30_000, requestRecordsMax: 1000 };
/** Chroma's rule for collection names, which the prefix must not break. */
const PREFIX = /^(?:[a-zA-Z0-9][a-zA-Z0-9._-]{0,299})?$/;
const CHECKPOINT_ID = /^shard-(\d+)$/;

/** The item id of a record: shard first, as in the shards' own dedup (a record id may contain ':'). */
export function chromaId(shard: number, id: string): string {
  return `${shard}:${id}`;
}

/** The item metadata of a record. Optional fields are left out when absent, never written as 0. */
export function chromaMetadata(record: StoredRecord): Metadata {
  const metadata: Metadata = {
    user_id: record.user_id,
    provider: record.provider,
    model: record.model,
    ts: record.ts,
    day: new Date(record.ts).toISOString().slice(0, 10),
    input_tokens: record.input_tokens,
    output_tokens: record.output_tokens,
    cost_source: record.cost_source,
    status: record.status,
    version: record.version,
    seq: record.seq,
    shard: record.shard,
  };
  if (record.cost_source !== 'unknown' && record.cost_usd !== undefined) metadata.cost_usd = record.cost_usd;
  if (record.latency_ms !== undefined) metadata.latency_ms = record.latency_ms;
  if (record.operation !== undefined) metadata.operation = record.operation;
  return metadata;
}

interface Connection {
  readonly client: ChromaClient;
  readonly abort: AbortController;
  readonly records: readonly Collection[];
  readonly checkpoints: Collection;
  readonly itemsPerRequestMax: number;
}

interface Item {
  id: string;
  version: number;
  embedding: number[];
  metadata: Metadata;
}

export class ChromaSink implements SyncSink {
  readonly backend = 'chroma';
  private readonly host: string;
  private readonly port: number;
  private readonly ssl: boolean;
  private readonly requestTimeoutMs: number;
  private readonly requestRecordsMax: number;
  private connection: Connection | undefined;

  constructor(private readonly options: ChromaSinkOptions) {
    let url: URL;
    try {
      url = new URL(options.url);
    } catch (error) {
      throw new ChromaSinkError(`Chroma url ${JSON.stringify(options.url)} is not a URL`, { cause: error });
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ChromaSinkError(`Chroma url ${options.url} must be http: or https:`);
    if (url.pathname !== '/' || url.search !== '') throw new ChromaSinkError(`Chroma url ${options.url} must have no path or query (the client talks to /api/v2 at the root)`);
    if (!PREFIX.test(options.collectionPrefix)) {
      throw new ChromaSinkError(`collectionPrefix ${JSON.stringify(options.collectionPrefix)} must be empty or start with a letter or digit, then letters, digits, '.', '_' or '-'`);
    }
    this.ssl = url.protocol === 'https:';
    this.host = url.hostname;
    this.port = url.port === '' ? (this.ssl ? 443 : 80) : Number(url.port);
    this.requestTimeoutMs = positive('requestTimeoutMs', options.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs);
    this.requestRecordsMax = positive('requestRecordsMax', options.requestRecordsMax ?? DEFAULTS.requestRecordsMax);
  }

  /** The full name of a collection, prefix included. */
  collectionName(name: string): string {
    return `${this.options.collectionPrefix}${name}`;
  }

  async connect(): Promise<void> {
    await this.close();
    const abort = new AbortController();
    const client = new ChromaClient({ host: this.host, port: this.port, ssl: this.ssl, fetchOptions: { signal: abort.signal } });
    const bounded = <T>(what: string, run: () => Promise<T>) => this.bounded(abort, what, run);
    try {
      await bounded('a heartbeat', () => client.heartbeat());
      const records: Collection[] = [];
      for (const spec of RECORD_COLLECTIONS) {
        const collection = await bounded(`opening ${this.collectionName(spec.name)}`, () =>
          client.getOrCreateCollection({
            name: this.collectionName(spec.name),
            metadata: { description: spec.description, retention_days: spec.retentionDays, feature_version: FEATURE_VERSION, feature_dimensions: FEATURE_DIMENSIONS },
            configuration: { hnsw: { space: 'l2' } },
            // null, not undefined: undefined would make the client fetch its default embedding model.
            embeddingFunction: null,
          }),
        );
        this.checkFeatures(collection);
        records.push(collection);
      }
      const checkpoints = await bounded(`opening ${this.collectionName(CHECKPOINT_COLLECTION)}`, () =>
        client.getOrCreateCollection({
          name: this.collectionName(CHECKPOINT_COLLECTION),
          metadata: { description: 'Per shard, the change-feed seq the record collections hold everything up to' },
          embeddingFunction: null,
        }),
      );
      const serverMax = await bounded('the max batch size', () => client.getMaxBatchSize());
      const itemsPerRequestMax = serverMax > 0 ? Math.min(serverMax, this.requestRecordsMax) : this.requestRecordsMax;
      this.connection = { client, abort, records, checkpoints, itemsPerRequestMax };
    } catch (error) {
      abort.abort();
      throw error;
    }
  }

  /** Vectors of another layout are not comparable with ours: refuse to mix them. */
  private checkFeatures(collection: Collection): void {
    const { feature_version: version, feature_dimensions: dimensions } = collection.metadata ?? {};
    if (version !== FEATURE_VERSION || dimensions !== FEATURE_DIMENSIONS) {
      throw new ChromaSinkError(
        `Chroma collection ${collection.name} at ${this.options.url} holds feature vectors of version ${String(version)} (${String(dimensions)} dimensions); ` +
          `this release writes version ${FEATURE_VERSION} (${FEATURE_DIMENSIONS}): delete the collection (or use another prefix) and resync`,
      );
    }
  }

  async checkpoints(): Promise<Map<number, number>> {
    const { checkpoints } = this.requireConnection();
    const result = await this.request('reading checkpoints', () => checkpoints.get({ include: ['metadatas'] }));
    const out = new Map<number, number>();
    result.ids.forEach((id, index) => {
      const shard = CHECKPOINT_ID.exec(id)?.[1];
      const seq = result.metadatas[index]?.seq;
      if (shard === undefined || typeof seq !== 'number') {
        throw new ChromaSinkError(`${checkpoints.name} holds an item that is not a checkpoint: ${id} ${JSON.stringify(result.metadatas[index])}`);
      }
      out.set(Number(shard), seq);
    });
    return out;
  }

  async apply(shard: number, records: readonly StoredRecord[], nextSeq: number): Promise<void> {
    assertSeq(shard, nextSeq);
    const connection = this.requireConnection();
    const items = itemsOf(shard, records);
    for (let start = 0; start < items.length; start += connection.itemsPerRequestMax) {
      const chunk = items.slice(start, start + connection.itemsPerRequestMax);
      for (const collection of connection.records) await this.write(collection, chunk);
    }
    await this.setCheckpoint(shard, nextSeq);
  }

  /** Writes one chunk into one collection: never over a newer version, never leaving a stale key behind. */
  private async write(collection: Collection, chunk: readonly Item[]): Promise<void> {
    const ids = chunk.map((item) => item.id);
    const stored = await this.request(`reading versions in ${collection.name}`, () => collection.get({ ids, include: ['metadatas'] }));
    const storedById = new Map(stored.ids.map((id, index) => [id, stored.metadatas[index] ?? {}]));
    const fresh = chunk.filter((item) => {
      const version = storedById.get(item.id)?.version;
      return typeof version !== 'number' || version <= item.version;
    });
    if (fresh.length === 0) return;
    const shrinking = fresh.filter((item) => {
      const old = storedById.get(item.id);
      return old !== undefined && Object.keys(old).some((key) => !(key in item.metadata));
    });
    if (shrinking.length > 0) {
      await this.request(`deleting stale items in ${collection.name}`, () => collection.delete({ ids: shrinking.map((item) => item.id) }));
    }
    await this.request(`upserting into ${collection.name}`, () =>
      collection.upsert({
        ids: fresh.map((item) => item.id),
        embeddings: fresh.map((item) => item.embedding),
        metadatas: fresh.map((item) => item.metadata),
      }),
    );
  }

  /** Retention: removes records of a shard from the three collections (absent ids are no error). */
  async remove(shard: number, ids: readonly string[]): Promise<void> {
    const connection = this.requireConnection();
    for (let start = 0; start < ids.length; start += connection.itemsPerRequestMax) {
      const chunk = ids.slice(start, start + connection.itemsPerRequestMax).map((id) => chromaId(shard, id));
      for (const collection of connection.records) await this.request(`deleting retained items in ${collection.name}`, () => collection.delete({ ids: chunk }));
    }
  }

  /**
   * Retention (analytics_insights_days): removes items whose record `ts` is
   * older than `maxDays`, or than the collection's own retention when shorter.
   */
  async expireOlderThan(nowMs: number, maxDays: number): Promise<void> {
    const connection = this.requireConnection();
    for (const [index, collection] of connection.records.entries()) {
      const days = Math.min(maxDays, RECORD_COLLECTIONS[index]!.retentionDays);
      const before = nowMs - days * 86_400_000;
      await this.request(`expiring items in ${collection.name}`, () => collection.delete({ where: { ts: { $lt: before } } }));
    }
  }

  async setCheckpoint(shard: number, seq: number): Promise<void> {
    assertSeq(shard, seq);
    const { checkpoints } = this.requireConnection();
    await this.request(`moving the checkpoint of shard ${shard}`, () =>
      checkpoints.upsert({ ids: [`shard-${shard}`], embeddings: [[0]], metadatas: [{ seq }] }),
    );
  }

  async close(): Promise<void> {
    const connection = this.connection;
    this.connection = undefined;
    // The client holds no sockets of its own (fetch's pool does); aborting ends whatever this sink still has in flight.
    connection?.abort.abort();
  }

  private requireConnection(): Connection {
    if (!this.connection) throw new ChromaSinkError(`Chroma sink (${this.options.url}) is not connected`);
    return this.connection;
  }

  private request<T>(what: string, run: () => Promise<T>): Promise<T> {
    const connection = this.requireConnection();
    return this.bounded(connection.abort, what, run);
  }

  /**
   * Runs one request under the timeout. A timeout aborts every request of
   * the connection, so none lands after the caller has moved on, and drops
   * the connection: the next call must connect again.
   */
  private async bounded<T>(abort: AbortController, what: string, run: () => Promise<T>): Promise<T> {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      abort.abort();
      if (this.connection?.abort === abort) this.connection = undefined;
    }, this.requestTimeoutMs);
    try {
      return await run();
    } catch (error) {
      if (timedOut) throw new ChromaSinkError(`Chroma at ${this.options.url} did not answer ${what} within ${this.requestTimeoutMs} ms`, { cause: error });
      if (abort.signal.aborted) throw new ChromaSinkError(`Chroma sink (${this.options.url}) was closed during ${what}`, { cause: error });
      if (error instanceof ChromaConnectionError) {
        throw new ChromaSinkError(`Chroma at ${this.options.url} is unreachable (${what} failed): is the server running?`, { cause: error });
      }
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }
}

function positive(name: string, value: number): number {
  if (!Number.isInteger(value) || value <= 0) throw new ChromaSinkError(`${name} must be a whole number above 0, got ${value}`);
  return value;
}

function assertSeq(shard: number, seq: number): void {
  if (!Number.isSafeInteger(shard) || shard < 0) throw new Error(`shard must be a whole number >= 0, got ${shard}`);
  if (!Number.isSafeInteger(seq) || seq < 0) throw new Error(`seq must be a whole number >= 0, got ${seq}`);
}

/** One item per record id (the newest version when a batch repeats one), vectors computed once for all collections. */
function itemsOf(shard: number, records: readonly StoredRecord[]): Item[] {
  const newest = new Map<string, StoredRecord>();
  for (const record of records) {
    // A shard's feed only holds the shard's records: anything else is a broken invariant, not a bad input.
    if (record.shard !== shard) throw new Error(`record ${record.id} of shard ${record.shard} in a batch of shard ${shard}`);
    const seen = newest.get(record.id);
    if (seen === undefined || seen.version < record.version) newest.set(record.id, record);
  }
  return [...newest.values()].map((record) => ({
    id: chromaId(shard, record.id),
    version: record.version,
    embedding: featuresOf(record),
    metadata: chromaMetadata(record),
  }));
}
