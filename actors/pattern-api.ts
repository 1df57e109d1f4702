// Usage patterns: `query.similar` and `query.anomalies`, over the feature
// vectors of src/sync/features.ts.
//
// - similar: the records whose vector is nearest to a given record's or to a
//   described call's, found by the Chroma mirror's index and then read from
//   local storage at their current version (a record the mirror has but
//   local data no longer has is left out). Needs the Chroma mirror; without
//   it the answer is E_UNAVAILABLE saying so. Results follow the mirror, so
//   the newest records appear once it has caught up.
// - anomalies: computed from local data, exactly, with no dependence on the
//   mirror: the user's records in the window, the per-dimension median as
//   their usual pattern, each record's distance to it, and a robust z-score
//   (distance minus the median distance, over 1.4826 × the median absolute
//   deviation). Records above `threshold` are anomalies, strongest first,
//   each with the features that pull it away most (share of the squared
//   distance), so the answer explains itself.

import { ProtocolError } from '../protocols/errors.js';
import type { StoredRecord } from '../protocols/record.js';
import type { AnomaliesQuery, SimilarQuery } from '../protocols/requests.js';
import type { ChromaSearch } from '../src/sync/chroma-search.js';
import { FEATURE_LAYOUT, featuresOf, featuresOfDescription } from '../src/sync/features.js';
import type { EndpointReply } from './gateway.js';
import type { StorageApi } from './storage-api.js';

/** Most records an anomaly query reads; a longer history asks for a narrower window. */
export const ANOMALY_RECORDS_MAX = 50_000;
/** Fewer records than this are no pattern to stand out from. */
export const ANOMALY_RECORDS_MIN = 10;
const MAD_TO_SIGMA = 1.4826;

export interface PatternDependencies {
  storage: StorageApi;
  /** The Chroma index, when the mirror is configured. */
  search: ChromaSearch | undefined;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Which feature groups pull a vector away from the centre most: name and share of the squared distance. */
function reasonsOf(vector: readonly number[], centre: readonly number[]): { feature: string; share: number }[] {
  const parts = FEATURE_LAYOUT.map((group) => {
    let sum = 0;
    for (let i = group.offset; i < group.offset + group.size; i++) sum += (vector[i]! - centre[i]!) ** 2;
    return { feature: group.name, sum };
  });
  const total = parts.reduce((sum, part) => sum + part.sum, 0);
  if (total === 0) return [];
  return parts
    .filter((part) => part.sum > 0)
    .sort((a, b) => b.sum - a.sum)
    .slice(0, 3)
    .map((part) => ({ feature: part.feature, share: Math.round((part.sum / total) * 1000) / 1000 }));
}

export class PatternApi {
  constructor(private readonly deps: PatternDependencies) {}

  async similar(query: SimilarQuery): Promise<EndpointReply> {
    const search = this.deps.search;
    if (!search) throw new ProtocolError('E_UNAVAILABLE', 'query.similar needs the Chroma mirror: set backends.chroma in cluster.yml (or USAGE_TRACKER_CHROMA_URL)');
    let vector: number[];
    let exclude: string | undefined;
    if (query.like) {
      const reply = (await this.deps.storage.get(query.like.id, query.like.user_id)) as unknown as { record: StoredRecord };
      vector = featuresOf(reply.record);
      exclude = `${reply.record.shard}:${reply.record.id}`;
    } else {
      vector = featuresOfDescription(query.description ?? {});
    }
    const filters = {
      ...(query.user_id !== undefined ? { user_id: query.user_id } : {}),
      ...(query.provider !== undefined ? { provider: query.provider } : {}),
      ...(query.from !== undefined ? { from: query.from } : {}),
      ...(query.to !== undefined ? { to: query.to } : {}),
    };
    const neighbours = await search.nearest(vector, filters, query.limit + (exclude ? 1 : 0));
    const results: { record: StoredRecord; distance: number }[] = [];
    for (const neighbour of neighbours) {
      if (`${neighbour.shard}:${neighbour.id}` === exclude || results.length >= query.limit) continue;
      try {
        const reply = (await this.deps.storage.get(neighbour.id, neighbour.user_id)) as unknown as { record: StoredRecord };
        results.push({ record: reply.record, distance: neighbour.distance });
      } catch (error) {
        if ((error as ProtocolError).code !== 'E_NOT_FOUND') throw error;
      }
    }
    return { ok: true, results };
  }

  async anomalies(query: AnomaliesQuery): Promise<EndpointReply> {
    const records = await this.userRecords(query);
    if (records.length < ANOMALY_RECORDS_MIN) {
      return { ok: true, user_id: query.user_id, records_considered: records.length, enough_history: false, results: [] };
    }
    const vectors = records.map(featuresOf);
    const dimensions = vectors[0]!.length;
    const centre = Array.from({ length: dimensions }, (_, d) => median(vectors.map((vector) => vector[d]!)));
    const distances = vectors.map((vector) => Math.sqrt(vector.reduce((sum, value, d) => sum + (value - centre[d]!) ** 2, 0)));
    const medianDistance = median(distances);
    const mad = median(distances.map((distance) => Math.abs(distance - medianDistance)));
    // All alike (MAD 0): any record off the common pattern stands out infinitely; report it with a large finite score.
    const scale = Math.max(MAD_TO_SIGMA * mad, 1e-6);
    const scored = records
      .map((record, index) => ({ record, index, distance: distances[index]!, score: (distances[index]! - medianDistance) / scale }))
      .filter((entry) => entry.score > query.threshold)
      .sort((a, b) => b.score - a.score || a.record.ts - b.record.ts)
      .slice(0, query.limit);
    return {
      ok: true,
      user_id: query.user_id,
      records_considered: records.length,
      enough_history: true,
      baseline: { median_distance: round(medianDistance), mad: round(mad) },
      results: scored.map((entry) => ({
        record: entry.record,
        distance: round(entry.distance),
        score: round(entry.score),
        reasons: reasonsOf(vectors[entry.index]!, centre),
      })),
    };
  }

  /** The user's records in the window, every page; E_TOO_LARGE past ANOMALY_RECORDS_MAX. */
  private async userRecords(query: AnomaliesQuery): Promise<StoredRecord[]> {
    const records: StoredRecord[] = [];
    let cursor: string | undefined;
    do {
      const page = (await this.deps.storage.records({
        user_id: query.user_id,
        ...(query.provider !== undefined ? { provider: query.provider } : {}),
        ...(query.from !== undefined ? { from: query.from } : {}),
        ...(query.to !== undefined ? { to: query.to } : {}),
        limit: 1000,
        ...(cursor !== undefined ? { cursor } : {}),
      })) as unknown as { records: StoredRecord[]; next_cursor?: string; complete: boolean };
      if (!page.complete) throw new ProtocolError('E_UNAVAILABLE', `the shard of user ${query.user_id} did not answer`);
      records.push(...page.records);
      if (records.length > ANOMALY_RECORDS_MAX) {
        throw new ProtocolError('E_TOO_LARGE', `user ${query.user_id} has more than ${ANOMALY_RECORDS_MAX} records in this window; narrow it with from and to`);
      }
      cursor = page.next_cursor;
    } while (cursor !== undefined);
    return records;
  }
}

const round = (value: number) => Math.round(value * 10_000) / 10_000;
