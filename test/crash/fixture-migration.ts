// Crash-test fixture: a node on DATA_DIR that runs one storage migration
// run and then waits to be killed (test/crash/migration-sigkill.test.ts
// SIGKILLs it, often in the middle of the run). It is not a test file; the
// test runs it as a child process:
//
//   node --import tsx test/crash/fixture-migration.ts DATA_DIR BACKUP_DIR FILE_DELAY_MS
//
// At format 1 it applies storage-0002; at format 2 it rolls it back. Each
// rewritten file is followed by a pause of FILE_DELAY_MS (a runner option
// only this fixture passes), so that a kill lands inside the run. Lines on
// stdout, each written before what it claims:
//
//   running <apply|rollback>   the request is about to be sent
//   done <ok|code>             the reply came
//
// The shared config (migrationCrashConfig) is also what the parent uses to
// check the directory.

import { pathToFileURL } from 'node:url';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decode, encode } from '../../protocols/codec.js';
import { subjects } from '../../protocols/subjects.js';
import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { EmbeddedTransport } from '../../src/transport/embedded.js';
import { startNode } from '../../supervisors/node.js';

export const MIGRATION_CRASH_SHARDS = 4;

export function migrationCrashConfig(dataDir: string, backupDir: string): Config {
  return loadConfig({
    text: `storage:\n  memtable_records_max: 25\nbackup:\n  target_dir: ${backupDir}\n  schedule: false\n  wal_archive: false\n`,
    env: {
      USAGE_TRACKER_DATA_DIR: dataDir,
      USAGE_TRACKER_TRANSPORT: 'embedded',
      USAGE_TRACKER_NATS_URL: 'nats://127.0.0.1:1',
      USAGE_TRACKER_SHARDS: String(MIGRATION_CRASH_SHARDS),
      USAGE_TRACKER_NODE_ID: 'migcrash',
      USAGE_TRACKER_LOG_LEVEL: 'silent',
    },
  });
}

async function main(): Promise<void> {
  const [dataDir, backupDir, delay] = process.argv.slice(2);
  if (!dataDir || !backupDir) throw new Error('usage: fixture-migration.ts DATA_DIR BACKUP_DIR FILE_DELAY_MS');
  const embedded = new EmbeddedTransport();
  await startNode(migrationCrashConfig(dataDir, backupDir), { embedded, migrations: { fileDelayMs: Number(delay ?? 0) } });
  const format = JSON.parse(readFileSync(join(dataDir, 'node.json'), 'utf8')).format_version as number;
  const direction = format === 1 ? 'apply' : 'rollback';
  const endpoint = direction === 'apply' ? 'admin.migration.apply' : 'admin.migration.rollback';
  process.stdout.write(`running ${direction}\n`);
  const reply = await embedded.request(subjects('usage').endpoint(endpoint), encode({}), { timeoutMs: 600_000 });
  const body = decode(reply.data, 'msgpack', { payloadBytesMax: 64 << 20, nestingDepthMax: 64 }) as { ok: boolean; error?: { code: string; message: string } };
  process.stdout.write(`done ${body.ok ? 'ok' : `${body.error?.code} ${body.error?.message}`}\n`);
  // Wait to be killed: the parent checks the directory after a SIGKILL, whether or not the run finished.
  setInterval(() => undefined, 60_000);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((error: unknown) => {
    process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  });
}
