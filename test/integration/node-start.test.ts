// A start that fails leaves the data directory as it found it (issue 10):
// a first start that wrote node.json and then could not reach NATS used to
// leave it behind, so a later start with another shard count was refused.
// And a data_dir that is not a directory gets a sentence, not EEXIST.

import t, { type Test } from 'tap';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config/load.js';
import { silentLogger } from '../../src/log.js';
import { EmbeddedTransport } from '../../src/transport/embedded.js';
import { startNode } from '../../supervisors/node.js';

function config(dataDir: string, env: Record<string, string> = {}) {
  return loadConfig({
    text: 'backup:\n  schedule: false\n  wal_archive: false\n',
    env: { USAGE_TRACKER_DATA_DIR: dataDir, USAGE_TRACKER_NODE_ID: 'starts', USAGE_TRACKER_TRANSPORT: 'embedded', USAGE_TRACKER_NATS_URL: 'nats://127.0.0.1:1', USAGE_TRACKER_SHARDS: '4', ...env },
  });
}
/** NATS required, and nothing listens on port 1. */
const unreachable = { USAGE_TRACKER_TRANSPORT: 'nats' };

function scratch(t: Test): string {
  const root = mkdtempSync(join(tmpdir(), 'usage-tracker-start-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  return root;
}

t.test('a first start that fails removes the directory it created, and a later start may choose another shard count', async (t) => {
  const dataDir = join(scratch(t), 'data');
  await t.rejects(startNode(config(dataDir, unreachable), { log: silentLogger }), /NATS|connect/i, 'NATS is required and unreachable');
  t.notOk(existsSync(dataDir), 'the directory it created is gone');
  const node = await startNode(config(dataDir, { USAGE_TRACKER_SHARDS: '8' }), { log: silentLogger, embedded: new EmbeddedTransport() });
  t.equal(JSON.parse(readFileSync(join(dataDir, 'node.json'), 'utf8')).shards, 8, 'the next start makes the directory its own');
  await node.stop();
});

t.test('a first start that fails in a directory the operator made leaves only what was in it', async (t) => {
  const dataDir = join(scratch(t), 'made');
  mkdirSync(dataDir);
  writeFileSync(join(dataDir, 'README'), 'kept\n');
  await t.rejects(startNode(config(dataDir, unreachable), { log: silentLogger }));
  t.same(readdirSync(dataDir), ['README'], 'only what was there before');
});

t.test('a failed start of an existing directory changes nothing in it', async (t) => {
  const dataDir = join(scratch(t), 'data');
  const first = await startNode(config(dataDir), { log: silentLogger, embedded: new EmbeddedTransport() });
  await first.stop();
  const nodeJson = readFileSync(join(dataDir, 'node.json'));
  const before = readdirSync(dataDir).sort();
  await t.rejects(startNode(config(dataDir, unreachable), { log: silentLogger }));
  t.same(readFileSync(join(dataDir, 'node.json')), nodeJson, 'node.json byte for byte');
  t.same(readdirSync(dataDir).sort(), before, 'every entry still there');
  const again = await startNode(config(dataDir), { log: silentLogger, embedded: new EmbeddedTransport() });
  await again.stop();
});

t.test('a data_dir that is a file, or under one, gets a sentence', async (t) => {
  const root = scratch(t);
  const file = join(root, 'data');
  writeFileSync(file, 'not a directory\n');
  await t.rejects(startNode(config(file), { log: silentLogger }), { name: 'DataDirError', message: `data_dir ${file} is not a directory (a file of that name, or in its path, is in the way); set node.data_dir to a directory` });
  await t.rejects(startNode(config(join(file, 'inner')), { log: silentLogger }), { name: 'DataDirError', message: /is not a directory/ });
  t.equal(readFileSync(file, 'utf8'), 'not a directory\n', 'the file is untouched');
});
