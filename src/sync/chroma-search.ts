// Nearest-neighbour search over the Chroma mirror's `usage_patterns`
// collection, for `query.similar`. Read-only, with a client of its own (the
// SyncActor's connection is never shared), each request bounded in time.
// It answers with item keys and distances; the caller reads the records
// themselves from local storage, the source of truth.

import { ChromaClient, ChromaConnectionError, type Where } from 'chromadb';
import { ProtocolError } from '../../protocols/errors.js';
import { FEATURE_DIMENSIONS, FEATURE_VERSION } from './features.js';

export interface ChromaSearchOptions {
  url: string;
  collectionPrefix: string;
  requestTimeoutMs: number;
}

export interface SearchFilters {
  user_id?: string;
  provider?: string;
  from?: number;
  to?: number;
}

export interface Neighbour {
  shard: number;
  id: string;
  user_id: string;
  distance: number;
}

/** Chroma's `where`: one condition alone, several under `$and` (it refuses `$and` of one). */
export function whereOf(filters: SearchFilters): Where | undefined {
  const conditions: Where[] = [];
  if (filters.user_id !== undefined) conditions.push({ user_id: { $eq: filters.user_id } });
  if (filters.provider !== undefined) conditions.push({ provider: { $eq: filters.provider } });
  if (filters.from !== undefined) conditions.push({ ts: { $gte: filters.from } });
  if (filters.to !== undefined) conditions.push({ ts: { $lt: filters.to } });
  if (conditions.length === 0) return undefined;
  return conditions.length === 1 ? conditions[0] : { $and: conditions };
}

export class ChromaSearch {
  private readonly client: ChromaClient;

  constructor(private readonly options: ChromaSearchOptions) {
    const url = new URL(options.url);
    const ssl = url.protocol === 'https:';
    this.client = new ChromaClient({ host: url.hostname, port: url.port === '' ? (ssl ? 443 : 80) : Number(url.port), ssl });
  }

  /** The `limit` items nearest to `vector` that match the filters, nearest first. */
  async nearest(vector: readonly number[], filters: SearchFilters, limit: number): Promise<Neighbour[]> {
    if (vector.length !== FEATURE_DIMENSIONS) throw new RangeError(`a feature vector has ${FEATURE_DIMENSIONS} dimensions, not ${vector.length}`);
    const timer = AbortSignal.timeout(this.options.requestTimeoutMs);
    try {
      const run = async () => {
        const collection = await this.client.getCollection({ name: `${this.options.collectionPrefix}usage_patterns`, embeddingFunction: null as never });
        if (collection.metadata?.feature_version !== FEATURE_VERSION) {
          throw new ProtocolError('E_UNAVAILABLE', `the Chroma mirror holds feature vectors of another version (${String(collection.metadata?.feature_version)}); resync it`);
        }
        const where = whereOf(filters);
        return collection.query({ queryEmbeddings: [[...vector]], nResults: limit, include: ['metadatas', 'distances'], ...(where ? { where } : {}) });
      };
      const result = await Promise.race([
        run(),
        new Promise<never>((_, reject) => timer.addEventListener('abort', () => reject(new ProtocolError('E_TIMEOUT', `Chroma at ${this.options.url} did not answer within ${this.options.requestTimeoutMs} ms`)))),
      ]);
      const ids = result.ids[0] ?? [];
      const distances = result.distances[0] ?? [];
      const metadatas = result.metadatas[0] ?? [];
      return ids.map((key, index) => {
        const split = key.indexOf(':');
        return {
          shard: Number(key.slice(0, split)),
          id: key.slice(split + 1),
          user_id: String(metadatas[index]?.user_id ?? ''),
          distance: distances[index] ?? Number.NaN,
        };
      });
    } catch (error) {
      if (error instanceof ProtocolError) throw error;
      if (error instanceof ChromaConnectionError) throw new ProtocolError('E_UNAVAILABLE', `Chroma at ${this.options.url} is unreachable: ${error.message}`);
      throw new ProtocolError('E_UNAVAILABLE', `Chroma at ${this.options.url} failed: ${(error as Error).message}`);
    }
  }
}
