// The read and update side of protocol v1 over the shards: record.get and
// record.update go to the one shard that owns the user; query.records and
// query.aggregate go to every shard that can hold matches (only the user's
// shard when user_id is given) and are gathered with a deadline. A shard
// that does not answer in time, or refuses, is named in `missing_shards`
// and `complete` is false: a shard is never silently left out.

import { ProtocolError, toProtocolError, type ErrorBody } from '../protocols/errors.js';
import type { StoredRecord, UsageRecord } from '../protocols/record.js';
import type { AggregateQuery, QueryFilters, RecordsQuery } from '../protocols/requests.js';
import type { ActorRef } from '../src/kernel/system.js';
import { mergePartials, type AggregatePartial } from '../src/query/aggregate.js';
import { mergePages } from '../src/query/records.js';
import { shardOf } from '../src/storage/node-meta.js';
import type { EndpointReply } from './gateway.js';
import type { PartitionMessage, PartitionReply } from './partition.js';

export interface StorageApiDependencies {
  shards: number;
  partition: (shard: number) => ActorRef<PartitionMessage, PartitionReply>;
  askTimeoutMs: number;
  queryTimeoutMs: number;
}

interface Gathered<T> {
  answers: T[];
  missing: { shard: number; code: string; message: string }[];
}

export class StorageApi {
  constructor(private readonly deps: StorageApiDependencies) {}

  private owner(userId: string) {
    return this.deps.partition(shardOf(userId, this.deps.shards));
  }

  async get(id: string, userId: string): Promise<EndpointReply> {
    const reply = (await this.owner(userId).ask({ type: 'get', id, user_id: userId }, { timeoutMs: this.deps.askTimeoutMs, caller: 'record.get' })) as { record: StoredRecord | null };
    if (!reply.record) throw new ProtocolError('E_NOT_FOUND', `no record ${id} for user ${userId}`);
    return { ok: true, record: reply.record };
  }

  async update(id: string, userId: string, expectedVersion: number, patch: Partial<UsageRecord>): Promise<EndpointReply> {
    const reply = (await this.owner(userId).ask(
      { type: 'update', id, user_id: userId, expected_version: expectedVersion, patch },
      { timeoutMs: this.deps.askTimeoutMs, caller: 'record.update' },
    )) as { version: number };
    return { ok: true, version: reply.version };
  }

  async records(query: RecordsQuery): Promise<EndpointReply> {
    const gathered = await this.gather<{ records: StoredRecord[] }>(query, { type: 'records', query });
    const page = mergePages(gathered.answers.map((answer) => answer.records), query.limit);
    return { ok: true, ...page, ...completeness(gathered) };
  }

  async aggregate(query: AggregateQuery): Promise<EndpointReply> {
    const gathered = await this.gather<{ partial: AggregatePartial }>(query, { type: 'aggregate', query });
    const rows = mergePartials(query, gathered.answers.map((answer) => answer.partial));
    return { ok: true, rows, ...completeness(gathered) };
  }

  private async gather<T>(filters: QueryFilters, message: PartitionMessage): Promise<Gathered<T>> {
    const shards = filters.user_id !== undefined ? [shardOf(filters.user_id, this.deps.shards)] : Array.from({ length: this.deps.shards }, (_, shard) => shard);
    const gathered: Gathered<T> = { answers: [], missing: [] };
    await Promise.all(
      shards.map(async (shard) => {
        try {
          gathered.answers.push((await this.deps.partition(shard).ask(message, { timeoutMs: this.deps.queryTimeoutMs, caller: `query (${message.type})` })) as T);
        } catch (thrown) {
          const error = toProtocolError(thrown);
          if (error.code === 'E_VALIDATION' || error.code === 'E_TOO_LARGE') throw error;
          const body: ErrorBody = error.toBody();
          gathered.missing.push({ shard, code: body.code, message: body.message });
        }
      }),
    );
    if (gathered.answers.length === 0 && gathered.missing.length > 0) {
      throw new ProtocolError('E_UNAVAILABLE', `no shard answered: ${gathered.missing.map((m) => `shard ${m.shard}: ${m.message}`).join('; ')}`, {
        details: { missing_shards: gathered.missing },
      });
    }
    return gathered;
  }
}

function completeness(gathered: Gathered<unknown>): { complete: boolean; missing_shards?: Gathered<unknown>['missing'] } {
  if (gathered.missing.length === 0) return { complete: true };
  return { complete: false, missing_shards: gathered.missing.sort((a, b) => a.shard - b.shard) };
}
