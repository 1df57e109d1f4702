// Retention and the Chroma mirror (a real Chroma server): ids a run removes
// locally leave all three collections, and items older than
// analytics_insights_days leave Chroma only (local data keeps them).

import t from 'tap';
import { ChromaClient } from 'chromadb';
import { RECORD_COLLECTIONS } from '../../src/sync/chroma-sink.js';
import { startChroma } from '../helpers/chroma.js';
import { caughtUp, localRecords } from '../helpers/mirror.js';
import { startTestNode, uniqueName, type TestNode } from '../helpers/node.js';

const DAY_MS = 86_400_000;
const server = await startChroma();
t.teardown(() => server.stop());

function records(prefix: string, count: number, base: number, provider: string) {
  return Array.from({ length: count }, (_, i) => ({
    id: `${prefix}-${i}`,
    ts: base + i * 60_000,
    user_id: `user-${i % 4}`,
    provider,
    model: 'm-1',
    input_tokens: 100 + i,
    output_tokens: 10 + i,
    cost_usd: 0.001,
    latency_ms: 100 + i,
  }));
}

async function sealAll(node: TestNode) {
  for (let shard = 0; shard < node.config.cluster.shards; shard++) {
    await node.node.system.ref(`${node.config.node.id}/shards/partition-${shard}`).ask({ type: 'seal' }, { timeoutMs: 10_000, caller: 'test' });
  }
}

t.test('removed ids leave every Chroma collection; analytics_insights_days expires old items from Chroma only', async (t) => {
  const collectionPrefix = uniqueName('ret');
  const yaml =
    `cluster:\n  shards: 2\nbackends:\n  chroma:\n    url: ${server.url}\n    collection_prefix: ${collectionPrefix}\n    window_ms: 20\n    retry_base_ms: 50\n    retry_max_ms: 500\n` +
    `retention:\n  schedule_interval_hours: 0\n  analytics_insights_days: 60\n  policies:\n    - {name: drop-openai, category: raw_usage, type: conditional, action: delete, max_age_days: 30, where: {provider: openai}}\n`;
  const node = await startTestNode(yaml);
  t.teardown(() => node.stop());
  const prefix = uniqueName('c');
  const old = Date.now() - 70 * DAY_MS;
  await node.call('ingest', { records: records(`${prefix}-openai`, 40, old, 'openai') });
  await node.call('ingest', { records: records(`${prefix}-anthropic`, 30, old, 'anthropic') });
  await node.call('ingest', { records: records(`${prefix}-new`, 20, Date.now() - DAY_MS, 'anthropic') });
  await sealAll(node);
  await caughtUp(node, 1, 60_000);
  const url = new URL(server.url);
  const client = new ChromaClient({ host: url.hostname, port: Number(url.port), ssl: false });
  const counts = async () => Promise.all(RECORD_COLLECTIONS.map(async (spec) => (await client.getCollection({ name: `${collectionPrefix}${spec.name}`, embeddingFunction: null as never })).count()));
  t.same(await counts(), [90, 90, 90], 'every record is in the three collections');

  const run = await node.call('admin.retention.run', {});
  t.equal(run.totals.records_removed, 40, JSON.stringify(run.error ?? run.totals));
  t.same(run.mirrors.chroma, { removed: 40, pending: 0 });
  t.equal(run.categories.analytics_insights.chroma, 'done');
  t.same(await counts(), [20, 20, 20], 'the removed ids and the items older than 60 days are gone from Chroma');
  const local = await localRecords(node);
  t.equal(local.size, 50, 'local data keeps the old anthropic records');
  const items = await (await client.getCollection({ name: `${collectionPrefix}usage_patterns`, embeddingFunction: null as never })).get({ include: ['metadatas'] });
  t.ok(items.ids.every((id) => id.includes(`${prefix}-new-`)), 'what is left in Chroma is the recent records');
});
