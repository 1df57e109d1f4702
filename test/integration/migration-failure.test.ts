// A storage migration that fails half way through its shards (injected into
// the runner's registry: shards 0-2 are rewritten for real, then shard 2's
// step fails after its manifest was switched) is rolled back automatically:
// every file of the data directory is byte-identical to before, the node
// keeps serving every record, the reply and status report the failure, and
// the audit log has the automatic rollback.

import t from 'tap';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decode, encode } from '../../protocols/codec.js';
import { subjects, type EndpointName } from '../../protocols/subjects.js';
import { loadConfig } from '../../src/config/load.js';
import { STORAGE_0002, type Migration } from '../../src/migration/entries.js';
import { silentLogger } from '../../src/log.js';
import { EmbeddedTransport } from '../../src/transport/embedded.js';
import { startNode, type UsageNode } from '../../supervisors/node.js';
import { hashTree, manifests, toFormat1 } from '../helpers/format1.js';

const DAY_MS = 86_400_000;

function config(dataDir: string, backupDir: string) {
  return loadConfig({
    text: `storage:\n  memtable_records_max: 30\nbackup:\n  target_dir: ${backupDir}\n  schedule: false\n  wal_archive: false\n`,
    env: {
      USAGE_TRACKER_DATA_DIR: dataDir,
      USAGE_TRACKER_TRANSPORT: 'embedded',
      USAGE_TRACKER_NATS_URL: 'nats://127.0.0.1:1',
      USAGE_TRACKER_SHARDS: '4',
      USAGE_TRACKER_NODE_ID: 'migfail',
      USAGE_TRACKER_LOG_LEVEL: 'silent',
    },
  });
}

async function start(dataDir: string, backupDir: string, registry?: readonly Migration[]) {
  const embedded = new EmbeddedTransport();
  const node: UsageNode = await startNode(config(dataDir, backupDir), { embedded, log: silentLogger, ...(registry ? { migrations: { registry } } : {}) });
  const names = subjects('usage');
  const call = async (endpoint: EndpointName, body: unknown): Promise<any> =>
    decode((await embedded.request(names.endpoint(endpoint), encode(body), { timeoutMs: 60_000 })).data, 'msgpack', { payloadBytesMax: 64 << 20, nestingDepthMax: 64 });
  return { node, call };
}

async function allRecords(call: (endpoint: EndpointName, body: unknown) => Promise<any>): Promise<Map<string, unknown>> {
  const found = new Map<string, unknown>();
  let cursor: string | undefined;
  do {
    const reply = await call('query.records', { limit: 1000, ...(cursor ? { cursor } : {}) });
    if (!reply.ok || reply.complete !== true) throw new Error(`query.records: ${JSON.stringify(reply.error ?? reply.missing_shards)}`);
    for (const r of reply.records) found.set(r.id, r);
    cursor = reply.next_cursor;
  } while (cursor !== undefined);
  return found;
}

t.test('a migration failing half way through its shards rolls back to byte-identical data', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'usage-tracker-migfail-'));
  const backupDir = mkdtempSync(join(tmpdir(), 'usage-tracker-migfailbk-'));
  t.teardown(() => {
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(backupDir, { recursive: true, force: true });
  });
  const writer = await start(dataDir, backupDir);
  const records = Array.from({ length: 400 }, (_, n) => ({
    id: `fail-${n}`,
    ts: Date.now() - (n % 4) * DAY_MS - n,
    user_id: `user-${n % 11}`,
    provider: 'anthropic',
    model: 'claude-sonnet-4',
    input_tokens: n,
    output_tokens: 2 * n,
  }));
  // A shard seals before a write once its memtable is full: many small batches leave sealed files in every shard.
  for (let start = 0; start < records.length; start += 20) t.equal((await writer.call('ingest', { records: records.slice(start, start + 20) })).ok, true);
  await writer.node.stop();
  toFormat1(dataDir);

  const attempted: number[] = [];
  const failing: Migration = {
    ...STORAGE_0002,
    shardStep: async (shard, rewrite) => {
      attempted.push(shard);
      const report = await rewrite(shard);
      if (shard === 2) throw new Error('injected failure after shard 2 was rewritten');
      return report;
    },
  };
  const { node, call } = await start(dataDir, backupDir, [failing]);
  t.teardown(() => node.stop());
  const before = await allRecords(call);
  t.equal(before.size, 400);
  const hashes = hashTree(dataDir);
  t.ok([...hashes.keys()].filter((path) => path.includes('/partitions/')).length >= 8, 'sealed files in every shard');

  const reply = await call('admin.migration.apply', {});
  t.equal(reply.ok, false, 'the apply fails');
  t.equal(reply.error.code, 'E_INTERNAL');
  t.match(reply.error.message, /storage-0002_explicit_versions failed: injected failure after shard 2.*rolled back/);
  t.same(attempted, [0, 1, 2], 'the failure came half way through the shards');
  t.same(hashTree(dataDir), hashes, 'every file of the data directory is byte-identical to before');
  for (const manifest of manifests(dataDir)) {
    t.notOk(readdirSync(join(dataDir, 'shards', manifest.dir)).includes('migration-undo'), `shard ${manifest.dir}: no undo left`);
  }
  t.notOk(readdirSync(join(dataDir, 'migration')).includes('journal.json'), 'no journal left');
  t.same(await allRecords(call), before, 'the node serves every record as before');
  const status = await call('admin.migration.status', {});
  t.equal(status.last_run.outcome, 'failed');
  t.equal(status.last_run.failed, 'storage-0002_explicit_versions');
  t.same(status.storage.pending, ['storage-0002_explicit_versions'], 'still pending');
  t.equal(status.running, null);
  // The shards seal again after the rollback (the hold is released).
  t.equal((await call('ingest', { records: records.map((r) => ({ ...r, id: `${r.id}-more` })) })).ok, true);
  t.equal((await allRecords(call)).size, 800);

  const audit = readdirSync(join(dataDir, 'audit')).flatMap((name) => readFileSync(join(dataDir, 'audit', name), 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line)));
  const auto = audit.find((line) => line.action === 'migration.auto_rollback');
  t.equal(auto?.outcome, 'ok', 'the automatic rollback is audited');
  t.ok(audit.some((line) => line.action === 'migration.apply' && line.outcome === 'failed' && line.details.rolled_back === true), 'the failed apply is audited');
});
