// The usage record as a client sees it: which records are accepted, how they
// are normalised, and which field a rejection names. The clock is fixed so
// that timestamp bounds are deterministic.

import t from 'tap';
import { recordValidator, type UsageRecord } from '../../protocols/record.js';
import { COST_USD_MAX, DEFAULT_LIMITS, LATENCY_MS_MAX, TOKENS_MAX, TS_FUTURE_SKEW_MS, TS_MIN_MS } from '../../protocols/limits.js';

const NOW = Date.UTC(2025, 5, 15, 12, 0, 0);
const validator = recordValidator(DEFAULT_LIMITS, () => NOW);

const base = {
  id: 'r-1',
  ts: NOW - 60_000,
  user_id: 'u-1',
  provider: 'OpenAI',
  model: 'gpt-4o',
  input_tokens: 1200,
  output_tokens: 300,
};

type Test = Parameters<Parameters<typeof t.test>[0]>[0];

function accepted(t: Test, input: unknown, message?: string): UsageRecord {
  const result = validator.validate(input);
  if (!result.ok) {
    t.fail(`${message ?? 'record'} should be accepted: ${result.error.message}`);
    return undefined as never;
  }
  t.pass(message ?? 'accepted');
  return result.value;
}

function rejected(t: Test, input: unknown, field: string | undefined, message?: string): void {
  const result = validator.validate(input);
  if (result.ok) {
    t.fail(`${message ?? 'record'} should be rejected (field ${String(field)})`);
    return;
  }
  t.equal(result.error.code, 'E_VALIDATION', `${message ?? field}: code`);
  t.equal(result.error.field, field, `${message ?? field}: field`);
}

const without = (key: string) => Object.fromEntries(Object.entries(base).filter(([k]) => k !== key));

t.test('a minimal record is normalised: epoch ms, provider lower case, status success', async (t) => {
  const record = accepted(t, base);
  t.strictSame(record, { ...base, provider: 'openai', status: 'success' });
  t.notOk('cost_usd' in record, 'absent optional fields stay absent');
  t.notOk('metadata' in record);
});

t.test('a record with every optional field keeps them all', async (t) => {
  const full = {
    ...base,
    cached_tokens: 1000,
    cost_usd: 0.0123,
    latency_ms: 812.5,
    status: 'error',
    error_code: 'rate_limited',
    session_id: 's-1',
    campaign_id: 'c-1',
    operation: 'chat',
    metadata: { region: 'eu', retry: true, attempt: 2, parent: null },
  };
  t.strictSame(accepted(t, full), { ...full, provider: 'openai' });
});

t.test('each required field missing is named', async (t) => {
  for (const key of ['id', 'ts', 'user_id', 'provider', 'model', 'input_tokens', 'output_tokens']) {
    rejected(t, without(key), key, `without ${key}`);
  }
});

t.test('a value of the wrong type is named', async (t) => {
  const wrong: [string, unknown][] = [
    ['id', 42],
    ['id', null],
    ['user_id', ['u']],
    ['provider', { name: 'openai' }],
    ['model', true],
    ['input_tokens', '1200'],
    ['output_tokens', null],
    ['cost_usd', null],
    ['session_id', null],
    ['cached_tokens', '0'],
    ['cost_usd', '0.01'],
    ['latency_ms', [1]],
    ['status', 1],
    ['error_code', 500],
    ['session_id', 7],
    ['campaign_id', false],
    ['operation', {}],
    ['metadata', 'a=b'],
    ['metadata', ['a']],
    ['metadata', null],
    ['ts', true],
    ['ts', null],
    ['ts', new Date(NOW)],
  ];
  for (const [key, value] of wrong) rejected(t, { ...base, [key]: value }, key, `${key} = ${JSON.stringify(value)}`);
});

t.test('a body that is not a map is refused without a field', async (t) => {
  for (const input of [null, undefined, [], [base], 'record', 42, true]) rejected(t, input, undefined, JSON.stringify(input));
});

t.test('token counts are whole numbers from 0 to TOKENS_MAX', async (t) => {
  for (const key of ['input_tokens', 'output_tokens', 'cached_tokens']) {
    t.equal(accepted(t, { ...base, [key]: 0 })[key as keyof UsageRecord], 0, `${key} 0`);
    t.equal(accepted(t, { ...base, [key]: TOKENS_MAX })[key as keyof UsageRecord], TOKENS_MAX, `${key} max`);
    t.equal(accepted(t, { ...base, [key]: 42.0 })[key as keyof UsageRecord], 42, `${key} 42.0 (a float with a whole value)`);
    for (const bad of [-1, 1.5, 0.1, TOKENS_MAX + 1, Number.NaN, Number.POSITIVE_INFINITY, -0.5]) {
      rejected(t, { ...base, [key]: bad }, key, `${key} = ${bad}`);
    }
  }
});

t.test('cost_usd is a finite amount from 0 to COST_USD_MAX', async (t) => {
  for (const good of [0, 0.000001, 12.34, COST_USD_MAX]) t.equal(accepted(t, { ...base, cost_usd: good }).cost_usd, good, `cost ${good}`);
  for (const bad of [-0.01, COST_USD_MAX + 0.01, Number.NaN, Number.POSITIVE_INFINITY]) rejected(t, { ...base, cost_usd: bad }, 'cost_usd', `cost ${bad}`);
});

t.test('latency_ms is finite, from 0 to a day, and may be fractional', async (t) => {
  for (const good of [0, 0.25, 812.5, LATENCY_MS_MAX]) t.equal(accepted(t, { ...base, latency_ms: good }).latency_ms, good, `latency ${good}`);
  for (const bad of [-1, LATENCY_MS_MAX + 1, Number.NaN, Number.NEGATIVE_INFINITY]) rejected(t, { ...base, latency_ms: bad }, 'latency_ms', `latency ${bad}`);
});

t.test('status is one of four values, success by default', async (t) => {
  for (const status of ['success', 'error', 'timeout', 'cancelled']) t.equal(accepted(t, { ...base, status }).status, status);
  for (const bad of ['Success', 'ok', 'failed', '']) rejected(t, { ...base, status: bad }, 'status', `status ${JSON.stringify(bad)}`);
  t.equal(accepted(t, base).status, 'success');
});

t.test('provider is lower-cased; other names keep their case', async (t) => {
  const record = accepted(t, { ...base, provider: 'ANTHROPIC', model: 'Claude-Sonnet', operation: 'Chat', error_code: 'Rate_Limited', status: 'error' });
  t.equal(record.provider, 'anthropic');
  t.equal(record.model, 'Claude-Sonnet');
  t.equal(record.operation, 'Chat');
  t.equal(record.error_code, 'Rate_Limited');
});

t.test('ts in epoch milliseconds: from 2000-01-01 to now + 24 h, whole numbers only', async (t) => {
  t.equal(accepted(t, { ...base, ts: TS_MIN_MS }).ts, TS_MIN_MS, '2000-01-01T00:00:00Z exactly');
  t.equal(accepted(t, { ...base, ts: NOW + TS_FUTURE_SKEW_MS }).ts, NOW + TS_FUTURE_SKEW_MS, 'now + 24 h exactly');
  t.equal(accepted(t, { ...base, ts: NOW }).ts, NOW);
  const bad: [string, number][] = [
    ['one ms before 2000', TS_MIN_MS - 1],
    ['the epoch', 0],
    ['negative', -1],
    ['epoch seconds instead of ms', Math.floor(NOW / 1000)],
    ['one ms past now + 24 h', NOW + TS_FUTURE_SKEW_MS + 1],
    ['year 3000', Date.UTC(3000, 0, 1)],
    ['fractional', NOW - 0.5],
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['beyond safe integers', Number.MAX_VALUE],
  ];
  for (const [what, ts] of bad) rejected(t, { ...base, ts }, 'ts', what);
});

t.test('ts as ISO 8601 becomes epoch milliseconds', async (t) => {
  const good: [string, number][] = [
    ['2024-01-01', Date.UTC(2024, 0, 1)],
    ['2024-01-01T10:00Z', Date.UTC(2024, 0, 1, 10)],
    ['2024-01-01T10:00:00Z', Date.UTC(2024, 0, 1, 10)],
    ['2024-01-01T10:00:00.123Z', Date.UTC(2024, 0, 1, 10, 0, 0, 123)],
    ['2024-01-01T10:00:00.123456789Z', Date.UTC(2024, 0, 1, 10, 0, 0, 123)],
    ['2024-01-01T10:00:00+05:30', Date.UTC(2024, 0, 1, 4, 30)],
    ['2024-01-01T10:00:00-08:00', Date.UTC(2024, 0, 1, 18)],
    ['2024-01-01T10:00:00.500+00:00', Date.UTC(2024, 0, 1, 10, 0, 0, 500)],
    ['2024-02-29T00:00:00Z', Date.UTC(2024, 1, 29)],
    ['2000-01-01T00:00:00Z', TS_MIN_MS],
    ['2025-06-16T12:00:00Z', NOW + TS_FUTURE_SKEW_MS],
  ];
  for (const [text, ms] of good) t.equal(accepted(t, { ...base, ts: text }, text).ts, ms, text);
});

t.test('ts strings that are not ISO 8601 dates, or out of range, are refused', async (t) => {
  const bad = [
    '',
    'yesterday',
    'now',
    '1712345678901',
    '2024-01-01 10:00:00Z',
    '2024-01-01t10:00:00z',
    '2024/01/01',
    '01/02/2024',
    'Mon, 01 Jan 2024 10:00:00 GMT',
    '2024-13-01',
    '2024-00-10',
    '2024-01-32',
    '2024-01-01T25:00:00Z',
    '2024-01-01T10:60:00Z',
    '2024-01-01T23:59:60Z',
    '2024-01-01T10:00:00+99:99',
    '2024-01-01T10:00:00+05',
    '+002024-01-01T00:00:00Z',
    '1999-12-31T23:59:59.999Z',
    '2025-06-16T12:00:00.001Z',
    '9999-12-31T23:59:59Z',
    `2024-01-01T10:00:00.${'1'.repeat(30)}Z`,
  ];
  for (const text of bad) rejected(t, { ...base, ts: text }, 'ts', JSON.stringify(text));
});

t.test('ts with an impossible calendar day is refused', async (t) => {
  for (const text of ['2024-02-30', '2024-02-30T00:00:00Z', '2024-02-31T00:00:00Z', '2023-02-29T00:00:00Z', '2024-04-31T12:00:00Z']) {
    rejected(t, { ...base, ts: text }, 'ts', text);
  }
});

t.test('ts without an offset does not depend on the server time zone', async (t) => {
  const zone = process.env.TZ;
  const read = (tz: string) => {
    process.env.TZ = tz;
    const result = validator.validate({ ...base, ts: '2024-01-01T10:00:00' });
    return result.ok ? result.value.ts : result.error.code;
  };
  try {
    t.equal(read('America/New_York'), read('UTC'));
    t.equal(read('Asia/Kolkata'), read('UTC'));
  } finally {
    if (zone === undefined) delete process.env.TZ;
    else process.env.TZ = zone;
  }
});

const textFields: [key: string, lengthMax: number][] = [
  ['id', DEFAULT_LIMITS.idLengthMax],
  ['user_id', DEFAULT_LIMITS.idLengthMax],
  ['session_id', DEFAULT_LIMITS.idLengthMax],
  ['campaign_id', DEFAULT_LIMITS.idLengthMax],
  ['provider', DEFAULT_LIMITS.nameLengthMax],
  ['model', DEFAULT_LIMITS.nameLengthMax],
  ['operation', DEFAULT_LIMITS.nameLengthMax],
  ['error_code', DEFAULT_LIMITS.nameLengthMax],
];

t.test('text fields: exactly the limit is accepted, one more is refused, never truncated', async (t) => {
  for (const [key, max] of textFields) {
    const atLimit = 'a'.repeat(max);
    t.equal(accepted(t, { ...base, [key]: atLimit }, `${key} at ${max}`)[key as keyof UsageRecord], atLimit);
    rejected(t, { ...base, [key]: 'a'.repeat(max + 1) }, key, `${key} at ${max + 1}`);
    rejected(t, { ...base, [key]: '' }, key, `${key} empty`);
  }
});

t.test('lengths count Unicode code points: an emoji counts one, a combining accent counts one', async (t) => {
  const max = DEFAULT_LIMITS.idLengthMax;
  t.equal(accepted(t, { ...base, id: '😀'.repeat(max) }).id, '😀'.repeat(max), `${max} emoji (${2 * max} UTF-16 units)`);
  rejected(t, { ...base, id: '😀'.repeat(max + 1) }, 'id', `${max + 1} emoji`);
  t.equal(accepted(t, { ...base, id: 'é'.repeat(max) }).id, 'é'.repeat(max), 'a precomposed é is one code point');
  rejected(t, { ...base, id: 'e\u0301'.repeat(max / 2 + 1) }, 'id', 'e + combining acute is two code points');
  const value = '龍'.repeat(DEFAULT_LIMITS.metadataValueLengthMax);
  t.strictSame(accepted(t, { ...base, metadata: { a: value } }).metadata, { a: value });
  rejected(t, { ...base, metadata: { a: value + '龍' } }, 'metadata.a');
});

const hostile: [string, string][] = [
  ['NUL', 'a\u0000b'],
  ['newline', 'a\nb'],
  ['tab', 'a\tb'],
  ['escape', 'a\u001b[31mred'],
  ['DEL', 'a\u007fb'],
  ['C1 NEL', 'a\u0085b'],
  ['C1 APC', 'a\u009fb'],
  ['LRE', 'a\u202ab'],
  ['RLO', 'user\u202egnp.exe'],
  ['LRI', 'a\u2066b'],
  ['PDI', 'a\u2069b'],
  ['lone high surrogate', 'a\ud800b'],
  ['lone low surrogate', 'a\udc00'],
  ['reversed surrogate pair', '\ude00\ud83d'],
];

t.test('hostile characters are refused in every text field', async (t) => {
  for (const [key] of textFields) {
    for (const [what, text] of hostile) rejected(t, { ...base, [key]: text }, key, `${key} with ${what}`);
  }
});

t.test('ordinary non-ASCII text is accepted unchanged', async (t) => {
  const texts = ['😀🎲', '👩‍👩‍👧‍👦', '模型-大', 'ドラゴン', 'naïve café', 'Ærøskøbing', 'مرحبا', 'שלום', 'Ünïcødé ✓', 'a\u200db'];
  for (const text of texts) {
    const record = accepted(t, { ...base, user_id: text, model: text, session_id: text, metadata: { [text]: text } }, text);
    t.equal(record.user_id, text);
    t.equal(record.model, text);
    t.strictSame(record.metadata, { [text]: text });
  }
});

t.test('metadata is a small flat map of strings, finite numbers, booleans and null', async (t) => {
  const record = accepted(t, { ...base, metadata: { a: 'x', b: 1.5, c: true, d: null, e: '', f: -3 } });
  t.strictSame(record.metadata, { a: 'x', b: 1.5, c: true, d: null, e: '', f: -3 });
  t.strictSame(accepted(t, { ...base, metadata: {} }).metadata, {}, 'an empty map is fine');

  rejected(t, { ...base, metadata: { a: { b: 1 } } }, 'metadata.a', 'a nested map');
  rejected(t, { ...base, metadata: { tags: ['x'] } }, 'metadata.tags', 'a list');
  rejected(t, { ...base, metadata: { n: Number.POSITIVE_INFINITY } }, 'metadata.n', 'Infinity');
  rejected(t, { ...base, metadata: { n: Number.NaN } }, 'metadata.n', 'NaN');
});

t.test('metadata bounds: keys, key length, value length', async (t) => {
  const keys = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, i]));
  const { metadataKeysMax, metadataKeyLengthMax, metadataValueLengthMax } = DEFAULT_LIMITS;
  t.equal(Object.keys(accepted(t, { ...base, metadata: keys(metadataKeysMax) }).metadata ?? {}).length, metadataKeysMax);
  rejected(t, { ...base, metadata: keys(metadataKeysMax + 1) }, 'metadata', 'one key too many');

  const longKey = 'k'.repeat(metadataKeyLengthMax);
  t.strictSame(accepted(t, { ...base, metadata: { [longKey]: 1 } }).metadata, { [longKey]: 1 });
  rejected(t, { ...base, metadata: { [longKey + 'k']: 1 } }, `metadata.${longKey}k`, 'key one too long');
  rejected(t, { ...base, metadata: { '': 1 } }, 'metadata.', 'empty key');

  const longValue = 'v'.repeat(metadataValueLengthMax);
  t.strictSame(accepted(t, { ...base, metadata: { a: longValue } }).metadata, { a: longValue });
  rejected(t, { ...base, metadata: { a: longValue + 'v' } }, 'metadata.a', 'value one too long');
});

t.test('metadata keys and values refuse hostile characters', async (t) => {
  for (const [what, text] of hostile) {
    rejected(t, { ...base, metadata: { [text]: 1 } }, `metadata.${text}`, `key with ${what}`);
    rejected(t, { ...base, metadata: { a: text } }, 'metadata.a', `value with ${what}`);
  }
});

t.test('an unknown field is refused and named', async (t) => {
  rejected(t, { ...base, colour: 'red' }, 'colour');
  rejected(t, { ...base, cost: 1 }, 'cost', 'a near miss of cost_usd');
  rejected(t, { ...base, version: 1 }, 'version', 'server-added fields are not accepted from clients');
  rejected(t, { ...base, cost_source: 'client' }, 'cost_source');
  rejected(t, { ...base, shard: 3 }, 'shard');
  rejected(t, { ...base, ingested_at: NOW }, 'ingested_at');
  const result = validator.validate({ ...base, zzz: 1, aaa: 2 });
  t.notOk(result.ok);
  if (!result.ok) t.match(result.error.message, /zzz, aaa/, 'the message lists every unknown field');
});

t.test('__proto__ and constructor keys do not pollute Object.prototype', async (t) => {
  const record = JSON.parse(JSON.stringify(base).replace(/^\{/, '{"__proto__":{"polluted":"yes","isAdmin":true},')) as unknown;
  rejected(t, record, '__proto__', 'a record with an own __proto__ key');
  rejected(t, { ...base, constructor: { prototype: { polluted: 'yes' } } }, 'constructor');
  rejected(t, JSON.parse(JSON.stringify({ ...base, prototype: { polluted: 'yes' } })), 'prototype');

  const metadata = JSON.parse('{"__proto__":{"polluted":"yes"},"constructor":"c","toString":"s","hasOwnProperty":"h"}') as unknown;
  const result = validator.validate({ ...base, metadata });
  if (result.ok) {
    const kept = result.value.metadata ?? {};
    t.equal(Object.getPrototypeOf(kept), Object.prototype, 'metadata keeps an ordinary prototype');
    t.equal((kept as { polluted?: unknown }).polluted, undefined);
    t.equal(kept.constructor, 'c', 'constructor is an ordinary metadata key');
    t.equal(kept.toString, 's');
  } else {
    t.equal(result.error.code, 'E_VALIDATION');
  }
  t.equal(({} as { polluted?: unknown }).polluted, undefined, 'Object.prototype is untouched');
  t.equal(({} as { isAdmin?: unknown }).isAdmin, undefined);
});

t.test('a __proto__ metadata key is refused, not silently dropped', async (t) => {
  rejected(t, { ...base, metadata: JSON.parse('{"__proto__":"x","a":1}') }, 'metadata.__proto__');
});

t.test('validation does not change the caller object', async (t) => {
  const input = { ...base, metadata: { a: 1 } };
  const copy = structuredClone(input);
  accepted(t, input);
  t.strictSame(input, copy);
});

t.test('limits are configurable', async (t) => {
  const small = recordValidator({ ...DEFAULT_LIMITS, idLengthMax: 4, metadataKeysMax: 1 }, () => NOW);
  t.ok(small.validate({ ...base, id: 'abcd' }).ok);
  const long = small.validate({ ...base, id: 'abcde' });
  t.equal(long.ok ? undefined : long.error.field, 'id');
  const many = small.validate({ ...base, metadata: { a: 1, b: 2 } });
  t.equal(many.ok ? undefined : many.error.field, 'metadata');
});

t.test('the clock decides the future bound', async (t) => {
  const later = recordValidator(DEFAULT_LIMITS, () => NOW + 10 * TS_FUTURE_SKEW_MS);
  const ts = NOW + 5 * TS_FUTURE_SKEW_MS;
  rejected(t, { ...base, ts }, 'ts', 'too far ahead of NOW');
  t.ok(later.validate({ ...base, ts }).ok, 'fine for a clock five days later');
});

t.test('a present value of the wrong type is not reported as missing', async (t) => {
  for (const [key, value] of [['input_tokens', '1200'], ['input_tokens', 1.5], ['id', 42], ['cost_usd', '1'], ['metadata', null]] as const) {
    const result = validator.validate({ ...base, [key]: value });
    t.notOk(result.ok);
    if (!result.ok) t.notMatch(result.error.message, /required/, `${key} = ${JSON.stringify(value)}: ${result.error.message}`);
  }
  const missing = validator.validate(without('input_tokens'));
  t.match(missing.ok ? '' : missing.error.message, /required/, 'a missing field still says required');
});

t.test('patch: the patchable fields, validated like the record', async (t) => {
  const patch = {
    input_tokens: 10,
    output_tokens: 20,
    cached_tokens: 5,
    cost_usd: 0.5,
    latency_ms: 100,
    status: 'error',
    error_code: 'timeout',
    session_id: 's',
    campaign_id: 'c',
    operation: 'op',
    metadata: { a: 1 },
  };
  const result = validator.validatePatch(patch);
  t.ok(result.ok);
  if (result.ok) t.strictSame(result.value, patch);

  const one = validator.validatePatch({ cost_usd: 0.25 });
  t.strictSame(one.ok ? one.value : undefined, { cost_usd: 0.25 }, 'a patch without status does not reset status to success');
});

t.test('patch: refusals', async (t) => {
  const refused = (input: unknown, field: string | undefined, what: string) => {
    const result = validator.validatePatch(input);
    t.notOk(result.ok, `${what} is refused`);
    if (!result.ok) {
      t.equal(result.error.code, 'E_VALIDATION', `${what}: code`);
      t.equal(result.error.field, field, `${what}: field`);
    }
  };
  refused({}, undefined, 'an empty patch');
  refused(null, undefined, 'null');
  refused([], undefined, 'a list');
  refused('cost_usd=1', undefined, 'a string');
  for (const key of ['id', 'user_id', 'ts', 'provider', 'model', 'version', 'shard', 'cost_source']) {
    refused({ [key]: key === 'ts' ? NOW : 'x', cost_usd: 1 }, key, `${key} (not patchable)`);
  }
  refused({ input_tokens: -1 }, 'input_tokens', 'negative tokens');
  refused({ cost_usd: COST_USD_MAX + 1 }, 'cost_usd', 'cost over the bound');
  refused({ status: 'done' }, 'status', 'unknown status');
  refused({ session_id: 'a\u202eb' }, 'session_id', 'a bidi override');
  refused({ metadata: { a: { b: 1 } } }, 'metadata.a', 'nested metadata');
  refused({ cost_usd: null }, 'cost_usd', 'null (a patch cannot remove a field)');
});

t.test('patch: a patch of only undefined values is empty', async (t) => {
  const result = validator.validatePatch({ cost_usd: undefined });
  t.notOk(result.ok);
});
