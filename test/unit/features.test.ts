// The Chroma feature vector: deterministic, fixed in size, bounded, honest
// about unknown costs, and close for calls that are alike.

import t from 'tap';
import type { StoredRecord } from '../../protocols/record.js';
import { COST_USD_MAX, LATENCY_MS_MAX, TOKENS_MAX } from '../../protocols/limits.js';
import { FEATURE_DIMENSIONS, FEATURE_LAYOUT, FEATURE_VERSION, featuresOf, featuresOfDescription, modelBucket } from '../../src/sync/features.js';

const BASE: StoredRecord = {
  id: 'rec-1',
  ts: Date.UTC(2026, 10, 20, 19, 15),
  user_id: 'user-1',
  provider: 'anthropic',
  model: 'claude-sonnet-4',
  input_tokens: 2500,
  output_tokens: 300,
  cost_usd: 0.012,
  cost_source: 'client',
  latency_ms: 800,
  status: 'success',
  version: 1,
  shard: 0,
  seq: 1,
  ingested_at: Date.UTC(2026, 10, 20, 19, 15, 1),
  updated_at: Date.UTC(2026, 10, 20, 19, 15, 1),
  vv: { 'node-t': 1 },
};

function record(overrides: Partial<StoredRecord> = {}): StoredRecord {
  return { ...BASE, ...overrides };
}

function distance(a: readonly number[], b: readonly number[]): number {
  return Math.sqrt(a.reduce((sum, value, i) => sum + (value - b[i]!) ** 2, 0));
}

function withoutCost(): StoredRecord {
  const { cost_usd: _cost, ...rest } = BASE;
  return { ...rest, cost_source: 'unknown' };
}

const VARIED: StoredRecord[] = [
  BASE,
  record({ input_tokens: 0, output_tokens: 0, cost_usd: 0, latency_ms: 0, status: 'error' }),
  record({ input_tokens: TOKENS_MAX, output_tokens: TOKENS_MAX, cached_tokens: TOKENS_MAX, cost_usd: COST_USD_MAX, latency_ms: LATENCY_MS_MAX }),
  record({ input_tokens: 1, output_tokens: TOKENS_MAX, cached_tokens: 0, provider: 'some-new-provider', model: 'x' }),
  withoutCost(),
  record({ ts: Date.UTC(2000, 0, 1), status: 'cancelled', provider: 'ollama', model: 'llama3.1:8b' }),
];

t.test('the layout is contiguous and fixed in size', async (t) => {
  let offset = 0;
  for (const group of FEATURE_LAYOUT) {
    t.equal(group.offset, offset, `${group.name} starts where the previous group ends`);
    offset += group.size;
  }
  t.equal(offset, FEATURE_DIMENSIONS);
  t.equal(FEATURE_DIMENSIONS, 31);
  for (const input of VARIED) t.equal(featuresOf(input).length, FEATURE_DIMENSIONS);
  for (const description of [{}, { provider: 'openai' }, { model: 'gpt-4o', hour: 23.5, status: 'timeout' as const, latency_ms: 5 }]) {
    t.equal(featuresOfDescription(description).length, FEATURE_DIMENSIONS);
  }
});

t.test('the same record always gives the same vector', async (t) => {
  t.same(featuresOf(BASE), featuresOf(record()));
  t.same(featuresOf(BASE), featuresOf(structuredClone(BASE)));
  // Fields that say nothing about the call do not move it.
  t.same(featuresOf(BASE), featuresOf(record({ id: 'other', user_id: 'someone', version: 7, seq: 99, ingested_at: 0 })));
  t.equal(modelBucket('GPT-4o '), modelBucket('gpt-4o'), 'model names are compared lower case and trimmed');
});

t.test('a pinned vector: changing any of it means bumping FEATURE_VERSION', async (t) => {
  t.equal(FEATURE_VERSION, 1);
  const rounded = featuresOf(BASE).map((value) => Math.round(value * 1e4) / 1e4);
  const s = Math.round(Math.SQRT1_2 * 1e4) / 1e4;
  const model = new Array<number>(8).fill(0);
  model[modelBucket('claude-sonnet-4')] = s;
  t.same(rounded.slice(0, 7), [s, 0, 0, 0, 0, 0, 0], 'provider anthropic');
  t.same(rounded.slice(7, 15), model, 'model bucket');
  t.same(rounded.slice(15), [
    0.1327, // input: log10(2501) = 3.398 of [0, 6]
    -0.0086, // output: log10(301) = 2.479 of [0, 5]
    -0.3065, // output/input: log10(301 / 2501) / 3
    0, // nothing cached
    0.0265, // cost: log10(0.01201) = -1.92 of [-5, 1]
    0, // cost known
    0.1615, // latency: log10(801) = 2.904 of [0, 5]
    0, // latency present
    s, 0, 0, 0, // success
    -0.4735, 0.1607, // 19:15 UTC
    -0.4399, 0.2378, // Friday 19:15 UTC
  ]);
});

t.test('every value is finite and within [-1, 1]', async (t) => {
  const vectors = [...VARIED.map(featuresOf), featuresOfDescription({}), featuresOfDescription({ input_tokens: TOKENS_MAX, cost_usd: COST_USD_MAX, hour: 0 })];
  for (const vector of vectors) {
    t.ok(vector.every((value) => Number.isFinite(value) && value >= -1 && value <= 1), `bounded: ${vector.join(', ')}`);
  }
});

t.test('an unknown cost is not a $0 cost', async (t) => {
  const cost = FEATURE_LAYOUT.find((group) => group.name === 'cost')!.offset;
  const unknown = featuresOf(withoutCost());
  const zero = featuresOf(record({ cost_usd: 0 }));
  t.not(distance(unknown, zero), 0);
  t.equal(unknown[cost + 1], 1, 'the unknown flag is up');
  t.equal(zero[cost + 1], 0, 'a $0 cost is a known cost');
  t.equal(zero[cost], -1, '$0 is the bottom of the range');
  t.equal(unknown[cost], 0, 'an unknown cost sits in the middle, not at $0');
  // A cost_usd that comes with cost_source unknown is not trusted as a cost either.
  t.same(featuresOf({ ...withoutCost(), cost_usd: 0 }), unknown);
});

t.test('similar calls are closer than dissimilar ones', async (t) => {
  const base = featuresOf(BASE);
  const similar = featuresOf(record({ input_tokens: 2700, output_tokens: 320, cost_usd: 0.013, latency_ms: 850, ts: BASE.ts + 30 * 60_000 }));
  const otherModel = featuresOf(record({ model: 'claude-opus-4', cost_usd: 0.06 }));
  const dissimilar = featuresOf(
    record({ provider: 'ollama', model: 'llama3.1:8b', input_tokens: 200, output_tokens: 4000, cost_usd: 0, latency_ms: 60_000, status: 'timeout', ts: Date.UTC(2026, 10, 18, 3) }),
  );
  t.ok(distance(base, similar) < distance(base, otherModel), 'a near twin is closer than another model');
  t.ok(distance(base, otherModel) < distance(base, dissimilar), 'another model of the provider is closer than a different kind of call');

  const query = featuresOfDescription({ provider: 'anthropic', model: 'claude-sonnet-4', input_tokens: 2500 });
  t.ok(distance(query, base) < distance(query, dissimilar), 'a description finds the calls it describes');
});

t.test('what a description leaves out pulls neither way', async (t) => {
  const empty = featuresOfDescription({});
  const byProvider = ['openai', 'google', 'ollama', 'somebody'].map((provider) => distance(empty, featuresOf(record({ provider }))));
  t.ok(byProvider.every((d) => Math.abs(d - byProvider[0]!) < 1e-12), 'equally far from every provider');
  const byHour = [0, 6, 13, 21].map((hour) => distance(empty, featuresOf(record({ ts: Date.UTC(2026, 10, 20, hour) }))));
  t.ok(byHour.every((d) => Math.abs(d - byHour[0]!) < 1e-12), 'equally far from every hour of a day');
  const costFlags = [featuresOf(BASE), featuresOf(withoutCost())].map((vector) => vector[FEATURE_LAYOUT.find((group) => group.name === 'cost_unknown')!.offset]);
  t.same(costFlags, [0, 1]);
  t.equal(empty[FEATURE_LAYOUT.find((group) => group.name === 'cost_unknown')!.offset], 0.5, 'no cost said: neither known nor unknown');
});

t.test('values outside their domain are refused by name', async (t) => {
  t.throws(() => featuresOf(record({ input_tokens: -1 })), /input_tokens/);
  t.throws(() => featuresOf(record({ latency_ms: Number.NaN })), /latency_ms/);
  t.throws(() => featuresOfDescription({ hour: 24 }), /hour/);
  t.throws(() => featuresOf(record({ status: 'pending' as never })), /status/);
  t.throws(() => featuresOfDescription({ cost_usd: Number.POSITIVE_INFINITY }), /cost_usd/);
});
