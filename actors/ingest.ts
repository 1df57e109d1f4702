// IngestActor: validates and normalises a decoded ingest body, prices the
// records the client sent without cost_usd, routes each to its shard (FNV-1a
// of user_id modulo the shard count), asks the shards' PartitionActors in
// parallel and answers one result per record. Stateless: a pool of them
// runs behind the API, on every node. Its answers are `later`, so one slow
// shard never holds up the next request in its mailbox.

import { ProtocolError, toProtocolError } from '../protocols/errors.js';
import type { ProtocolLimits } from '../protocols/limits.js';
import { recordValidator, type UsageRecord } from '../protocols/record.js';
import { parseIngest } from '../protocols/requests.js';
import { later, type Behavior } from '../src/kernel/actor.js';
import type { ActorRef } from '../src/kernel/system.js';
import { price, type PriceTable } from '../src/pricing/price-table.js';
import { shardOf } from '../src/storage/node-meta.js';
import type { NewRecord, WriteResult } from '../src/storage/shard-store.js';
import type { EndpointReply } from './gateway.js';
import type { PartitionMessage, PartitionReply } from './partition.js';

export interface IngestMessage {
  body: unknown;
}

export interface IngestResult {
  index: number;
  id?: string;
  status: 'stored' | 'duplicate' | 'rejected';
  version?: number;
  error?: ReturnType<ProtocolError['toBody']>;
}

export interface IngestDependencies {
  limits: ProtocolLimits;
  now: () => number;
  shards: number;
  prices: PriceTable | undefined;
  partition: (shard: number) => ActorRef<PartitionMessage, PartitionReply>;
  askTimeoutMs: number;
}

/** Completes a validated record (a fresh object the validator made, so it is changed in place). */
export function normalise(record: UsageRecord, prices: PriceTable | undefined, now: number): NewRecord {
  const out = record as NewRecord;
  out.ingested_at = now;
  if (record.cost_usd !== undefined) {
    out.cost_source = 'client';
    return out;
  }
  const priced = prices ? price(prices, record) : undefined;
  if (priced?.cost_source === 'price_table') {
    out.cost_usd = priced.cost_usd;
    out.cost_source = 'price_table';
  } else {
    out.cost_source = 'unknown';
  }
  return out;
}

export function ingestBehavior(deps: IngestDependencies): Behavior<IngestMessage, EndpointReply> {
  const validator = recordValidator(deps.limits, deps.now);
  return {
    receive(message) {
      const items = parseIngest(message.body, validator, deps.limits);
      const results: IngestResult[] = new Array(items.length);
      const byShard = new Map<number, { indices: number[]; records: NewRecord[] }>();
      const now = deps.now();
      for (const item of items) {
        if (!item.ok) {
          results[item.index] = { index: item.index, ...(item.id !== undefined ? { id: item.id } : {}), status: 'rejected', error: item.error.toBody() };
          continue;
        }
        const shard = shardOf(item.record.user_id, deps.shards);
        let group = byShard.get(shard);
        if (!group) byShard.set(shard, (group = { indices: [], records: [] }));
        group.indices.push(item.index);
        group.records.push(normalise(item.record, deps.prices, now));
      }
      const asks = [...byShard].map(async ([shard, group]) => {
        let written: WriteResult[];
        try {
          const reply = (await deps.partition(shard).ask({ type: 'write', records: group.records }, { timeoutMs: deps.askTimeoutMs, caller: 'IngestActor (write)' })) as {
            results: WriteResult[];
          };
          written = reply.results;
        } catch (thrown) {
          const error = toProtocolError(thrown);
          const body =
            error.code === 'E_TIMEOUT'
              ? new ProtocolError('E_TIMEOUT', `shard ${shard} did not answer in time; the outcome is unknown: resend (the id makes it safe)`).toBody()
              : error.toBody();
          group.indices.forEach((index, position) => {
            results[index] = { index, id: group.records[position]!.id, status: 'rejected', error: body };
          });
          return;
        }
        group.indices.forEach((index, position) => {
          const result = written[position]!;
          const id = group.records[position]!.id;
          results[index] = result.status === 'rejected' ? { index, id, status: 'rejected', error: result.error } : { index, id, status: result.status, version: result.version };
        });
      });
      return later(Promise.all(asks).then(() => ({ ok: true as const, results })));
    },
  };
}
