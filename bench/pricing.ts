// Bench of price lookup (the cost the ingest path adds to each record), beside
// its floor measured in the same run: one plain Map lookup keyed by the same
// model name, returning the price entry `price` picks, then the same
// arithmetic. The ratio is what the price table's structure costs (provider
// map, aliases, prefix rules, effective days, bounds checks). Records mix the
// repository's prices.yml models: exact names, aliases, prefix rules, and one
// unknown model. Replaces the timed unit test that asserted a duration.

import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadPriceTable, price, type PriceEntry, type PricedUsage, type PriceTable } from '../src/pricing/price-table.js';
import type { Measurement, Row } from './measure.js';

export interface PricingBenchOptions {
  durationMs: number;
}

/** Calls per timed chunk: large enough that reading the clock costs nothing. */
const CHUNK_CALLS = 10_000;

const MODELS: readonly (readonly [string, string])[] = [
  ['openai', 'gpt-4o'],
  ['anthropic', 'claude-sonnet-4-0'],
  ['google', 'gemini-1.5-flash-002'],
  ['ollama', 'llama3.2:3b'],
  ['openai', 'unknown-model'],
];

export async function pricingBench(options: PricingBenchOptions): Promise<Row[]> {
  // dist/bench/pricing.js -> the repository root's prices.yml.
  const table = loadPriceTable(join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'prices.yml'));
  const ts = Date.UTC(2025, 5, 1);
  const records: PricedUsage[] = Array.from({ length: 1000 }, (_, i) => {
    const [provider, model] = MODELS[i % MODELS.length]!;
    return { provider, model, ts, input_tokens: 1000 + i, output_tokens: 200, ...(i % 3 === 0 ? { cached_tokens: 100 } : {}) };
  });
  const floor = floorMap(table, records);
  const viaTable = (record: PricedUsage) => {
    const result = price(table, record);
    return result.cost_source === 'price_table' ? result.cost_usd : 0;
  };
  const viaMap = (record: PricedUsage) => {
    const entry = floor.get(record.model);
    if (entry === undefined) return 0;
    const cached = record.cached_tokens ?? 0;
    const nanoUsd = (record.input_tokens - cached) * entry.inputNanoUsdPerToken + cached * entry.cachedInputNanoUsdPerToken + record.output_tokens * entry.outputNanoUsdPerToken;
    return Math.round(nanoUsd) / 1e9;
  };
  // Both must price the mix alike, or the ratio compares different work.
  const tableSum = records.reduce((sum, record) => sum + viaTable(record), 0);
  const mapSum = records.reduce((sum, record) => sum + viaMap(record), 0);
  if (Math.abs(tableSum - mapSum) > 1e-6) throw new Error(`pricing bench: the Map floor prices the mix at ${mapSum}, price() at ${tableSum}`);

  const baseline = measureSync(viaMap, records, options.durationMs);
  const measured = measureSync(viaTable, records, options.durationMs);
  const rate = (m: Measurement) => `${Math.round(m.perSecond).toLocaleString('en-US')} lookups/s (${(1e9 / m.perSecond).toFixed(0)} ns each)`;
  return [
    { group: 'pricing', name: 'Map lookup of the model name + the same cost arithmetic', concurrency: 1, measurement: baseline, value: rate(baseline) },
    { group: 'pricing', name: `price() over prices.yml (${MODELS.length} models: exact, alias, prefix, unknown)`, concurrency: 1, measurement: measured, baseline, value: rate(measured) },
  ];
}

/** The entry `price` would use for each record's model, keyed by the model name alone. */
function floorMap(table: PriceTable, records: readonly PricedUsage[]): Map<string, PriceEntry> {
  const floor = new Map<string, PriceEntry>();
  for (const record of records) {
    const provider = table.providers.get(record.provider);
    const model = provider?.byName.get(record.model) ?? provider?.prefixRules.find((rule) => record.model.startsWith(rule.model));
    const entry = model?.prices.findLast((candidate) => candidate.effectiveFromMs <= record.ts);
    if (entry !== undefined) floor.set(record.model, entry);
  }
  return floor;
}

/**
 * Calls `call` over `records` in chunks for `durationMs` after a warm-up of
 * the same length. One call takes nanoseconds, below the table's ms
 * percentiles, so those stay empty and the row's value gives ns per call.
 */
function measureSync(call: (record: PricedUsage) => number, records: readonly PricedUsage[], durationMs: number): Measurement {
  let sink = 0;
  const chunk = () => {
    for (let i = 0; i < CHUNK_CALLS; i++) sink += call(records[i % records.length]!);
  };
  for (const warmupEnd = performance.now() + durationMs; performance.now() < warmupEnd; ) chunk();
  let requests = 0;
  const started = performance.now();
  while (performance.now() - started < durationMs) {
    chunk();
    requests += CHUNK_CALLS;
  }
  const seconds = (performance.now() - started) / 1000;
  // Keeps the loop's result alive so the JIT cannot drop the calls.
  if (!(sink > 0)) throw new Error('pricing bench: nothing was priced');
  return { requests, errors: 0, seconds, perSecond: requests / seconds, p50Ms: Number.NaN, p95Ms: Number.NaN, p99Ms: Number.NaN };
}
