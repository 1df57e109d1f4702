// End to end over real NATS: generated records ingested in batches (with
// duplicates), updated concurrently, queried, the node restarted, queried
// again; every answer equals a brute-force computation over what the test
// knows it stored.

import t from 'tap';
import type { StoredRecord, UsageRecord } from '../../protocols/record.js';
import { createGenerator } from '../../src/demo/generate.js';
import { aggregateRecords } from '../../src/query/aggregate.js';
import { startTestNode, uniqueName, type TestNode } from '../helpers/node.js';

const DAY_MS = 86_400_000;
const YAML = 'cluster:\n  shards: 4\nstorage:\n  memtable_records_max: 700\n';
const TOTAL = 4000;

interface Model {
  records: Map<string, UsageRecord & { version: number }>;
}

async function allRecords(tn: TestNode, filters: Record<string, unknown> = {}, limit = 333): Promise<StoredRecord[]> {
  const out: StoredRecord[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < 1000; page++) {
    const reply = await tn.call('query.records', { ...filters, limit, ...(cursor ? { cursor } : {}) });
    if (!reply.ok) throw new Error(JSON.stringify(reply.error));
    if (!reply.complete) throw new Error('incomplete page');
    out.push(...reply.records);
    cursor = reply.next_cursor;
    if (!cursor) return out;
  }
  throw new Error('too many pages');
}

/** Count, tokens and cost per provider, computed here without the query engine. */
function bruteForce(model: Model, from: number) {
  const rows = new Map<string, { count: number; tokens: number; nanos: number; unknown: number }>();
  for (const record of model.records.values()) {
    if (record.ts < from) continue;
    const row = rows.get(record.provider) ?? { count: 0, tokens: 0, nanos: 0, unknown: 0 };
    row.count++;
    row.tokens += record.input_tokens + record.output_tokens;
    if (record.cost_usd === undefined) row.unknown++;
    else row.nanos += Math.round(record.cost_usd * 1e9);
    rows.set(record.provider, row);
  }
  return [...rows].sort(([a], [b]) => (a < b ? -1 : 1)).map(([provider, row]) => ({ provider, count: row.count, tokens: row.tokens, unknown: row.unknown, cost: row.nanos / 1e9 }));
}

t.test('ingest, update, query, restart: answers equal brute force', async (t) => {
  const prefix = uniqueName('iq');
  const nodeId = uniqueName('n');
  let tn = await startTestNode(YAML, {}, { prefix, nodeId, keepData: true });
  const dataDir = tn.config.node.data_dir;
  t.teardown(async () => {
    await tn.stop().catch(() => undefined);
    (await import('node:fs')).rmSync(dataDir, { recursive: true, force: true });
  });
  const now = Date.now();
  const generator = createGenerator({ seed: 42, users: 60, fromMs: now - 20 * DAY_MS, days: 20, count: TOTAL, idPrefix: 'iq', costFromClientRatio: 1 });
  const model: Model = { records: new Map() };
  let duplicates = 0;
  for (let start = 0; start < TOTAL; start += 400) {
    const batch = Array.from({ length: 400 }, (_, i) => generator.recordAt(start + i));
    const resent = start > 0 ? [generator.recordAt(start - 1), generator.recordAt(0)] : [];
    const reply = await tn.call('ingest', { records: [...batch, ...resent] });
    t.equal(reply.ok, true);
    for (const result of reply.results) {
      if (result.status === 'duplicate') duplicates++;
      else if (result.status !== 'stored') t.fail(`record ${result.index}: ${JSON.stringify(result.error)}`);
    }
    for (const record of batch) model.records.set(record.id, { ...record, version: 1 });
  }
  t.equal(duplicates, 2 * (TOTAL / 400 - 1), 'every re-sent id is a duplicate, never a second copy');

  const target = generator.recordAt(123);
  const attempts = await Promise.all(
    Array.from({ length: 12 }, (_, i) => tn.call('record.update', { id: target.id, user_id: target.user_id, expected_version: 1, patch: { output_tokens: 7000 + i } })),
  );
  const winners = attempts.filter((reply) => reply.ok);
  t.equal(winners.length, 1, 'exactly one concurrent update wins version 2');
  t.ok(attempts.filter((reply) => !reply.ok).every((reply) => reply.error.code === 'E_CONFLICT' && reply.error.current_version === 2), 'the rest get E_CONFLICT with the current version');
  const won = await tn.call('record.get', { id: target.id, user_id: target.user_id });
  model.records.set(target.id, { ...model.records.get(target.id)!, output_tokens: won.record.output_tokens, version: 2 });

  const check = async (label: string) => {
    const stored = await allRecords(tn);
    t.equal(stored.length, model.records.size, `${label}: every record once`);
    t.equal(new Set(stored.map((r) => r.id)).size, stored.length, `${label}: no id twice`);
    const wrong = stored.filter((r) => {
      const expected = model.records.get(r.id);
      return !expected || expected.version !== r.version || expected.output_tokens !== r.output_tokens || expected.ts !== r.ts;
    });
    t.same(wrong.map((r) => r.id), [], `${label}: each record as the model has it`);
    const sorted = stored.every((r, i) => i === 0 || stored[i - 1]!.ts <= r.ts);
    t.ok(sorted, `${label}: pages come in ts order`);

    const from = now - 10 * DAY_MS;
    const aggregate = await tn.call('query.aggregate', { from, group_by: ['provider'], metrics: ['count', 'tokens', 'cost'] });
    t.equal(aggregate.complete, true);
    const expected = bruteForce(model, from);
    t.same(
      aggregate.rows.map((row: any) => ({ provider: row.provider, count: row.count, tokens: row.tokens, unknown: row.cost_unknown_count, cost: Math.round(row.cost_usd * 1e6) })),
      expected.map((row) => ({ ...row, cost: Math.round(row.cost * 1e6) })),
      `${label}: count, tokens and cost per provider equal brute force`,
    );
    for (const query of [
      { group_by: ['user_id', 'day'], metrics: ['count', 'input_tokens', 'output_tokens', 'latency_p50', 'latency_p95'] },
      { user_id: target.user_id, group_by: ['model', 'hour'], metrics: ['count', 'tokens', 'cost', 'latency_p95'] },
      { provider: 'openai', status: 'success', group_by: ['model'], metrics: ['count', 'cost', 'latency_p50'] },
    ]) {
      const reply = await tn.call('query.aggregate', query);
      const all = [...model.records.values()].map((r) => ({ ...r, shard: 0, ingested_at: 0, cost_source: r.cost_usd === undefined ? 'unknown' : 'client' }) as StoredRecord);
      t.same(reply.rows, aggregateRecords(all, query as never), `${label}: ${JSON.stringify(query)}`);
    }
  };
  await check('before restart');
  await tn.stop();
  tn = await startTestNode(YAML, {}, { prefix, nodeId, dataDir, keepData: true });
  await check('after restart');
});
