// The price table: the operator's YAML file of USD prices per provider and
// model, each with the UTC day it takes effect, and `price`, which turns a
// record's tokens into `cost_usd` on the ingest hot path.
//
// Promises:
// - A file that loads is wholly valid: unknown keys, negative prices, bad
//   dates, duplicate effective dates and names claimed twice are errors that
//   name the file and the key path, never ignored.
// - `price` never reports an unknown cost as $0: an unknown provider or model,
//   a record older than the model's first price, or `cached_tokens` greater
//   than `input_tokens` give `{cost_source: 'unknown'}`.
// - `price` does no parsing, sorting or string building: two Map lookups
//   (provider, then model), the provider's prefix rules on a miss, and a walk
//   back from the newest price, which is where almost every record lands.
//   (Maps nested by provider rather than one Map keyed `provider\0model`:
//   building that key per call measured about three times slower.)
// The format and the rules are documented in docs/pricing.md.

import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { describeIssue, problemLine, PROTOCOL_WORDING, sentenceMap, wrongType, type Issue, type KnownKeys, type Wording } from '../../protocols/issues.js';
import { COST_USD_MAX } from '../../protocols/limits.js';
import { isCleanText, parseIsoTimestamp, type UsageRecord } from '../../protocols/record.js';

/** Highest price accepted for one million tokens, in USD. */
export const PRICE_USD_PER_MTOK_MAX = 10_000;
/** Longest provider or model name, as in protocol v1 (`nameLengthMax`). */
const NAME_LENGTH_MAX = 128;
/** A price per million tokens times this is nano-USD per token. */
const NANO_USD_PER_TOKEN_PER_USD_PER_MTOK = 1_000;
const NANO_USD_PER_USD = 1_000_000_000;

export class PriceTableError extends Error {
  override readonly name = 'PriceTableError';
  constructor(
    readonly source: string,
    readonly problems: string[],
  ) {
    super(`invalid price table in ${source}:\n${problems.map((problem) => `  - ${problem}`).join('\n')}`);
  }
}

/** One price in force from a UTC day on. Rates are nano-USD per token (USD per million tokens x 1000). */
export interface PriceEntry {
  readonly effectiveFromMs: number;
  readonly inputNanoUsdPerToken: number;
  readonly outputNanoUsdPerToken: number;
  /** Equal to the input rate when the file gives no cached rate. */
  readonly cachedInputNanoUsdPerToken: number;
}

export interface ModelPrices {
  readonly provider: string;
  /** The model's key in the file (for a prefix rule: the prefix). */
  readonly model: string;
  /** Oldest first; effective days are distinct. */
  readonly prices: readonly PriceEntry[];
}

export interface ProviderPrices {
  /** Every exact model name and every alias. */
  readonly byName: ReadonlyMap<string, ModelPrices>;
  /** The `match: prefix` entries, longest prefix first. */
  readonly prefixRules: readonly ModelPrices[];
}

export interface PriceTable {
  /** The file the table came from, for logs and status. */
  readonly source: string;
  /** Model entries in the file (exact and prefix), aliases not counted. */
  readonly modelCount: number;
  /** By lower-case provider name. */
  readonly providers: ReadonlyMap<string, ProviderPrices>;
}

/** What `price` reads of a record. */
export type PricedUsage = Pick<UsageRecord, 'provider' | 'model' | 'ts' | 'input_tokens' | 'output_tokens' | 'cached_tokens'>;

export type PriceResult = { cost_usd: number; cost_source: 'price_table' } | { cost_source: 'unknown' };

const UNKNOWN: PriceResult = Object.freeze({ cost_source: 'unknown' });

/**
 * The cost of one record at the price in force on its UTC day, rounded to the
 * nearest 1e-9 USD. `cached_tokens` is the part of `input_tokens` served from
 * cache: cost = (input - cached) x input rate + cached x cached rate + output x
 * output rate. `provider` must be lower case, as the record validator leaves
 * it; `ts` is epoch milliseconds. The unknown answer is one shared frozen object.
 */
export function price(table: PriceTable, record: PricedUsage): PriceResult {
  const provider = table.providers.get(record.provider);
  if (provider === undefined) return UNKNOWN;
  const model = provider.byName.get(record.model) ?? prefixMatch(provider.prefixRules, record.model);
  if (model === undefined) return UNKNOWN;
  // effective_from is a UTC midnight, so "its day <= the record's day" is "its ms <= the record's ms".
  const prices = model.prices;
  let index = prices.length - 1;
  while (index >= 0 && prices[index]!.effectiveFromMs > record.ts) index--;
  if (index < 0) return UNKNOWN;
  const entry = prices[index]!;
  const cached = record.cached_tokens ?? 0;
  if (!(cached <= record.input_tokens)) return UNKNOWN;
  const nanoUsd =
    (record.input_tokens - cached) * entry.inputNanoUsdPerToken +
    cached * entry.cachedInputNanoUsdPerToken +
    record.output_tokens * entry.outputNanoUsdPerToken;
  const costUsd = Math.round(nanoUsd) / NANO_USD_PER_USD;
  // Beyond the protocol's bound only absurd token counts reach; such a cost could not be stored.
  if (!(costUsd <= COST_USD_MAX)) return UNKNOWN;
  return { cost_usd: costUsd, cost_source: 'price_table' };
}

function prefixMatch(rules: readonly ModelPrices[], model: string): ModelPrices | undefined {
  for (const rule of rules) if (model.startsWith(rule.model)) return rule;
  return undefined;
}

export function loadPriceTable(path: string): PriceTable {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new PriceTableError(path, [code === 'ENOENT' ? 'file not found' : `cannot read the file (${code ?? String(error)})`]);
  }
  return parsePriceTable(text, path);
}

/** Parses and validates the text of a price file; `source` names it in errors. */
export function parsePriceTable(text: string, source: string): PriceTable {
  const document = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  if (document.errors.length > 0) {
    throw new PriceTableError(
      source,
      document.errors.map((error) => {
        const message = error.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
        return `YAML: ${message}${error.linePos ? ` (line ${error.linePos[0].line}, column ${error.linePos[0].col})` : ''}`;
      }),
    );
  }
  const value: unknown = document.toJS();
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new PriceTableError(source, ['the top level must be a map with a providers key']);
  }
  const reserved = reservedKeyPath(value, []);
  if (reserved !== undefined) throw new PriceTableError(source, [`${reserved}: reserved key`]);
  const known: KnownKeys = new WeakMap();
  const result = fileSchema.safeParse(value, { reportInput: true, error: sentenceMap(known) });
  if (!result.success) throw new PriceTableError(source, describeIssues(result.error.issues, known));
  return buildTable(result.data, source);
}

/** The path of the first `__proto__` key, which zod would drop silently rather than report. */
function reservedKeyPath(value: unknown, path: string[]): string | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  for (const [key, child] of Object.entries(value)) {
    const childPath = [...path, key];
    if (key === '__proto__') return childPath.join('.');
    const found = reservedKeyPath(child, childPath);
    if (found !== undefined) return found;
  }
  return undefined;
}

// ---- the file's schema ----

const ISO_DATE = /^\d{4}-\d{2}-\d{2}$/;
const PROVIDER_NAME = /^[a-z0-9][a-z0-9._-]*$/;

const usdPerMtok = z
  .number({ error: 'must be a number of USD per million tokens' })
  .finite('must be a finite number')
  .min(0, 'must not be negative')
  .max(PRICE_USD_PER_MTOK_MAX, `must be at most ${PRICE_USD_PER_MTOK_MAX}`);

const modelName = z
  .string({ error: 'must be a model name' })
  .min(1, 'must not be empty')
  .max(NAME_LENGTH_MAX, `must be at most ${NAME_LENGTH_MAX} characters`)
  .refine(isCleanText, 'must not contain control characters');

const providerName = z
  .string()
  .max(NAME_LENGTH_MAX, `provider names must be at most ${NAME_LENGTH_MAX} characters`)
  .regex(PROVIDER_NAME, "provider names must be lower case letters, digits, '.', '_' or '-' (records' providers are lower-cased)");

const priceSchema = z
  .object(
    {
      effective_from: z
        .string({ error: 'must be a date written YYYY-MM-DD (UTC)' })
        .refine((text) => ISO_DATE.test(text) && !Number.isNaN(parseIsoTimestamp(text)), 'must be a calendar date written YYYY-MM-DD (UTC)'),
      input_usd_per_mtok: usdPerMtok,
      output_usd_per_mtok: usdPerMtok,
      cached_input_usd_per_mtok: usdPerMtok.optional(),
    },
    { error: wrongType('must be a map with effective_from, input_usd_per_mtok and output_usd_per_mtok') },
  )
  .strict();

const modelSchema = z
  .object(
    {
      match: z.enum(['exact', 'prefix'], { error: 'must be exact or prefix' }).default('exact'),
      aliases: z.array(modelName, { error: 'must be a list of model names' }).default([]),
      prices: z.array(priceSchema, { error: 'must be a list of prices' }).min(1, 'must list at least one price'),
    },
    { error: wrongType('must be a map with prices (and optionally aliases, match)') },
  )
  .strict()
  .superRefine((model, ctx) => {
    if (!Array.isArray(model.prices)) return;
    const seen = new Set<string>();
    for (const { effective_from } of model.prices) {
      if (seen.has(effective_from)) {
        ctx.addIssue({ code: 'custom', path: ['prices'], message: `effective_from ${effective_from} appears more than once` });
        return;
      }
      seen.add(effective_from);
    }
  });

const providerSchema = z
  .record(modelName, modelSchema, { error: wrongType('must be a map of model names to their prices') })
  .superRefine((models, ctx) => {
    // Names and aliases share one namespace per provider, so a name means one model.
    const owner = new Map<string, string>(Object.keys(models).map((name) => [name, name]));
    for (const [name, model] of Object.entries(models)) {
      // Zod runs this even when a sibling failed; a model whose own shape failed is already reported.
      if (!Array.isArray(model?.aliases)) continue;
      model.aliases.forEach((alias, index) => {
        const claimed = owner.get(alias);
        if (claimed !== undefined) {
          ctx.addIssue({
            code: 'custom',
            path: [name, 'aliases', index],
            message: claimed === alias ? `"${alias}" is already a model of this provider` : `"${alias}" is already an alias of ${claimed}`,
          });
        } else {
          owner.set(alias, name);
        }
      });
    }
  });

const fileSchema = z
  .object({
    providers: z.record(providerName, providerSchema, { error: wrongType('must be a map of provider names to their models') }),
  })
  .strict();

type PriceFile = z.infer<typeof fileSchema>;

function buildTable(file: PriceFile, source: string): PriceTable {
  const providers = new Map<string, ProviderPrices>();
  let modelCount = 0;
  for (const [provider, models] of Object.entries(file.providers)) {
    const byName = new Map<string, ModelPrices>();
    const prefixRules: ModelPrices[] = [];
    for (const [model, spec] of Object.entries(models)) {
      modelCount++;
      const entry: ModelPrices = Object.freeze({
        provider,
        model,
        prices: Object.freeze(
          spec.prices
            .map((p) =>
              Object.freeze({
                effectiveFromMs: parseIsoTimestamp(p.effective_from),
                inputNanoUsdPerToken: p.input_usd_per_mtok * NANO_USD_PER_TOKEN_PER_USD_PER_MTOK,
                outputNanoUsdPerToken: p.output_usd_per_mtok * NANO_USD_PER_TOKEN_PER_USD_PER_MTOK,
                cachedInputNanoUsdPerToken: (p.cached_input_usd_per_mtok ?? p.input_usd_per_mtok) * NANO_USD_PER_TOKEN_PER_USD_PER_MTOK,
              }),
            )
            .sort((a, b) => a.effectiveFromMs - b.effectiveFromMs),
        ),
      });
      if (spec.match === 'prefix') prefixRules.push(entry);
      else byName.set(model, entry);
      for (const alias of spec.aliases) byName.set(alias, entry);
    }
    prefixRules.sort((a, b) => b.model.length - a.model.length);
    providers.set(provider, Object.freeze({ byName, prefixRules: Object.freeze(prefixRules) }));
  }
  return Object.freeze({ source, modelCount, providers });
}

// ---- error lines ----

/** A price file's keys are keys, each unknown one on its own line; the sentences are protocols/issues.ts's. */
const PRICE_FILE_WORDING: Wording = { ...PROTOCOL_WORDING, key: 'key', topKeys: 'the top level takes', unknownKeysTogether: false };

function describeIssues(issues: readonly Issue[], known: KnownKeys): string[] {
  return issues.flatMap((issue) => describeIssue(issue, known, PRICE_FILE_WORDING)).map((problem) => problemLine(problem.field || problem.label !== undefined ? problem : { ...problem, label: '(top level)' }));
}
