// The price table: the cost a record gets (worked out by hand in each case),
// which price is in force on which UTC day, how names match, when the answer is
// unknown rather than $0, and the exact lines an operator reads when the price
// file is wrong. Also: the repository's prices.yml loads and prices its models.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import {
  loadPriceTable,
  parsePriceTable,
  price,
  PriceTableError,
  type PricedUsage,
  type PriceResult,
  type PriceTable,
} from '../../src/pricing/price-table.js';

const REPOSITORY_PRICES_YML = fileURLToPath(new URL('../../prices.yml', import.meta.url));

// USD per million tokens. gpt-4o's prices are listed newest first on purpose: order in the file must not matter.
const FIXTURE = `
providers:
  anthropic:
    claude-sonnet-4-20250514:
      aliases: [claude-sonnet-4-0]
      prices:
        - { effective_from: 2025-05-22, input_usd_per_mtok: 3, output_usd_per_mtok: 15, cached_input_usd_per_mtok: 0.3 }
    claude-3-5-haiku:
      match: prefix
      prices:
        - { effective_from: 2024-11-04, input_usd_per_mtok: 0.8, output_usd_per_mtok: 4 }
  openai:
    gpt-4o:
      prices:
        - { effective_from: 2024-10-02, input_usd_per_mtok: 2.5, output_usd_per_mtok: 10, cached_input_usd_per_mtok: 1.25 }
        - { effective_from: 2024-05-13, input_usd_per_mtok: 5, output_usd_per_mtok: 15 }
    gpt-4o-mini:
      aliases: [gpt-4o-mini-2024-07-18]
      prices:
        - { effective_from: 2024-07-18, input_usd_per_mtok: 0.15, output_usd_per_mtok: 0.6 }
    o1-pro:
      prices:
        - { effective_from: 2025-03-19, input_usd_per_mtok: 150, output_usd_per_mtok: 600 }
  google:
    gemini-1.5-flash:
      match: prefix
      prices:
        - { effective_from: 2024-08-12, input_usd_per_mtok: 0.075, output_usd_per_mtok: 0.3 }
    gemini-1.5-flash-8b:
      match: prefix
      prices:
        - { effective_from: 2024-10-03, input_usd_per_mtok: 0.0375, output_usd_per_mtok: 0.15 }
    gemini-1.5-flash-exp:
      prices:
        - { effective_from: 2024-08-12, input_usd_per_mtok: 1, output_usd_per_mtok: 2 }
  ollama:
    llama3:
      match: prefix
      prices:
        - { effective_from: 2024-01-01, input_usd_per_mtok: 0, output_usd_per_mtok: 0 }
`;

const table = parsePriceTable(FIXTURE, 'fixture.yml');

const at = (iso: string) => Date.parse(iso);

function usage(provider: string, model: string, ts: string, input: number, output: number, cached?: number): PricedUsage {
  return { provider, model, ts: at(ts), input_tokens: input, output_tokens: output, ...(cached === undefined ? {} : { cached_tokens: cached }) };
}

const priced = (cost_usd: number): PriceResult => ({ cost_usd, cost_source: 'price_table' });
const UNKNOWN: PriceResult = { cost_source: 'unknown' };

t.test('exact costs', async (t) => {
  t.test('claude-sonnet-4: 1200 in x $3 + 350 out x $15 = 3600 + 5250 = $0.00885', async (t) => {
    t.same(price(table, usage('anthropic', 'claude-sonnet-4-20250514', '2025-06-01T10:00:00Z', 1200, 350)), priced(0.00885));
  });

  t.test('gpt-4o-mini: 123456 in x $0.15 + 7890 out x $0.60 = 18518.4 + 4734 = $0.0232524', async (t) => {
    t.same(price(table, usage('openai', 'gpt-4o-mini', '2025-01-15T00:00:00Z', 123_456, 7890)), priced(0.0232524));
  });

  t.test('zero tokens cost exactly $0, priced (not unknown)', async (t) => {
    t.same(price(table, usage('openai', 'gpt-4o-mini', '2025-01-15T00:00:00Z', 0, 0)), priced(0));
  });

  t.test('a local model priced at 0 is a known $0', async (t) => {
    t.same(price(table, usage('ollama', 'llama3.1:8b', '2025-01-15T00:00:00Z', 50_000, 2000)), priced(0));
  });

  t.test('costs are rounded to the nearest nano-dollar, halves up', async (t) => {
    // gemini-1.5-flash-8b input: $0.0375 per million = 37.5e-9 USD per token.
    t.same(price(table, usage('google', 'gemini-1.5-flash-8b', '2025-01-15T00:00:00Z', 1, 0)), priced(38e-9));
    // 3 tokens: 112.5e-9 -> 113e-9.
    t.same(price(table, usage('google', 'gemini-1.5-flash-8b', '2025-01-15T00:00:00Z', 3, 0)), priced(113e-9));
    // 2 tokens: exactly 75e-9, nothing to round.
    t.same(price(table, usage('google', 'gemini-1.5-flash-8b', '2025-01-15T00:00:00Z', 2, 0)), priced(75e-9));
  });

  t.test('a cost beyond what a record may carry ($1,000,000) is unknown, not stored out of bounds', async (t) => {
    // o1-pro: 1e9 in x $150 + 1e9 out x $600 = $750,000 fits; 1e9 in + 2e9 out would be $1,350,000.
    t.same(price(table, usage('openai', 'o1-pro', '2025-04-01T00:00:00Z', 1e9, 1e9)), priced(750_000));
    t.same(price(table, usage('openai', 'o1-pro', '2025-04-01T00:00:00Z', 1e9, 2e9)), UNKNOWN);
  });
});

t.test('the price in force is the latest effective_from on or before the record\'s UTC day', async (t) => {
  // gpt-4o: $5/$15 from 2024-05-13, $2.50/$10 from 2024-10-02. 1000 in + 1000 out.
  const gpt4o = (ts: string) => price(table, usage('openai', 'gpt-4o', ts, 1000, 1000));

  t.test('the last millisecond before the change day has the old price: 5000 + 15000 = $0.02', async (t) => {
    t.same(gpt4o('2024-10-01T23:59:59.999Z'), priced(0.02));
  });

  t.test('the first millisecond of the change day has the new price: 2500 + 10000 = $0.0125', async (t) => {
    t.same(gpt4o('2024-10-02T00:00:00.000Z'), priced(0.0125));
  });

  t.test('the whole change day has the new price', async (t) => {
    t.same(gpt4o('2024-10-02T23:59:59.999Z'), priced(0.0125));
  });

  t.test('long after the change, the new price', async (t) => {
    t.same(gpt4o('2026-03-01T12:00:00Z'), priced(0.0125));
  });

  t.test('the first effective day itself is priced', async (t) => {
    t.same(gpt4o('2024-05-13T00:00:00.000Z'), priced(0.02));
  });

  t.test('a record before the first effective day is unknown, never $0', async (t) => {
    const result = gpt4o('2024-05-12T23:59:59.999Z');
    t.same(result, UNKNOWN);
    t.notOk('cost_usd' in result, 'no cost_usd at all');
  });
});

t.test('cached tokens are part of input_tokens', async (t) => {
  t.test('with a cached rate: 600 x $2.50 + 400 x $1.25 + 100 x $10 = 1500 + 500 + 1000 = $0.003', async (t) => {
    t.same(price(table, usage('openai', 'gpt-4o', '2025-01-01T00:00:00Z', 1000, 100, 400)), priced(0.003));
  });

  t.test('claude: 2000 x $3 + 8000 x $0.30 + 500 x $15 = 6000 + 2400 + 7500 = $0.0159', async (t) => {
    t.same(price(table, usage('anthropic', 'claude-sonnet-4-20250514', '2025-06-01T00:00:00Z', 10_000, 500, 8000)), priced(0.0159));
  });

  t.test('without a cached rate, cached tokens cost the input rate: 1000 x $5 + 100 x $15 = $0.0065', async (t) => {
    // gpt-4o before 2024-10-02 has no cached rate.
    t.same(price(table, usage('openai', 'gpt-4o', '2024-07-01T00:00:00Z', 1000, 100, 400)), priced(0.0065));
    t.same(price(table, usage('openai', 'gpt-4o', '2024-07-01T00:00:00Z', 1000, 100)), priced(0.0065));
  });

  t.test('all input cached: 1000 x $0.30 + 0 out = $0.0003', async (t) => {
    t.same(price(table, usage('anthropic', 'claude-sonnet-4-20250514', '2025-06-01T00:00:00Z', 1000, 0, 1000)), priced(0.0003));
  });

  t.test('cached_tokens 0 is the same as none', async (t) => {
    t.same(price(table, usage('openai', 'gpt-4o', '2025-01-01T00:00:00Z', 1000, 100, 0)), priced(0.0035));
  });

  t.test('more cached than input tokens is unknown (the record contradicts itself)', async (t) => {
    t.same(price(table, usage('openai', 'gpt-4o', '2025-01-01T00:00:00Z', 1000, 100, 1001)), UNKNOWN);
  });
});

t.test('unknown is never $0', async (t) => {
  const cases: { name: string; record: PricedUsage }[] = [
    { name: 'an unknown provider', record: usage('mistral', 'mistral-large', '2025-06-01T00:00:00Z', 100, 100) },
    { name: 'an unknown model of a known provider', record: usage('openai', 'gpt-5', '2025-06-01T00:00:00Z', 100, 100) },
    { name: "another provider's model", record: usage('openai', 'claude-sonnet-4-20250514', '2025-06-01T00:00:00Z', 100, 100) },
    { name: 'a model name in other letter case', record: usage('openai', 'GPT-4o', '2025-06-01T00:00:00Z', 100, 100) },
    { name: 'a provider name in other letter case', record: usage('OpenAI', 'gpt-4o', '2025-06-01T00:00:00Z', 100, 100) },
    { name: 'a ts before the first price', record: usage('anthropic', 'claude-sonnet-4-20250514', '2025-05-21T23:59:59.999Z', 100, 100) },
    { name: 'a name shorter than a prefix rule', record: usage('anthropic', 'claude-3-5', '2025-06-01T00:00:00Z', 100, 100) },
  ];
  for (const { name, record } of cases) {
    t.test(name, async (t) => {
      const result = price(table, record);
      t.same(result, UNKNOWN);
      t.notOk('cost_usd' in result);
    });
  }

  t.test('an empty table prices nothing', async (t) => {
    t.same(price(parsePriceTable('providers: {}\n', 'empty.yml'), usage('openai', 'gpt-4o', '2025-06-01T00:00:00Z', 1, 1)), UNKNOWN);
  });
});

t.test('model matching: exact name, then aliases, then the longest prefix', async (t) => {
  t.test('an alias costs what its model costs', async (t) => {
    t.same(price(table, usage('anthropic', 'claude-sonnet-4-0', '2025-06-01T10:00:00Z', 1200, 350)), priced(0.00885));
    t.same(price(table, usage('openai', 'gpt-4o-mini-2024-07-18', '2025-01-15T00:00:00Z', 123_456, 7890)), priced(0.0232524));
  });

  t.test('an alias shares its model\'s dates', async (t) => {
    t.same(price(table, usage('anthropic', 'claude-sonnet-4-0', '2025-05-21T12:00:00Z', 1, 1)), UNKNOWN);
  });

  t.test('a prefix rule matches names that start with it: 1000 x $0.80 + 1000 x $4 = $0.0048', async (t) => {
    for (const model of ['claude-3-5-haiku-20241022', 'claude-3-5-haiku-latest', 'claude-3-5-haiku']) {
      t.same(price(table, usage('anthropic', model, '2025-01-01T00:00:00Z', 1000, 1000)), priced(0.0048), model);
    }
  });

  t.test('the longest matching prefix wins', async (t) => {
    // flash-8b: 1e6 x $0.0375 + 1e6 x $0.15 = $0.1875; flash: 1e6 x $0.075 + 1e6 x $0.30 = $0.375.
    t.same(price(table, usage('google', 'gemini-1.5-flash-8b-001', '2025-01-01T00:00:00Z', 1e6, 1e6)), priced(0.1875));
    t.same(price(table, usage('google', 'gemini-1.5-flash-002', '2025-01-01T00:00:00Z', 1e6, 1e6)), priced(0.375));
  });

  t.test('an exact name beats a prefix rule it also matches: 1e6 x $1 + 1e6 x $2 = $3', async (t) => {
    t.same(price(table, usage('google', 'gemini-1.5-flash-exp', '2025-01-01T00:00:00Z', 1e6, 1e6)), priced(3));
  });

  t.test("a prefix rule applies to its own provider only", async (t) => {
    t.same(price(table, usage('openai', 'llama3.1:8b', '2025-01-01T00:00:00Z', 1, 1)), UNKNOWN);
  });

  t.test('an exact entry does not match longer names', async (t) => {
    t.same(price(table, usage('openai', 'gpt-4o-2024-08-06', '2025-01-01T00:00:00Z', 1, 1)), UNKNOWN);
  });
});

// How fast pricing is belongs to `npm run bench` (BENCH_ONLY=pricing), never to a timed test.
t.test('a mixed batch: every known model is priced from the table, the unknown one is not', async (t) => {
  const models: [string, string][] = [
    ['openai', 'gpt-4o'],
    ['anthropic', 'claude-sonnet-4-0'],
    ['google', 'gemini-1.5-flash-002'],
    ['ollama', 'llama3.2:3b'],
    ['openai', 'unknown-model'],
  ];
  const records = Array.from({ length: 1000 }, (_, i) => {
    const [provider, model] = models[i % models.length]!;
    return usage(provider, model, '2025-06-01T00:00:00Z', 1000 + i, 200, i % 3 === 0 ? 100 : undefined);
  });
  const sources = new Map<string, Set<string>>();
  for (const record of records) {
    const seen = sources.get(record.model) ?? new Set<string>();
    seen.add(price(table, record).cost_source);
    sources.set(record.model, seen);
  }
  t.same(
    Object.fromEntries([...sources].map(([model, seen]) => [model, [...seen]])),
    { 'gpt-4o': ['price_table'], 'claude-sonnet-4-0': ['price_table'], 'gemini-1.5-flash-002': ['price_table'], 'llama3.2:3b': ['price_table'], 'unknown-model': ['unknown'] },
  );
});

/** The PriceTableError that parsing must raise; a file that loads fails the test. */
function priceTableError(text: string, source = 'prices.yml'): PriceTableError {
  try {
    parsePriceTable(text, source);
  } catch (error) {
    if (error instanceof PriceTableError) return error;
    throw error;
  }
  throw new Error('expected a PriceTableError, but the price table loaded');
}

/** A file with one openai model whose single price is `fields`. */
const onePrice = (fields: string) => `providers:\n  openai:\n    gpt-4o:\n      prices:\n        - { ${fields} }\n`;
const GOOD_PRICE = 'effective_from: 2024-05-13, input_usd_per_mtok: 5, output_usd_per_mtok: 15';
/** What an unknown key in a price is told the price takes. */
const PRICE_TAKES = ' (providers.openai.gpt-4o.prices.0 takes effective_from, input_usd_per_mtok, output_usd_per_mtok, cached_input_usd_per_mtok)';

t.test('bad price files: the lines an operator reads', async (t) => {
  t.test('the whole message names the file and each problem on its own line', async (t) => {
    const error = priceTableError(onePrice('effective_from: 2024-05-13, input_usd_per_mtok: -5, output_usd_per_mtok: 15, currency: EUR'), 'conf/prices.yml');
    t.equal(error.name, 'PriceTableError');
    t.equal(error.source, 'conf/prices.yml');
    t.equal(
      error.message,
      'invalid price table in conf/prices.yml:\n' +
        '  - providers.openai.gpt-4o.prices.0.input_usd_per_mtok: must not be negative (got -5)\n' +
        `  - providers.openai.gpt-4o.prices.0.currency: unknown key${PRICE_TAKES}`,
    );
  });

  const cases: { name: string; text: string; problems: string[] }[] = [
    // unknown keys
    { name: 'an unknown key in a price', text: onePrice(`${GOOD_PRICE}, currency: EUR`), problems: [`providers.openai.gpt-4o.prices.0.currency: unknown key${PRICE_TAKES}`] },
    {
      name: 'a misspelt price key',
      text: onePrice('effective_from: 2024-05-13, input_usd_per_mtok: 5, output_usd: 15'),
      problems: ['providers.openai.gpt-4o.prices.0.output_usd_per_mtok: is required', 'providers.openai.gpt-4o.prices.0.output_usd: unknown key; did you mean providers.openai.gpt-4o.prices.0.output_usd_per_mtok?'],
    },
    {
      name: 'an unknown key in a model',
      text: 'providers:\n  openai:\n    gpt-4o:\n      alias: [x]\n      prices: [{ effective_from: 2024-05-13, input_usd_per_mtok: 5, output_usd_per_mtok: 15 }]\n',
      problems: ['providers.openai.gpt-4o.alias: unknown key; did you mean providers.openai.gpt-4o.aliases?'],
    },
    { name: 'an unknown top-level key', text: 'provider: {}\n', problems: ['providers: is required', 'provider: unknown key; did you mean providers?'] },
    // prices
    { name: 'a negative input price', text: onePrice('effective_from: 2024-05-13, input_usd_per_mtok: -0.5, output_usd_per_mtok: 15'), problems: ['providers.openai.gpt-4o.prices.0.input_usd_per_mtok: must not be negative (got -0.5)'] },
    { name: 'a negative output price', text: onePrice('effective_from: 2024-05-13, input_usd_per_mtok: 5, output_usd_per_mtok: -15'), problems: ['providers.openai.gpt-4o.prices.0.output_usd_per_mtok: must not be negative (got -15)'] },
    { name: 'a negative cached price', text: onePrice(`${GOOD_PRICE}, cached_input_usd_per_mtok: -1`), problems: ['providers.openai.gpt-4o.prices.0.cached_input_usd_per_mtok: must not be negative (got -1)'] },
    { name: 'an absurd price', text: onePrice('effective_from: 2024-05-13, input_usd_per_mtok: 20000, output_usd_per_mtok: 15'), problems: ['providers.openai.gpt-4o.prices.0.input_usd_per_mtok: must be at most 10000 (got 20000)'] },
    { name: 'an infinite price', text: onePrice('effective_from: 2024-05-13, input_usd_per_mtok: .inf, output_usd_per_mtok: 15'), problems: ['providers.openai.gpt-4o.prices.0.input_usd_per_mtok: must be a number of USD per million tokens (got Infinity)'] },
    { name: 'a price written as a string', text: onePrice('effective_from: 2024-05-13, input_usd_per_mtok: "5", output_usd_per_mtok: 15'), problems: ['providers.openai.gpt-4o.prices.0.input_usd_per_mtok: must be a number of USD per million tokens (got "5")'] },
    { name: 'a price with no effective_from', text: onePrice('input_usd_per_mtok: 5, output_usd_per_mtok: 15'), problems: ['providers.openai.gpt-4o.prices.0.effective_from: is required'] },
    { name: 'a model with no prices', text: 'providers:\n  openai:\n    gpt-4o:\n      prices: []\n', problems: ['providers.openai.gpt-4o.prices: must list at least one price'] },
    { name: 'a model with no prices key', text: 'providers:\n  openai:\n    gpt-4o:\n      aliases: [x]\n', problems: ['providers.openai.gpt-4o.prices: is required'] },
    // dates
    { name: 'an impossible calendar day', text: onePrice('effective_from: 2024-02-30, input_usd_per_mtok: 5, output_usd_per_mtok: 15'), problems: ['providers.openai.gpt-4o.prices.0.effective_from: must be a calendar date written YYYY-MM-DD (UTC) (got "2024-02-30")'] },
    { name: 'a date with slashes', text: onePrice('effective_from: 2024/05/13, input_usd_per_mtok: 5, output_usd_per_mtok: 15'), problems: ['providers.openai.gpt-4o.prices.0.effective_from: must be a calendar date written YYYY-MM-DD (UTC) (got "2024/05/13")'] },
    { name: 'a date-time instead of a date', text: onePrice('effective_from: 2024-05-13T00:00:00Z, input_usd_per_mtok: 5, output_usd_per_mtok: 15'), problems: ['providers.openai.gpt-4o.prices.0.effective_from: must be a calendar date written YYYY-MM-DD (UTC) (got "2024-05-13T00:00:00Z")'] },
    { name: 'a date written as a number', text: onePrice('effective_from: 20240513, input_usd_per_mtok: 5, output_usd_per_mtok: 15'), problems: ['providers.openai.gpt-4o.prices.0.effective_from: must be a date written YYYY-MM-DD (UTC) (got 20240513)'] },
    {
      name: 'the same effective_from twice for one model',
      text: 'providers:\n  openai:\n    gpt-4o:\n      prices:\n        - { effective_from: 2024-05-13, input_usd_per_mtok: 5, output_usd_per_mtok: 15 }\n        - { effective_from: 2024-10-02, input_usd_per_mtok: 2.5, output_usd_per_mtok: 10 }\n        - { effective_from: 2024-05-13, input_usd_per_mtok: 4, output_usd_per_mtok: 12 }\n',
      problems: ['providers.openai.gpt-4o.prices: effective_from 2024-05-13 appears more than once'],
    },
    // names
    {
      name: 'an alias that is another model\'s name',
      text: 'providers:\n  openai:\n    gpt-4o:\n      prices: [{ effective_from: 2024-05-13, input_usd_per_mtok: 5, output_usd_per_mtok: 15 }]\n    gpt-4o-mini:\n      aliases: [gpt-4o]\n      prices: [{ effective_from: 2024-07-18, input_usd_per_mtok: 0.15, output_usd_per_mtok: 0.6 }]\n',
      problems: ['providers.openai.gpt-4o-mini.aliases.0: "gpt-4o" is already a model of this provider'],
    },
    {
      name: 'one alias on two models',
      text: 'providers:\n  openai:\n    gpt-4o:\n      aliases: [latest]\n      prices: [{ effective_from: 2024-05-13, input_usd_per_mtok: 5, output_usd_per_mtok: 15 }]\n    gpt-4o-mini:\n      aliases: [latest]\n      prices: [{ effective_from: 2024-07-18, input_usd_per_mtok: 0.15, output_usd_per_mtok: 0.6 }]\n',
      problems: ['providers.openai.gpt-4o-mini.aliases.0: "latest" is already an alias of gpt-4o'],
    },
    { name: 'a provider name in capitals', text: 'providers:\n  OpenAI: {}\n', problems: ["providers.OpenAI: provider names must be lower case letters, digits, '.', '_' or '-' (records' providers are lower-cased)"] },
    { name: 'an unknown match kind', text: 'providers:\n  openai:\n    gpt:\n      match: regex\n      prices: [{ effective_from: 2024-05-13, input_usd_per_mtok: 5, output_usd_per_mtok: 15 }]\n', problems: ['providers.openai.gpt.match: must be exact or prefix (got "regex")'] },
    { name: 'a __proto__ key', text: 'providers:\n  openai:\n    __proto__:\n      prices: []\n', problems: ['providers.openai.__proto__: reserved key'] },
    // not a map
    { name: 'a list at the top level', text: '- openai\n- anthropic\n', problems: ['the top level must be a map with a providers key'] },
    { name: 'a scalar at the top level', text: 'just some text\n', problems: ['the top level must be a map with a providers key'] },
    { name: 'an empty file', text: '', problems: ['the top level must be a map with a providers key'] },
    { name: 'a file of comments only', text: '# prices\n', problems: ['the top level must be a map with a providers key'] },
    { name: 'providers as a list', text: 'providers:\n  - openai\n', problems: ['providers: must be a map of provider names to their models (got a list)'] },
    { name: 'providers left empty', text: 'providers:\n', problems: ['providers: must be a map of provider names to their models (got null)'] },
    { name: 'a provider as a list', text: 'providers:\n  openai: [gpt-4o]\n', problems: ['providers.openai: must be a map of model names to their prices (got a list)'] },
    { name: 'a model as a number', text: 'providers:\n  openai:\n    gpt-4o: 5\n', problems: ['providers.openai.gpt-4o: must be a map with prices (and optionally aliases, match) (got 5)'] },
    { name: 'prices as a map', text: 'providers:\n  openai:\n    gpt-4o:\n      prices: { effective_from: 2024-05-13 }\n', problems: ['providers.openai.gpt-4o.prices: must be a list of prices (got a map)'] },
    { name: 'a price as a number', text: 'providers:\n  openai:\n    gpt-4o:\n      prices: [5]\n', problems: ['providers.openai.gpt-4o.prices.0: must be a map with effective_from, input_usd_per_mtok and output_usd_per_mtok (got 5)'] },
    // YAML itself
    {
      name: 'a YAML syntax error',
      text: 'providers:\n  openai:\n    gpt-4o:\n      prices: [{ effective_from: 2024-05-13, input_usd_per_mtok: 5\n',
      problems: [
        'YAML: Flow map in block collection must be sufficiently indented and end with a } (line 5, column 1)',
        'YAML: Flow sequence in block collection must be sufficiently indented and end with a ] (line 5, column 1)',
      ],
    },
    { name: 'tabs as indentation', text: 'providers:\n\topenai: {}\n', problems: ['YAML: Tabs are not allowed as indentation (line 2, column 1)'] },
    { name: 'a model listed twice', text: 'providers:\n  openai:\n    gpt-4o: {}\n    gpt-4o: {}\n', problems: ['YAML: Map keys must be unique (line 4, column 5)'] },
  ];

  for (const { name, text, problems } of cases) {
    t.test(name, async (t) => {
      t.same(priceTableError(text).problems, problems);
    });
  }

  t.test('the bad lines above load once fixed (each case is wrong for the reason it names)', async (t) => {
    t.ok(parsePriceTable(onePrice(GOOD_PRICE), 'prices.yml'));
    t.ok(parsePriceTable(onePrice(`${GOOD_PRICE}, cached_input_usd_per_mtok: 2.5`), 'prices.yml'));
    t.ok(parsePriceTable(onePrice('effective_from: 2024-02-29, input_usd_per_mtok: 0, output_usd_per_mtok: 10000'), 'prices.yml'));
  });
});

t.test('loadPriceTable', async (t) => {
  t.test('a missing file names the path', async (t) => {
    const missing = join(tmpdir(), 'usage-tracker-no-such-dir', 'prices.yml');
    t.throws(() => loadPriceTable(missing), { name: 'PriceTableError', source: missing, problems: ['file not found'] });
  });

  t.test('reads a file and names it in errors', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'pricing-test-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const good = join(dir, 'good.yml');
    const bad = join(dir, 'bad.yml');
    writeFileSync(good, onePrice(GOOD_PRICE));
    writeFileSync(bad, onePrice('effective_from: 2024-05-13, input_usd_per_mtok: -5, output_usd_per_mtok: 15'));
    const loaded = loadPriceTable(good);
    t.equal(loaded.source, good);
    t.same(price(loaded, usage('openai', 'gpt-4o', '2025-01-01T00:00:00Z', 1000, 1000)), priced(0.02));
    t.throws(() => loadPriceTable(bad), {
      source: bad,
      message: `invalid price table in ${bad}:\n  - providers.openai.gpt-4o.prices.0.input_usd_per_mtok: must not be negative (got -5)`,
    });
  });
});

t.test("the repository's prices.yml", async (t) => {
  const repository: PriceTable = loadPriceTable(REPOSITORY_PRICES_YML);
  const june2025 = '2025-07-01T12:00:00Z';

  t.test('loads, with the four providers of MDMAI', async (t) => {
    t.same([...repository.providers.keys()].sort(), ['anthropic', 'google', 'ollama', 'openai']);
    t.ok(repository.modelCount >= 20, `${repository.modelCount} models`);
  });

  t.test('shows a price history: at least one model has two effective dates', async (t) => {
    const histories = [...repository.providers.values()].flatMap((p) => [...p.byName.values(), ...p.prefixRules]).filter((m) => m.prices.length >= 2);
    t.ok(histories.length >= 1);
  });

  t.test('prices the families the brief names', async (t) => {
    const models: [string, string][] = [
      ['anthropic', 'claude-3-5-sonnet-20241022'],
      ['anthropic', 'claude-3-5-haiku-20241022'],
      ['anthropic', 'claude-sonnet-4-20250514'],
      ['anthropic', 'claude-opus-4-0'],
      ['openai', 'gpt-4o'],
      ['openai', 'gpt-4o-mini'],
      ['openai', 'o1'],
      ['openai', 'o3-mini'],
      ['openai', 'o4-mini'],
      ['google', 'gemini-1.5-pro-002'],
      ['google', 'gemini-1.5-flash-8b'],
      ['google', 'gemini-2.0-flash-001'],
      ['google', 'gemini-2.5-pro'],
      ['google', 'gemini-2.5-flash'],
    ];
    for (const [provider, model] of models) {
      const result = price(repository, usage(provider, model, june2025, 1000, 1000));
      t.equal(result.cost_source, 'price_table', `${provider}/${model}`);
      t.ok(result.cost_source === 'price_table' && result.cost_usd > 0, `${provider}/${model} costs something`);
    }
  });

  t.test('local Ollama models are a known $0', async (t) => {
    for (const model of ['llama3.1:8b', 'llama3.2', 'mistral:7b', 'qwen2.5:14b']) {
      t.same(price(repository, usage('ollama', model, june2025, 5000, 500)), priced(0), model);
    }
  });

  t.test('gpt-4o: $5/$15 before 2024-10-02, $2.50/$10 from then on', async (t) => {
    t.same(price(repository, usage('openai', 'gpt-4o', '2024-10-01T12:00:00Z', 1000, 1000)), priced(0.02));
    t.same(price(repository, usage('openai', 'gpt-4o', '2024-10-02T12:00:00Z', 1000, 1000)), priced(0.0125));
  });
});
