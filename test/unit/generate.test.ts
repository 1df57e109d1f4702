// The generated usage records the demo and the bench rely on: reproducible
// from a seed, valid as the service's validator sees them, and shaped like
// MDMAI's traffic. Tolerances on shares are absolute percentage points on
// 20,000 records; each is at least five standard deviations wide, so a
// failure means the shape changed, not bad luck. The dataset writer is run as
// a user runs it (a child process) and checked line by line.

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import t from 'tap';
import { DEFAULT_LIMITS } from '../../protocols/limits.js';
import { recordValidator, type UsageRecord } from '../../protocols/record.js';
import { writeDataset } from '../../bench/dataset.js';
import {
  ERROR_CODES,
  MODELS,
  OPERATIONS,
  STATUS_RATES,
  TOKEN_BOUNDS,
  createGenerator,
  dayShapeWeight,
  records,
  type GeneratorOptions,
} from '../../src/demo/generate.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DAY_MS = 86_400_000;
const N = 20_000;
const OPTIONS: GeneratorOptions = { seed: 7, users: 1000, fromMs: Date.UTC(2025, 2, 3), days: 28 };
const END_MS = OPTIONS.fromMs + OPTIONS.days * DAY_MS;
const validator = recordValidator(DEFAULT_LIMITS, () => END_MS);
const sample = [...records(OPTIONS, N)];

type Test = Parameters<Parameters<typeof t.test>[0]>[0];

function share<T>(items: readonly T[], keep: (item: T) => boolean): number {
  let kept = 0;
  for (const item of items) if (keep(item)) kept++;
  return kept / items.length;
}

function near(t: Test, actual: number, expected: number, tolerance: number, what: string): void {
  t.ok(Math.abs(actual - expected) <= tolerance, `${what}: ${(100 * actual).toFixed(2)}% within ${100 * tolerance} points of ${(100 * expected).toFixed(2)}%`);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function correlation(xs: number[], ys: number[]): number {
  const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
  const mx = mean(xs);
  const my = mean(ys);
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let k = 0; k < xs.length; k++) {
    sxy += (xs[k]! - mx) * (ys[k]! - my);
    sxx += (xs[k]! - mx) ** 2;
    syy += (ys[k]! - my) ** 2;
  }
  return sxy / Math.sqrt(sxx * syy);
}

t.test('the same seed gives the same records, by cursor, by index and as a stream', async (t) => {
  const first = createGenerator(OPTIONS).batch(2000);
  const again = createGenerator(OPTIONS);
  t.same(again.batch(1000), first.slice(0, 1000), 'a second generator repeats the first');
  t.same([again.next(), again.next()], first.slice(1000, 1002), 'next() carries on where batch() stopped');
  for (const i of [0, 1, 17, 999, 1999]) t.same(again.recordAt(i), first[i], `recordAt(${i}) is the ${i}th record`);
  t.same(createGenerator({ ...OPTIONS, count: N }).batch(N), sample, 'records(options, n) is the generator with count n');
});

t.test('a different seed gives different records', async (t) => {
  const other = [...records({ ...OPTIONS, seed: 8 }, N)];
  const fingerprint = (r: UsageRecord) => `${r.user_id}|${r.model}|${r.input_tokens}|${r.output_tokens}`;
  const same = sample.filter((r, i) => fingerprint(r) === fingerprint(other[i]!)).length;
  t.ok(same < N / 100, `${same} of ${N} records coincide`);
  t.not(other[0]!.id, sample[0]!.id, 'ids carry the seed by default');
});

t.test(`${N} records all pass the service's validator unchanged, with unique ids`, async (t) => {
  const rejected: string[] = [];
  let changed = 0;
  for (const record of sample) {
    const result = validator.validate(record);
    if (!result.ok) rejected.push(`${record.id}: ${result.error.message}`);
    else if (!isDeepStrictEqual(result.value, record)) changed++;
  }
  t.same(rejected.slice(0, 5), [], `no rejections (${rejected.length} in all)`);
  t.equal(changed, 0, 'records are already normalised');
  t.equal(new Set(sample.map((r) => r.id)).size, N, 'ids are unique');
  t.equal(sample[123]!.id, 'rec-7-123', 'ids are <prefix>-<index>');
  const unordered = createGenerator(OPTIONS).batch(5000);
  t.equal(unordered.filter((r) => !validator.validate(r).ok).length, 0, 'records without a planned count are valid too');
});

t.test('the provider and model mix follows MODELS within 1.5 points', async (t) => {
  const weightTotal = MODELS.reduce((sum, m) => sum + m.weight, 0);
  for (const m of MODELS) {
    near(t, share(sample, (r) => r.model === m.model && r.provider === m.provider), m.weight / weightTotal, 0.015, `${m.provider}/${m.model}`);
  }
  const expected = { anthropic: 0.4, openai: 0.3, google: 0.2, ollama: 0.1 };
  for (const [provider, part] of Object.entries(expected)) near(t, share(sample, (r) => r.provider === provider), part, 0.02, provider);
});

t.test('statuses: about 2% errors with a code, 1% timeouts, 0.5% cancelled', async (t) => {
  near(t, share(sample, (r) => r.status === 'error'), STATUS_RATES.error, 0.005, 'error');
  near(t, share(sample, (r) => r.status === 'timeout'), STATUS_RATES.timeout, 0.004, 'timeout');
  near(t, share(sample, (r) => r.status === 'cancelled'), STATUS_RATES.cancelled, 0.003, 'cancelled');
  const errors = sample.filter((r) => r.status === 'error');
  t.ok(errors.every((r) => r.error_code !== undefined && ERROR_CODES[r.provider]!.includes(r.error_code)), "each error has one of its provider's codes");
  t.ok(new Set(errors.map((r) => r.error_code)).has('rate_limited'), 'rate limits are among them');
  t.ok(sample.every((r) => (r.status === 'error') === (r.error_code !== undefined)), 'only errors have an error_code');
  t.ok(sample.filter((r) => r.status === 'error' || r.status === 'timeout').every((r) => r.output_tokens === 0), 'failed calls produce no output');
  t.ok(sample.filter((r) => r.status === 'timeout').every((r) => r.latency_ms! >= 60_000), 'timeouts take at least a minute');
});

t.test('tokens, cache reads and latency are plausible per model', async (t) => {
  const b = TOKEN_BOUNDS;
  t.ok(sample.every((r) => r.input_tokens >= b.inputMin && r.input_tokens <= b.inputMax), 'input tokens within 200..20k');
  t.ok(sample.every((r) => r.output_tokens <= b.outputMax), 'output tokens at most 4k');
  t.ok(sample.filter((r) => r.status === 'success').every((r) => r.output_tokens >= b.outputMin), 'a successful call writes at least 50 tokens');
  const caching = sample.filter((r) => r.provider === 'anthropic' || r.provider === 'openai');
  near(t, share(caching, (r) => r.cached_tokens !== undefined), 0.45, 0.03, 'Anthropic and OpenAI calls with cache reads');
  t.ok(sample.every((r) => r.cached_tokens === undefined || r.cached_tokens <= r.input_tokens), 'cached tokens are part of the input');
  t.ok(sample.every((r) => r.cached_tokens === undefined || caching.includes(r)), 'only Anthropic and OpenAI report cache reads');

  const ok = (model: string) => sample.filter((r) => r.model === model && r.status === 'success');
  const sonnet = ok('claude-sonnet-4');
  const r = correlation(sonnet.map((x) => x.output_tokens), sonnet.map((x) => x.latency_ms!));
  t.ok(r > 0.6, `claude-sonnet-4 latency follows output tokens (r = ${r.toFixed(2)})`);
  const msPerToken = (rows: UsageRecord[]) => median(rows.map((x) => x.latency_ms! / x.output_tokens));
  t.ok(msPerToken(ok('claude-opus-4')) > 2 * msPerToken(ok('claude-3-5-haiku')), 'opus is slower per output token than haiku');

  const meanInput = (operation: string) => {
    const rows = sample.filter((x) => x.operation === operation);
    return rows.reduce((sum, x) => sum + x.input_tokens, 0) / rows.length;
  };
  t.ok(meanInput('session_summary') > 2 * meanInput('rules_lookup'), 'a session summary reads far more than a rules lookup');
});

t.test('operations, campaigns, sessions and metadata look like a TTRPG assistant', async (t) => {
  for (const op of OPERATIONS) near(t, share(sample, (r) => r.operation === op.operation), op.weight / 100, 0.02, op.operation);
  t.ok(sample.every((r) => OPERATIONS.some((op) => op.operation === r.operation)), 'every record names one of the operations');
  near(t, share(sample, (r) => r.campaign_id !== undefined), 0.9, 0.02, 'records in a campaign');
  t.ok(sample.every((r) => (r.campaign_id === undefined) === (r.session_id === undefined)), 'a session comes with its campaign');
  const inCampaign = sample.filter((r) => r.campaign_id !== undefined);
  const user = (r: UsageRecord) => r.user_id.slice('user-'.length);
  t.ok(inCampaign.every((r) => r.campaign_id!.startsWith(`camp-${user(r)}-`) && r.session_id!.startsWith(`sess-${user(r)}-`)), "campaigns and sessions belong to the record's user");
  const campaignsOf = new Map<string, Set<string>>();
  for (const r of inCampaign) campaignsOf.set(r.user_id, (campaignsOf.get(r.user_id) ?? new Set()).add(r.campaign_id!));
  t.ok([...campaignsOf.values()].every((set) => set.size <= 3), 'a user plays at most three campaigns');
  t.ok([...campaignsOf.values()].some((set) => set.size > 1), 'some users play more than one');
  near(t, share(sample, (r) => r.metadata !== undefined), 0.25, 0.02, 'records with metadata');
  t.ok(sample.every((r) => r.metadata === undefined || Object.keys(r.metadata).length <= 4), 'metadata stays small');
});

t.test('cost: some records carry a client cost at list price, the rest are left to the server', async (t) => {
  near(t, share(sample, (r) => r.cost_usd !== undefined), 0.5, 0.02, 'records with a client cost (default ratio 0.5)');
  const none = createGenerator({ ...OPTIONS, costFromClientRatio: 0 }).batch(2000);
  const all = createGenerator({ ...OPTIONS, costFromClientRatio: 1 }).batch(2000);
  t.ok(none.every((r) => r.cost_usd === undefined), 'ratio 0: no record carries a cost');
  t.ok(all.every((r) => r.cost_usd !== undefined), 'ratio 1: every record does');
  t.ok(all.filter((r) => r.provider === 'ollama').every((r) => r.cost_usd === 0), 'local models cost nothing');
  t.ok(all.filter((r) => r.status === 'error' || r.status === 'timeout').every((r) => r.cost_usd === 0), 'failed calls are not billed');
  const sonnet = all.filter((r) => r.model === 'claude-sonnet-4' && r.status === 'success');
  t.ok(sonnet.length > 100, 'enough claude-sonnet-4 calls to check');
  const wrong = sonnet.filter((r) => {
    const cached = r.cached_tokens ?? 0;
    const list = ((r.input_tokens - cached) * 3 + cached * 0.3 + r.output_tokens * 15) / 1e6;
    return Math.abs(r.cost_usd! - list) > 1e-8;
  });
  t.equal(wrong.length, 0, 'claude-sonnet-4 is priced at $3 in, $0.30 cached, $15 out per million tokens');
});

t.test('user activity is skewed: a few heavy users and a long tail', async (t) => {
  const counts = new Map<string, number>();
  for (const r of sample) counts.set(r.user_id, (counts.get(r.user_id) ?? 0) + 1);
  const ranked = [...counts.entries()].sort((a, b) => b[1] - a[1]);
  const top1Percent = ranked.slice(0, OPTIONS.users / 100).reduce((sum, [, c]) => sum + c, 0) / N;
  t.ok(top1Percent > 0.08, `the top 1% of users send ${(100 * top1Percent).toFixed(1)}% of records (8x a fair share or more)`);
  const heaviest = ranked[0]![1];
  const typical = median(ranked.map(([, c]) => c));
  t.ok(heaviest > 20 * typical, `the heaviest user sends ${heaviest}, the median user ${typical}`);
  t.ok(ranked.slice(0, 3).some(([id]) => id === 'user-0'), 'user-0 is among the three heaviest');
  t.ok(counts.size >= 0.95 * OPTIONS.users, `${counts.size} of ${OPTIONS.users} users appear: the tail is there`);
});

t.test('timestamps stay in range and follow the day and the week', async (t) => {
  t.ok(sample.every((r) => Number.isInteger(r.ts) && r.ts >= OPTIONS.fromMs && r.ts < END_MS), 'all within [fromMs, fromMs + days)');
  t.ok(sample.every((r, i) => i === 0 || r.ts >= sample[i - 1]!.ts), 'with a planned count, records come in time order');
  t.ok(sample[N - 1]!.ts - sample[0]!.ts > (OPTIONS.days - 1) * DAY_MS, 'and they span the whole range');
  for (const [label, rows] of [['ordered', sample], ['unordered', createGenerator(OPTIONS).batch(N)]] as const) {
    const byHour = new Array<number>(24).fill(0);
    for (const r of rows) byHour[new Date(r.ts).getUTCHours()]!++;
    const peak = (byHour[18]! + byHour[19]! + byHour[20]! + byHour[21]!) / 4;
    const night = (byHour[2]! + byHour[3]! + byHour[4]! + byHour[5]!) / 4;
    t.ok(peak > 4 * night, `${label}: ${peak} records an evening hour against ${night} a night hour`);
    const byWeekday = new Array<number>(7).fill(0);
    for (const r of rows) byWeekday[new Date(r.ts).getUTCDay()]!++;
    const weekend = (byWeekday[0]! + byWeekday[6]!) / 2;
    const midweek = (byWeekday[2]! + byWeekday[3]!) / 2;
    t.ok(weekend > 1.15 * midweek, `${label}: ${weekend} records a weekend day against ${midweek} midweek`);
  }
});

t.test('dayShapeWeight paces a demo through the UTC day', async (t) => {
  const weights = Array.from({ length: 24 }, (_, h) => dayShapeWeight(h));
  t.ok(weights.every((w) => w > 0 && w <= 1), 'every hour has some load, at most the peak');
  t.equal(Math.max(...weights), 1, 'the peak is 1');
  t.ok(dayShapeWeight(20) === 1 && dayShapeWeight(4) < 0.1, 'peak in the evening, quiet at night');
  t.equal(dayShapeWeight(20.75), dayShapeWeight(20), 'a fractional hour counts as its hour');
  t.equal(dayShapeWeight(24), dayShapeWeight(0), 'hours wrap forwards');
  t.equal(dayShapeWeight(-1), dayShapeWeight(23), 'and backwards');
  t.throws(() => dayShapeWeight(Number.NaN), RangeError);
});

t.test('bad options are refused at construction, naming the option', async (t) => {
  const cases: [Partial<GeneratorOptions>, string][] = [
    [{ seed: -1 }, 'seed'],
    [{ seed: 1.5 }, 'seed'],
    [{ users: 0 }, 'users'],
    [{ days: 0 }, 'days'],
    [{ fromMs: 0 }, 'fromMs'],
    [{ costFromClientRatio: 1.5 }, 'costFromClientRatio'],
    [{ count: 0 }, 'count'],
    [{ idPrefix: 'has space' }, 'idPrefix'],
  ];
  for (const [bad, name] of cases) t.throws(() => createGenerator({ ...OPTIONS, ...bad }), new RegExp(`^${name} `), `${JSON.stringify(bad)} names ${name}`);
  const planned = createGenerator({ ...OPTIONS, count: 10 });
  t.throws(() => planned.recordAt(10), RangeError, 'an index past the planned count');
  t.throws(() => planned.recordAt(-1), RangeError, 'a negative index');
});

interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runDataset(args: string[]): Promise<Finished> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/dataset.ts', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = { stdout: '', stderr: '' };
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output.stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output.stderr += chunk));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`dataset did not exit within 60 s; stderr: ${output.stderr}`));
    }, 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, ...output });
    });
  });
}

t.test('bench/dataset writes exactly N lines of valid records', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'usage-tracker-dataset-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'dataset.jsonl');
  const fromMs = Date.UTC(2025, 2, 1);
  const toFile = await runDataset(['--records', '2500', '--users', '40', '--days', '3', '--seed', '5', '--from', '2025-03-01', '--out', file]);
  t.equal(toFile.code, 0, `exits 0; stderr: ${toFile.stderr}`);
  t.match(toFile.stderr, /wrote 2500 records/, 'reports what it wrote on stderr');
  const text = readFileSync(file, 'utf8');
  t.ok(text.endsWith('\n'), 'the file ends with a newline');
  const lines = text.slice(0, -1).split('\n');
  t.equal(lines.length, 2500, 'exactly 2500 lines');
  const fileValidator = recordValidator(DEFAULT_LIMITS, () => fromMs + 3 * DAY_MS);
  t.equal(lines.filter((line) => !fileValidator.validate(JSON.parse(line)).ok).length, 0, 'every line is a valid record');
  const expected = [...records({ seed: 5, users: 40, days: 3, fromMs }, 2500)];
  t.same(lines.map((line) => JSON.parse(line)), expected, 'the lines are the generator records, in order');

  const toStdout = await runDataset(['--records', '300', '--users', '40', '--days', '3', '--from', '2025-03-01']);
  t.equal(toStdout.code, 0, 'writes to stdout without --out');
  t.equal(toStdout.stdout.split('\n').filter((line) => line !== '').length, 300, 'exactly 300 lines on stdout');

  const bad = await runDataset(['--records', 'many']);
  t.equal(bad.code, 2, 'a bad argument exits 2');
  t.match(bad.stderr, /--records/, 'and names the argument');
});

t.test('writeDataset waits for a slow reader instead of buffering the dataset', async (t) => {
  const highWaterMark = 64 * 1024;
  let bufferedMax = 0;
  let lines = 0;
  const slow = new Writable({
    highWaterMark,
    write(chunk: Buffer, _encoding, done) {
      bufferedMax = Math.max(bufferedMax, slow.writableLength);
      for (const byte of chunk) if (byte === 0x0a) lines++;
      setTimeout(done, 1);
    },
  });
  const summary = await writeDataset({ ...OPTIONS, records: 30_000 }, slow);
  slow.end();
  await once(slow, 'finish');
  t.equal(summary.records, 30_000, 'reports every record written');
  t.equal(lines, 30_000, 'the reader received every line');
  t.ok(bufferedMax < 1024 * 1024, `at most ${bufferedMax} bytes waited in the stream (the dataset is ~9 MB)`);

  let writes = 0;
  const failing = new Writable({
    write(_chunk, _encoding, done) {
      done(++writes === 3 ? new Error('disk on fire') : undefined);
    },
  });
  await t.rejects(writeDataset({ ...OPTIONS, records: 30_000 }, failing), /disk on fire/, 'a failing output rejects, it does not hang');
});
