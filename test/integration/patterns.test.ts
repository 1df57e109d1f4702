// query.similar (over the Chroma mirror, a real server) and query.anomalies
// (from local data): they find what a person would point at, explain it,
// honour their filters, and refuse bad input clearly.

import t from 'tap';
import { startChroma } from '../helpers/chroma.js';
import { caughtUp } from '../helpers/mirror.js';
import { startTestNode, uniqueName, type TestNode } from '../helpers/node.js';

const HOUR_MS = 3_600_000;
const BASE = Date.now() - 5 * 24 * HOUR_MS;

/** A user's ordinary calls: one provider and model, tokens, cost and latency in a narrow band. */
function ordinary(user: string, count: number, prefix: string) {
  return Array.from({ length: count }, (_, i) => ({
    id: `${prefix}-${user}-n${i}`,
    ts: BASE + i * 600_000,
    user_id: user,
    provider: 'anthropic',
    model: 'claude-sonnet-4',
    input_tokens: 1800 + (i % 7) * 40,
    output_tokens: 400 + (i % 5) * 20,
    cost_usd: 0.012 + (i % 3) * 0.001,
    latency_ms: 2200 + (i % 9) * 50,
  }));
}

/** Calls no one would call ordinary for that user. */
function outliers(user: string, prefix: string) {
  return [
    { id: `${prefix}-${user}-x1`, ts: BASE + 3 * HOUR_MS, user_id: user, provider: 'openai', model: 'o3', input_tokens: 900_000, output_tokens: 90_000, cost_usd: 45, latency_ms: 600_000 },
    { id: `${prefix}-${user}-x2`, ts: BASE + 5 * HOUR_MS, user_id: user, provider: 'anthropic', model: 'claude-sonnet-4', input_tokens: 1900, output_tokens: 420, status: 'error', error_code: 'overloaded', latency_ms: 80_000 },
    { id: `${prefix}-${user}-x3`, ts: BASE + 7 * HOUR_MS, user_id: user, provider: 'ollama', model: 'llama3:70b', input_tokens: 250_000, output_tokens: 30_000, cost_usd: 0, latency_ms: 400_000 },
  ];
}

async function expectError(node: TestNode, endpoint: 'query.similar' | 'query.anomalies', body: unknown, code: string, field?: string) {
  const reply = await node.call(endpoint, body);
  t.equal(reply.ok, false, `${endpoint} ${JSON.stringify(body).slice(0, 80)}: refused`);
  t.equal(reply.error?.code, code, `... with ${code}`);
  if (field !== undefined) t.equal(reply.error?.field, field, `... naming ${field}`);
  t.match(reply.error?.message ?? '', /.{10,}/, '... saying why');
}

t.test('anomalies: the odd calls of a user come first, each with the features that make it odd', async (t) => {
  const node = await startTestNode('cluster:\n  shards: 2\n');
  t.teardown(() => node.stop());
  const prefix = uniqueName('a');
  const normal = ordinary('alice', 200, prefix);
  const odd = outliers('alice', prefix);
  await node.call('ingest', { records: [...normal, ...odd, ...ordinary('bob', 50, prefix)] });

  const reply = await node.call('query.anomalies', { user_id: 'alice' });
  t.equal(reply.ok, true);
  t.equal(reply.records_considered, 203, 'only alice, all of her records');
  t.equal(reply.enough_history, true);
  const ids = reply.results.map((r: any) => r.record.id);
  t.same(new Set(ids.slice(0, 3)), new Set(odd.map((r) => r.id)), 'the three odd calls come first');
  t.ok(ids.length <= 5, `few ordinary calls are flagged (${ids.length} results)`);
  for (let i = 1; i < reply.results.length; i++) t.ok(reply.results[i - 1].score >= reply.results[i].score, 'strongest first');
  const byId = new Map(reply.results.map((r: any) => [r.record.id, r]));
  const reasons = (id: string) => (byId.get(id) as any).reasons.map((r: any) => r.feature);
  t.ok(reasons(odd[0]!.id).some((f: string) => ['provider', 'model', 'input_tokens', 'cost', 'latency'].includes(f)), 'the $45 openai call: provider, size or cost');
  t.ok(reasons(odd[1]!.id).includes('status'), 'the error: its status');
  for (const result of reply.results) t.ok(result.score > 3.5 && Number.isFinite(result.score), 'scores above the threshold');

  const openaiOnly = await node.call('query.anomalies', { user_id: 'alice', provider: 'OpenAI' });
  t.equal(openaiOnly.records_considered, 1, 'the provider filter applies (and is case-insensitive)');
  t.equal(openaiOnly.enough_history, false, 'one record is no pattern');
  t.same(openaiOnly.results, []);
  const window = await node.call('query.anomalies', { user_id: 'alice', from: BASE + 4 * HOUR_MS, to: BASE + 6 * HOUR_MS });
  t.ok(window.records_considered < 20, 'the time filter applies');
  const strict = await node.call('query.anomalies', { user_id: 'alice', threshold: 100, limit: 1 });
  t.ok(strict.results.length <= 1, 'limit and threshold apply');
  const nobody = await node.call('query.anomalies', { user_id: 'nobody' });
  t.same([nobody.records_considered, nobody.results], [0, []]);

  await expectError(node, 'query.anomalies', {}, 'E_VALIDATION', 'user_id');
  await expectError(node, 'query.anomalies', { user_id: 'alice', threshold: 0 }, 'E_VALIDATION', 'threshold');
  await expectError(node, 'query.anomalies', { user_id: 'alice', limit: 1000 }, 'E_VALIDATION', 'limit');
  await expectError(node, 'query.anomalies', { user_id: 'alice', limit: '5' }, 'E_VALIDATION', 'limit');
  await expectError(node, 'query.anomalies', { user_id: 'alice', sql: 'DROP' }, 'E_VALIDATION');
  await expectError(node, 'query.anomalies', { user_id: 'alice', from: BASE + HOUR_MS, to: BASE }, 'E_VALIDATION', 'from');
  await expectError(node, 'query.anomalies', { user_id: 'a\u0000b' }, 'E_VALIDATION', 'user_id');
  await expectError(node, 'query.similar', { description: { provider: 'openai' } }, 'E_UNAVAILABLE');
});

t.test('similar: nearest calls by pattern through the Chroma mirror, with filters', async (t) => {
  const chroma = await startChroma();
  t.teardown(() => chroma.stop());
  const collectionPrefix = `${uniqueName('p')}_`;
  const node = await startTestNode(`cluster:\n  shards: 2\nbackends:\n  chroma:\n    url: ${chroma.url}\n    collection_prefix: ${collectionPrefix}\n    window_ms: 20\n`);
  t.teardown(() => node.stop());
  const prefix = uniqueName('s');
  const alice = [...ordinary('alice', 60, prefix), ...outliers('alice', prefix)];
  const carol = ordinary('carol', 40, prefix).map((r) => ({ ...r, provider: 'google', model: 'gemini-2.5-pro' }));
  await node.call('ingest', { records: [...alice, ...carol] });
  await caughtUp(node);

  const probe = alice[10]!;
  const like = await node.call('query.similar', { like: { id: probe.id, user_id: 'alice' }, limit: 5 });
  t.equal(like.ok, true);
  t.equal(like.results.length, 5);
  t.notOk(like.results.some((r: any) => r.record.id === probe.id), 'the record itself is left out');
  t.ok(like.results.every((r: any) => r.record.provider === 'anthropic' && r.record.user_id === 'alice'), 'its nearest calls are its kind');
  for (let i = 1; i < like.results.length; i++) t.ok(like.results[i - 1].distance <= like.results[i].distance, 'nearest first');
  t.ok(like.results.every((r: any) => r.record.version === 1 && typeof r.record.seq === 'number'), 'records come from local storage, whole');

  const described = await node.call('query.similar', { description: { provider: 'google', input_tokens: 2000 }, limit: 3 });
  t.ok(described.results.length === 3 && described.results.every((r: any) => r.record.provider === 'google'), 'a description finds calls of that kind');
  const filtered = await node.call('query.similar', { description: { provider: 'google' }, user_id: 'alice', limit: 3 });
  t.ok(filtered.results.length > 0 && filtered.results.every((r: any) => r.record.user_id === 'alice'), 'the user filter applies');
  const big = await node.call('query.similar', { description: { input_tokens: 900_000, cost_usd: 40 }, provider: 'openai', limit: 2 });
  t.same(big.results.map((r: any) => r.record.id), [alice.find((r) => r.provider === 'openai')!.id], 'the provider filter applies');
  const late = await node.call('query.similar', { description: { provider: 'anthropic' }, from: BASE + 60 * 600_000, limit: 100 });
  t.ok(late.results.every((r: any) => r.record.ts >= BASE + 60 * 600_000), 'the time filter applies');

  await expectError(node, 'query.similar', { like: { id: probe.id, user_id: 'alice' }, description: { provider: 'x' } }, 'E_VALIDATION', 'like');
  await expectError(node, 'query.similar', { limit: 3 }, 'E_VALIDATION', 'like');
  await expectError(node, 'query.similar', { description: {} }, 'E_VALIDATION', 'description');
  await expectError(node, 'query.similar', { description: { hour: 24 } }, 'E_VALIDATION', 'description.hour');
  await expectError(node, 'query.similar', { description: { input_tokens: -5 } }, 'E_VALIDATION', 'description.input_tokens');
  await expectError(node, 'query.similar', { description: { status: 'exploded' } }, 'E_VALIDATION', 'description.status');
  await expectError(node, 'query.similar', { like: { id: 'nope', user_id: 'alice' } }, 'E_NOT_FOUND');
  await expectError(node, 'query.similar', { like: { id: probe.id } }, 'E_VALIDATION', 'like.user_id');
  await expectError(node, 'query.similar', { description: { provider: 'openai' }, limit: 101 }, 'E_VALIDATION', 'limit');
});
