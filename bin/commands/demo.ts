// `usage-tracker demo`: realistic traffic for a new user to watch. Generates
// records (several providers and models, many users, a day's shape of load),
// sends them to a running node at a steady rate with a progress bar, then
// asks the node what it stored: cost and tokens by provider and by model,
// over the very window the records were generated in.

import { SingleBar } from 'cli-progress';
import { createGenerator } from '../../src/demo/generate.js';
import { CliError, withClient, type ConnectionOptions } from '../client.js';
import { InFlight } from '../in-flight.js';
import { runQuery, type QueryOptions } from './query.js';

export interface DemoOptions extends ConnectionOptions {
  records: string;
  users: string;
  days: string;
  rate: string;
  seed?: string;
  timeout: string;
}

const DAY_MS = 86_400_000;
const BATCH = 250;

/**
 * The time range the demo's records are drawn from, and that its closing
 * table asks about: the last `days` days up to the moment the demo started,
 * `toMs` exclusive (the generator's last possible ts is `toMs - 1`). Both
 * ends are fixed at the start, so the table counts every record sent
 * however long sending took.
 */
export function demoWindow(nowMs: number, days: number): { fromMs: number; toMs: number } {
  return { fromMs: nowMs - days * DAY_MS, toMs: nowMs };
}

/** The closing table's two questions, over the demo's window. */
export function demoQueries(window: { fromMs: number; toMs: number }, connection: ConnectionOptions & { timeout: string }): QueryOptions[] {
  const range = { ...connection, from: String(window.fromMs), to: String(window.toMs) };
  return [
    { ...range, groupBy: 'provider', metrics: 'count,tokens,cost,latency_p50,latency_p95' },
    { ...range, groupBy: 'provider,model', metrics: 'count,tokens,cost' },
  ];
}

function whole(name: string, text: string, min: number, max: number): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > max) throw new CliError(`${name} must be a whole number from ${min} to ${max}, got ${text}`);
  return value;
}

export async function runDemo(options: DemoOptions): Promise<string> {
  const total = whole('--records', options.records, 1, 10_000_000);
  const users = whole('--users', options.users, 1, 1_000_000);
  const days = whole('--days', options.days, 1, 365);
  const rate = whole('--rate', options.rate, 1, 1_000_000);
  const seed = options.seed === undefined ? Date.now() % 2 ** 31 : whole('--seed', options.seed, 0, 2 ** 32 - 1);
  const timeoutMs = whole('--timeout', options.timeout, 1, 600_000);
  const window = demoWindow(Date.now(), days);
  const generator = createGenerator({ seed, users, fromMs: window.fromMs, days, count: total, idPrefix: `demo-${seed}` });
  const tally = { stored: 0, duplicate: 0, rejected: 0 };
  await withClient(options, timeoutMs, async (client) => {
    const bar = process.stderr.isTTY ? new SingleBar({ format: 'demo [{bar}] {value}/{total} records | stored {stored} rejected {rejected} | {rate}/s' }) : undefined;
    bar?.start(total, 0, { ...tally, rate: 0 });
    const started = performance.now();
    const inFlight = new InFlight(8);
    for (let sent = 0; sent < total && !inFlight.failed; ) {
      const size = Math.min(BATCH, total - sent);
      const records = Array.from({ length: size }, (_, i) => generator.recordAt(sent + i));
      sent += size;
      await inFlight.add(
        client.call<{ results?: { status: string }[] }>('ingest', { records }, timeoutMs).then((reply) => {
          if (!reply.ok || !reply.results) throw new CliError(`${reply.error?.code ?? 'error'}: ${reply.error?.message ?? 'refused'}`);
          for (const result of reply.results) tally[result.status as keyof typeof tally]++;
          const seconds = (performance.now() - started) / 1000;
          bar?.update(tally.stored + tally.duplicate + tally.rejected, { ...tally, rate: Math.round((tally.stored + tally.duplicate) / seconds) });
        }),
      );
      const aheadMs = (sent / rate) * 1000 - (performance.now() - started);
      if (aheadMs > 0 && !inFlight.failed) await new Promise((resolve) => setTimeout(resolve, aheadMs));
    }
    await inFlight.settle();
    const failed = inFlight.failed;
    if (failed) {
      bar?.stop();
      const reason = failed.error instanceof Error ? failed.error.message : String(failed.error);
      throw new CliError(`demo stopped after ${tally.stored + tally.duplicate + tally.rejected} of ${total} records were acknowledged (${tally.stored} stored): ${reason}`);
    }
    bar?.stop();
  });
  const connection: ConnectionOptions & { timeout: string } = { timeout: options.timeout };
  if (options.config !== undefined) connection.config = options.config;
  if (options.natsUrl !== undefined) connection.natsUrl = options.natsUrl;
  if (options.prefix !== undefined) connection.prefix = options.prefix;
  if (options.node !== undefined) connection.node = options.node;
  const [providerQuery, modelQuery] = demoQueries(window, connection);
  const byProvider = await runQuery(providerQuery!);
  const byModel = await runQuery(modelQuery!);
  return (
    `sent ${total} records from ${users} users over ${days} day(s): ${tally.stored} stored, ${tally.duplicate} duplicate, ${tally.rejected} rejected\n\n` +
    `last ${days} day(s) by provider:\n${byProvider}\nby model:\n${byModel}`
  );
}
