// The bench dataset: N generated usage records (default 5M over 10k users and
// 90 days) as JSON lines, in time order, to a file or stdout. Streams with
// backpressure, so memory stays flat whatever N is; progress goes to stderr.
//
//   node dist/bench/dataset.js --records 5000000 --users 10000 --days 90 --seed 1 --out /tmp/dataset.jsonl
//
// The same arguments write the same bytes; without --from the range ends at
// today's UTC midnight (printed, so a run can be repeated with --from).

import { once } from 'node:events';
import { createWriteStream, realpathSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { records } from '../src/demo/generate.js';

export interface DatasetOptions {
  records: number;
  users: number;
  days: number;
  seed: number;
  fromMs: number;
  costFromClientRatio?: number;
  idPrefix?: string;
}

export interface DatasetSummary {
  records: number;
  bytes: number;
  elapsedMs: number;
}

export const DATASET_DEFAULTS = Object.freeze({ records: 5_000_000, users: 10_000, days: 90, seed: 1 });

const DAY_MS = 86_400_000;
/** Records joined into one write: big enough to amortise a write, small enough to keep memory flat (~300 KB). */
const LINES_PER_CHUNK = 1000;
const PROGRESS_EVERY_RECORDS = 100_000;

/**
 * Writes options.records JSON lines to out, waiting for 'drain' whenever out
 * is full. Does not end out. onProgress is called every 100k records and at the end.
 */
export async function writeDataset(
  options: DatasetOptions,
  out: Writable,
  onProgress?: (written: number, total: number, elapsedMs: number) => void,
): Promise<DatasetSummary> {
  const startedMs = performance.now();
  const { records: total, ...generatorOptions } = options;
  let bytes = 0;
  let written = 0;
  let lines: string[] = [];
  let failure: Error | undefined;
  const onError = (error: Error) => (failure ??= error);
  out.on('error', onError);
  try {
    for (const record of records(generatorOptions, total)) {
      lines.push(JSON.stringify(record));
      if (lines.length < LINES_PER_CHUNK && written + lines.length < total) continue;
      const chunk = Buffer.from(`${lines.join('\n')}\n`);
      written += lines.length;
      lines = [];
      bytes += chunk.length;
      if (failure) throw failure;
      if (!out.write(chunk)) await drained(out, () => failure);
      if (onProgress && (written % PROGRESS_EVERY_RECORDS < LINES_PER_CHUNK || written === total)) {
        onProgress(written, total, performance.now() - startedMs);
      }
    }
    if (failure) throw failure;
  } finally {
    out.off('error', onError);
  }
  return { records: written, bytes, elapsedMs: performance.now() - startedMs };
}

/** Resolves on 'drain'; rejects if out fails or closes first. Leaves no listener behind. */
function drained(out: Writable, failure: () => Error | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const settle = (error?: Error) => {
      out.off('drain', onDrain).off('error', onError).off('close', onClose);
      if (error) reject(error);
      else resolve();
    };
    const onDrain = () => settle();
    const onError = (error: Error) => settle(error);
    const onClose = () => settle(failure() ?? new Error('output closed before the dataset was written'));
    out.on('drain', onDrain).on('error', onError).on('close', onClose);
  });
}

const USAGE = `usage: dataset [--records N] [--users N] [--days N] [--seed N] [--from DATE] [--cost-from-client RATIO] [--id-prefix TEXT] [--out FILE]
  --records           records to write (default ${DATASET_DEFAULTS.records})
  --users             distinct users (default ${DATASET_DEFAULTS.users})
  --days              days in the range (default ${DATASET_DEFAULTS.days})
  --seed              unsigned 32-bit seed (default ${DATASET_DEFAULTS.seed})
  --from              range start, ISO 8601 date or epoch ms (default: --days before today's UTC midnight)
  --cost-from-client  share of records with a client cost_usd, 0 to 1 (default 0.5)
  --id-prefix         ids are <prefix>-<n> (default rec-<seed>)
  --out               output file (default stdout)`;

/** Turns command-line arguments into options; throws a message naming the bad argument. */
export function parseDatasetArgs(args: string[], nowMs: number = Date.now()): { options: DatasetOptions; out?: string; help: boolean } {
  const { values } = parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: {
      records: { type: 'string' },
      users: { type: 'string' },
      days: { type: 'string' },
      seed: { type: 'string' },
      from: { type: 'string' },
      'cost-from-client': { type: 'string' },
      'id-prefix': { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const whole = (name: string, text: string | undefined, fallback: number): number => {
    if (text === undefined) return fallback;
    const value = Number(text.replaceAll('_', ''));
    if (!Number.isSafeInteger(value) || value < 0) throw new Error(`--${name} must be a whole number, got ${JSON.stringify(text)}`);
    return value;
  };
  const days = whole('days', values.days, DATASET_DEFAULTS.days);
  const options: DatasetOptions = {
    records: whole('records', values.records, DATASET_DEFAULTS.records),
    users: whole('users', values.users, DATASET_DEFAULTS.users),
    days,
    seed: whole('seed', values.seed, DATASET_DEFAULTS.seed),
    fromMs: values.from === undefined ? Math.floor(nowMs / DAY_MS) * DAY_MS - days * DAY_MS : parseFrom(values.from),
  };
  if (values['cost-from-client'] !== undefined) {
    const ratio = Number(values['cost-from-client']);
    if (!(ratio >= 0 && ratio <= 1)) throw new Error(`--cost-from-client must be from 0 to 1, got ${JSON.stringify(values['cost-from-client'])}`);
    options.costFromClientRatio = ratio;
  }
  if (values['id-prefix'] !== undefined) options.idPrefix = values['id-prefix'];
  if (options.records < 1) throw new Error('--records must be at least 1');
  return values.out === undefined ? { options, help: values.help === true } : { options, out: values.out, help: values.help === true };
}

function parseFrom(text: string): number {
  const ms = /^\d+$/.test(text) ? Number(text) : Date.parse(text);
  if (!Number.isSafeInteger(ms)) throw new Error(`--from must be an ISO 8601 date or epoch ms, got ${JSON.stringify(text)}`);
  return ms;
}

async function main(): Promise<number> {
  let parsed: ReturnType<typeof parseDatasetArgs>;
  try {
    parsed = parseDatasetArgs(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`dataset: ${(error as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (parsed.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const { options, out } = parsed;
  const from = new Date(options.fromMs).toISOString();
  process.stderr.write(`dataset: ${options.records} records, ${options.users} users, ${options.days} days from ${from}, seed ${options.seed} -> ${out ?? 'stdout'}\n`);
  const stream = out === undefined ? process.stdout : createWriteStream(out);
  const tty = process.stderr.isTTY === true;
  let lastReportMs = 0;
  const progress = (written: number, total: number, elapsedMs: number) => {
    if (written < total && elapsedMs - lastReportMs < 1000) return;
    lastReportMs = elapsedMs;
    const rate = Math.round(written / (elapsedMs / 1000));
    const line = `dataset: ${written} / ${total} (${((100 * written) / total).toFixed(1)}%) ${rate} records/s`;
    process.stderr.write(tty ? `\r${line}${written === total ? '\n' : ''}` : `${line}\n`);
  };
  try {
    const summary = await writeDataset(options, stream, progress);
    if (stream !== process.stdout) {
      stream.end();
      await once(stream, 'close');
    }
    const seconds = summary.elapsedMs / 1000;
    process.stderr.write(
      `dataset: wrote ${summary.records} records, ${(summary.bytes / 2 ** 20).toFixed(1)} MiB in ${seconds.toFixed(2)} s (${Math.round(summary.records / seconds)} records/s)\n`,
    );
    return 0;
  } catch (error) {
    // A reader that stops early (`| head`) is not a failure of ours.
    if ((error as NodeJS.ErrnoException).code === 'EPIPE') return 0;
    process.stderr.write(`dataset: ${(error as Error).message}\n`);
    return 1;
  }
}

function invokedAsScript(): boolean {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (invokedAsScript()) process.exitCode = await main();
