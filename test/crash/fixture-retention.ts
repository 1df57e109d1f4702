// Crash-test fixture of retention (test/crash/retention-sigkill.test.ts runs
// it as a child process; it is not a test file):
//
//   node --import tsx test/crash/fixture-retention.ts DATA_DIR MODE [EXPORT_DIR]
//
// MODE prepare: a node on DATA_DIR ingests old and new records in small
//   batches (a small memtable, so every shard seals many files), updates
//   some old ones (so older versions lie dead in older files), seals every
//   shard, then ingests a last few records that stay unsealed (in the WAL
//   only: a run seals them before it commits), prints `prepared` and exits.
// MODE run: a node on DATA_DIR prints `started`, runs retention (the
//   policies below) through the RetentionActor, prints `done` and exits.
//   The parent SIGKILLs it at a random moment in between.
//
// Every record is either 60+ days old or at most 2 days old, so each policy's
// decision does not depend on the moment the run starts.

import { pathToFileURL } from 'node:url';
import { decode, encode } from '../../protocols/codec.js';
import { subjects } from '../../protocols/subjects.js';
import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { EmbeddedTransport } from '../../src/transport/embedded.js';
import { startNode } from '../../supervisors/node.js';

export const SHARDS = 4;
const DAY_MS = 86_400_000;

export function retentionCrashConfig(dataDir: string, exportDir: string): Config {
  return loadConfig({
    text:
      `storage:\n  memtable_records_max: 40\nretention:\n  schedule_interval_hours: 0\n  export_dir: ${exportDir}\n  archive_dir: ${exportDir}/archive\n` +
      `  legal_holds:\n    - {id: keep-u7, user_id: user-7, reason: crash test}\n` +
      `  policies:\n` +
      `    - {name: drop-errors, category: raw_usage, type: conditional, action: delete, max_age_days: 30, where: {status: error}}\n` +
      `    - {name: export-openai, category: raw_usage, type: conditional, action: export, max_age_days: 30, where: {provider: openai}, export_format: csv}\n` +
      `    - {name: rollup, category: raw_usage, type: time, action: aggregate, max_age_days: 30}\n`,
    env: {
      USAGE_TRACKER_DATA_DIR: dataDir,
      // Backups and the WAL archive beside the data directory, never in the working directory.
      USAGE_TRACKER_BACKUP_DIR: `${dataDir}-backups`,
      USAGE_TRACKER_TRANSPORT: 'embedded',
      USAGE_TRACKER_NATS_URL: 'nats://127.0.0.1:1',
      USAGE_TRACKER_SHARDS: String(SHARDS),
      USAGE_TRACKER_NODE_ID: 'crash-retention',
      USAGE_TRACKER_LOG_LEVEL: 'silent',
    },
  });
}

const PROVIDERS = [
  ['anthropic', 'claude-sonnet-4'],
  ['openai', 'gpt-4o'],
  ['google', 'gemini-2.5-pro'],
] as const;

function record(n: number, now: number) {
  const old = n % 4 !== 0;
  const day = old ? 60 + (n % 9) : n % 2;
  const [provider, model] = PROVIDERS[n % 3]!;
  return {
    id: `cr-${n}`,
    ts: now - day * DAY_MS - 3_600_000 - (n % 3000) * 1000,
    user_id: `user-${n % 11}`,
    provider,
    model,
    input_tokens: 100 + (n % 977),
    output_tokens: 10 + (n % 91),
    cost_usd: (n % 17) * 0.0003,
    latency_ms: 20 + ((n * 31) % 1500),
    status: n % 10 === 7 ? 'error' : 'success',
  };
}

async function main(): Promise<void> {
  const [dataDir, mode, exportDir] = process.argv.slice(2);
  if (!dataDir || (mode !== 'prepare' && mode !== 'run')) throw new Error('usage: fixture-retention.ts DATA_DIR prepare|run [EXPORT_DIR]');
  const config = retentionCrashConfig(dataDir, exportDir ?? `${dataDir}-exports`);
  const embedded = new EmbeddedTransport();
  const node = await startNode(config, { embedded });
  const names = subjects(config.transport.subject_prefix);
  const call = async (endpoint: 'ingest' | 'record.update', body: unknown): Promise<any> =>
    decode((await embedded.request(names.endpoint(endpoint), encode(body), { timeoutMs: 30_000 })).data, 'msgpack', { payloadBytesMax: 64 << 20, nestingDepthMax: 64 });
  if (mode === 'prepare') {
    const now = Date.now();
    const all = Array.from({ length: 2400 }, (_, n) => record(n, now));
    for (let start = 0; start < all.length; start += 30) {
      const reply = await call('ingest', { records: all.slice(start, start + 30) });
      if (!reply.ok) throw new Error(JSON.stringify(reply));
    }
    for (let n = 1; n < all.length; n += 13) {
      const { id, user_id } = all[n]!;
      const reply = await call('record.update', { id, user_id, expected_version: 1, patch: { output_tokens: 5000 + n } });
      if (!reply.ok) throw new Error(JSON.stringify(reply));
    }
    for (let shard = 0; shard < SHARDS; shard++) {
      await node.system.ref(`${config.node.id}/shards/partition-${shard}`).ask({ type: 'seal' }, { timeoutMs: 30_000, caller: 'fixture' });
    }
    // Fewer than memtable_records_max per shard, so nothing seals them.
    const unsealed = Array.from({ length: 40 }, (_, n) => record(all.length + n, now));
    const reply = await call('ingest', { records: unsealed });
    if (!reply.ok) throw new Error(JSON.stringify(reply));
    await node.stop();
    process.stdout.write('prepared\n');
    return;
  }
  process.stdout.write('started\n');
  const reply = await node.system.ref(`${config.node.id}/maintenance/retention`).ask({ type: 'run', dry_run: false, trigger: 'admin' }, { timeoutMs: 600_000, caller: 'fixture' });
  process.stdout.write(`done ${JSON.stringify((reply as { totals: unknown }).totals)}\n`);
  await node.stop();
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: unknown) => {
    process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  });
}
