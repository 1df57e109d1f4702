// Small helpers to make valid stored-record inputs for storage tests.

import type { NewRecord } from '../../src/storage/shard-store.js';

export const DAY_MS = 86_400_000;
export const BASE_TS = Date.UTC(2026, 10, 20, 12);

export function newRecord(n: number, overrides: Partial<NewRecord> = {}): NewRecord {
  return {
    id: `rec-${n}`,
    ts: BASE_TS + (n % 5) * DAY_MS + n,
    user_id: `user-${n % 7}`,
    provider: ['anthropic', 'openai', 'google'][n % 3]!,
    model: ['claude-sonnet-4', 'gpt-4o', 'gemini-2.5-pro'][n % 3]!,
    input_tokens: 100 + n,
    output_tokens: 10 + (n % 50),
    status: 'success',
    latency_ms: 100 + (n % 300),
    cost_usd: 0.001 * (n % 10),
    cost_source: 'client',
    ingested_at: BASE_TS + n,
    ...overrides,
  };
}
