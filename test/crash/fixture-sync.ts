// Crash-test fixture for the mirrors: a node on DATA_DIR with the PostgreSQL
// mirror on SCHEMA, ingesting generated records and updating some, as fast
// as it can, until test/crash/sync-sigkill.test.ts SIGKILLs it. Not a test
// file; the test runs it as a child process:
//
//   node --import tsx test/crash/fixture-sync.ts DATA_DIR POSTGRES_URL SCHEMA ROUND
//
// It prints `ready` once the node serves.

import { pathToFileURL } from 'node:url';
import { decode, encode } from '../../protocols/codec.js';
import { subjects, type EndpointName } from '../../protocols/subjects.js';
import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { createGenerator } from '../../src/demo/generate.js';
import { EmbeddedTransport } from '../../src/transport/embedded.js';
import { startNode } from '../../supervisors/node.js';

export function syncCrashConfig(dataDir: string, postgresUrl: string, schema: string): Config {
  return loadConfig({
    text: `storage:\n  memtable_records_max: 400\nbackends:\n  postgres:\n    url: ${postgresUrl}\n    schema: ${schema}\n    window_ms: 10\n    batch_records_max: 150\n    retry_base_ms: 50\n    retry_max_ms: 500\n`,
    env: {
      USAGE_TRACKER_DATA_DIR: dataDir,
      // Backups and the WAL archive beside the data directory, never in the working directory.
      USAGE_TRACKER_BACKUP_DIR: `${dataDir}-backups`,
      USAGE_TRACKER_TRANSPORT: 'embedded',
      USAGE_TRACKER_NATS_URL: 'nats://127.0.0.1:1',
      USAGE_TRACKER_SHARDS: '4',
      USAGE_TRACKER_NODE_ID: 'synccrash',
      USAGE_TRACKER_LOG_LEVEL: 'silent',
    },
  });
}

async function main(): Promise<void> {
  const [dataDir, postgresUrl, schema, round] = process.argv.slice(2) as [string, string, string, string];
  const embedded = new EmbeddedTransport();
  const config = syncCrashConfig(dataDir, postgresUrl, schema);
  await startNode(config, { embedded });
  const names = subjects(config.transport.subject_prefix);
  const call = async (endpoint: EndpointName, body: unknown) =>
    decode((await embedded.request(names.endpoint(endpoint), encode(body), { timeoutMs: 30_000 })).data) as any;
  process.stdout.write('ready\n');
  const generator = createGenerator({ seed: Number(round), users: 20, fromMs: Date.UTC(2026, 0, 1), days: 3, idPrefix: `r${round}` });
  for (let batch = 0; ; batch++) {
    const records = Array.from({ length: 50 }, (_, i) => generator.recordAt(batch * 50 + i));
    await call('ingest', { records });
    // Update a record of this batch, so the feed carries updates of sealed and unsealed records alike.
    const target = records[batch % 50]!;
    const current = await call('record.get', { id: target.id, user_id: target.user_id });
    if (current.ok) await call('record.update', { id: target.id, user_id: target.user_id, expected_version: current.record.version, patch: { output_tokens: batch } });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main();
