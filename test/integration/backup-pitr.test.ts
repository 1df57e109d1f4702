// Point-in-time and partial restore, against a model the test keeps: the
// node archives its WAL continuously (every second here); a restore to T
// is a base backup plus the archived versions written by T, and must hold
// exactly the versions acknowledged by T: no later write, no lost one.
// Seals happen throughout (a small memtable), so retired WAL segments go
// through wal-pending/ into the archive.

import t, { type Test } from 'tap';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, sep } from 'node:path';
import { decode, encode } from '../../protocols/codec.js';
import { subjects, type EndpointName } from '../../protocols/subjects.js';
import { loadConfig } from '../../src/config/load.js';
import { silentLogger } from '../../src/log.js';
import { nodeFileSystem, type FileSystem } from '../../src/ports/fs.js';
import { EmbeddedTransport } from '../../src/transport/embedded.js';
import { startNode } from '../../supervisors/node.js';
import { localRecords } from '../helpers/mirror.js';
import { startTestNode, type TestNode } from '../helpers/node.js';
import { clockMoment, waitFor } from '../helpers/wait.js';

const YAML = 'cluster:\n  shards: 3\nstorage:\n  memtable_records_max: 60\nbackup:\n  schedule: false\n  wal_archive_interval_s: 1\n';

interface Version {
  version: number;
  output_tokens: number;
  user_id: string;
  ts: number;
}

type Model = Map<string, Version>;


function scratch(t: { teardown(fn: () => void): void }): string {
  const root = mkdtempSync(join(tmpdir(), 'usage-tracker-pitr-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  return root;
}

/** Ingests `count` new records and adds each acknowledged one to the model. */
async function ingest(node: TestNode, model: Model, prefix: string, from: number, count: number): Promise<void> {
  const batch = Array.from({ length: count }, (_, i) => ({
    id: `${prefix}-${from + i}`,
    ts: Date.now() - 3_600_000 * ((from + i) % 50),
    user_id: `user-${(from + i) % 7}`,
    provider: 'openai',
    model: 'gpt-4o',
    input_tokens: 100,
    output_tokens: from + i,
  }));
  const reply = await node.call('ingest', { records: batch });
  for (const [index, result] of reply.results.entries()) {
    if (result.status !== 'stored') throw new Error(`record ${index} not stored: ${JSON.stringify(result)}`);
    const record = batch[index]!;
    model.set(record.id, { version: 1, output_tokens: record.output_tokens, user_id: record.user_id, ts: record.ts });
  }
}

/** Updates each record and records the acknowledged version in the model. */
async function update(node: TestNode, model: Model, ids: string[], bump: number): Promise<void> {
  for (const id of ids) {
    const current = model.get(id)!;
    const output = current.output_tokens + bump;
    const reply = await node.call('record.update', { id, user_id: current.user_id, expected_version: current.version, patch: { output_tokens: output } });
    if (!reply.ok) throw new Error(`update of ${id} failed: ${JSON.stringify(reply)}`);
    model.set(id, { ...current, version: reply.version, output_tokens: output });
  }
}

/** Starts a node on a restored directory and compares what it serves with the model. */
async function expectServes(t: Test, dir: string, nodeId: string, model: Model, label: string): Promise<void> {
  const node = await startTestNode(YAML, {}, { dataDir: dir, nodeId, keepData: true });
  try {
    const served = await localRecords(node);
    t.equal(served.size, model.size, `${label}: ${model.size} records, no more, no fewer`);
    let wrong = 0;
    for (const [id, expected] of model) {
      const record = served.get(id);
      if (record?.version === expected.version && record.output_tokens === expected.output_tokens) continue;
      if (wrong++ < 3) t.fail(`${label}: ${id} is ${JSON.stringify(record && { version: record.version, output_tokens: record.output_tokens })}, expected ${JSON.stringify(expected)}`);
    }
    t.equal(wrong, 0, `${label}: every record at the version acknowledged by then`);
  } finally {
    await node.stop();
  }
}


t.test('a restore to T holds exactly the versions acknowledged by T', async (t) => {
  const root = scratch(t);
  const node = await startTestNode(YAML);
  t.teardown(() => node.stop());
  const nodeId = node.config.node.id;
  const prefix = `p${process.pid}`;
  const model: Model = new Map();

  await ingest(node, model, prefix, 0, 200);
  const base = await node.call('admin.backup.create', { kind: 'full' });
  t.equal(base.ok, true, 'base backup taken');

  await ingest(node, model, prefix, 200, 150);
  await update(node, model, Array.from({ length: 40 }, (_, i) => `${prefix}-${i * 5}`), 1000);
  const t1 = await clockMoment();
  const atT1: Model = new Map([...model].map(([id, version]) => [id, { ...version }]));

  await ingest(node, model, prefix, 350, 100);
  await update(node, model, Array.from({ length: 30 }, (_, i) => `${prefix}-${i * 10}`), 50_000);
  const t2 = await clockMoment();
  const atT2: Model = new Map([...model].map(([id, version]) => [id, { ...version }]));
  await ingest(node, model, prefix, 450, 80);

  const first = await node.call('admin.backup.restore', { to_time: new Date(t1).toISOString(), target_dir: join(root, 't1') });
  t.equal(first.ok, true, JSON.stringify(first.error ?? ''));
  t.equal(first.backup_id, base.backup_id, 'replayed from the newest backup completed by T');
  t.equal(first.records, atT1.size);
  t.ok(first.replayed > 0, `${first.replayed} archived WAL entries replayed`);
  t.ok(Date.parse(first.recovery_point) >= t1, 'the archive reaches past T (a point-in-time restore archives first)');
  t.same(first.notes, []);
  await expectServes(t, join(root, 't1'), nodeId, atT1, 'restored to T1');

  const second = await node.call('admin.backup.restore', { to_time: t2, target_dir: join(root, 't2') });
  t.equal(second.records, atT2.size);
  await expectServes(t, join(root, 't2'), nodeId, atT2, 'restored to T2');

  // An incremental between T1 and now becomes the base for a later T, and gives the same answer.
  const incremental = await node.call('admin.backup.create', { kind: 'incremental' });
  t.equal(incremental.ok, true);
  const now = await clockMoment();
  const latest = await node.call('admin.backup.restore', { to_time: now, target_dir: join(root, 'now') });
  t.equal(latest.backup_id, incremental.backup_id);
  await expectServes(t, join(root, 'now'), nodeId, model, 'restored to now');

  const verified = await node.call('admin.backup.verify', { backup_id: base.backup_id });
  t.equal(verified.valid, true);
  t.same(verified.wal_archive.problems, [], 'the archive after the base backup replays with no gap');
  t.equal(verified.wal_archive.shards.length, 3);
  t.ok(verified.wal_archive.shards.every((shard: any) => shard.through_seq > shard.from_seq), 'every shard has archived entries after the base');

  const early = await node.call('admin.backup.restore', { to_time: Date.parse(base.created_at) - 60_000, target_dir: join(root, 'early') });
  t.equal(early.error?.code, 'E_NOT_FOUND');
  t.match(early.error?.message, /no backup of incarnation [0-9a-f]{16} completed at or before/);
  const tooNew = await node.call('admin.backup.restore', { backup_id: incremental.backup_id, to_time: t1, target_dir: join(root, 'mismatch') });
  t.match(tooNew.error?.message, /after to_time/);
  t.notOk(existsSync(join(root, 'early')) || existsSync(join(root, 'mismatch')), 'a refused restore leaves nothing');
  t.notOk(readdirSync(root).some((name) => /\.(restoring|selecting)-/.test(name)), 'no staging directory is left behind');

  const auditDir = join(node.config.node.data_dir, 'audit');
  const audit = readdirSync(auditDir).flatMap((name) => readFileSync(join(auditDir, name), 'utf8').trim().split('\n').map((line) => JSON.parse(line)));
  const backupJobs = audit.filter((entry) => entry.actor === 'backup').map((entry) => `${entry.action}:${entry.outcome}`);
  t.same(
    backupJobs,
    ['backup.create:ok', 'backup.restore:ok', 'backup.restore:ok', 'backup.create:ok', 'backup.restore:ok', 'backup.verify:ok', 'backup.restore:failed', 'backup.restore:failed'],
    'every backup job left an audit record, failures included',
  );
  t.equal(audit.find((entry) => entry.action === 'backup.restore')?.details.backup_id, base.backup_id);
});

t.test('the archive keeps up on its own: the recovery point trails the newest write by about one interval', async (t) => {
  const node = await startTestNode(YAML);
  t.teardown(() => node.stop());
  const model: Model = new Map();
  await ingest(node, model, `r${process.pid}`, 0, 400);
  const written = Date.now();
  let listed: any;
  await waitFor(
    'the WAL archive\'s recovery point to pass the last write',
    async () => {
      listed = await node.call('admin.backup.list', {});
      return Date.parse(listed.wal_archive.recovery_point ?? 0) > written;
    },
    { pollMs: 100, describe: () => listed?.wal_archive },
  );
  t.ok(Date.parse(listed.wal_archive.recovery_point) > written, `recovery point ${listed.wal_archive.recovery_point} is past the last write`);
  t.match(listed.wal_archive, { enabled: true, interval_s: 1, last_round: { ok: true } });
  // 400 records through a 60-record memtable: several seals, each retiring a segment the archive has since taken.
  const dataDir = node.config.node.data_dir;
  const pending = readdirSync(join(dataDir, 'shards')).flatMap((shard) => {
    const dir = join(dataDir, 'shards', shard, 'wal-pending');
    return existsSync(dir) ? readdirSync(dir).filter((name) => name.endsWith('.log')) : [];
  });
  t.same(pending, [], 'retired segments are removed once archived');
  const chunks = readdirSync(join(`${dataDir}-backups`, 'wal', node.config.node.id, listed.incarnation)).filter((name) => /^\d+$/.test(name));
  t.equal(chunks.length, 3, 'every shard has archived chunks');
});

t.test('a partial restore keeps one user, or one time range, at their versions', async (t) => {
  const root = scratch(t);
  const node = await startTestNode(YAML);
  t.teardown(() => node.stop());
  const nodeId = node.config.node.id;
  const prefix = `q${process.pid}`;
  const model: Model = new Map();
  await ingest(node, model, prefix, 0, 300);
  await update(node, model, [`${prefix}-3`, `${prefix}-10`, `${prefix}-17`], 7);
  const backup = await node.call('admin.backup.create', { kind: 'full' });

  const oneUser = new Map([...model].filter(([, version]) => version.user_id === 'user-3'));
  const byUser = await node.call('admin.backup.restore', { backup_id: backup.backup_id, user_id: 'user-3', target_dir: join(root, 'user') });
  t.equal(byUser.ok, true, JSON.stringify(byUser.error ?? ''));
  t.same(byUser.partial, { user_id: 'user-3' });
  t.equal(byUser.records, oneUser.size);
  await expectServes(t, join(root, 'user'), nodeId, oneUser, 'user-3 only');

  const from = Date.now() - 20 * 3_600_000;
  const to = Date.now() - 5 * 3_600_000;
  const window = new Map([...model].filter(([, version]) => version.ts >= from && version.ts < to));
  t.ok(window.size > 0 && window.size < model.size, 'the range selects some records');
  const byRange = await node.call('admin.backup.restore', { to_time: Date.now(), from, to, target_dir: join(root, 'range') });
  t.equal(byRange.records, window.size);
  await expectServes(t, join(root, 'range'), nodeId, window, 'records of the range only');

  const none = await node.call('admin.backup.restore', { backup_id: backup.backup_id, user_id: 'nobody', target_dir: join(root, 'none') });
  t.equal(none.records, 0, 'a user with no records restores to an empty directory, not an error');
});

t.test('a listing never pairs a round\'s new recovery point with the round before it', async (t) => {
  // The race CI saw: archive.json (with the new recovery point) is in place before the round ends and its
  // status is set. A filesystem that holds the round right after archive.json is renamed into place shows it.
  const dataDir = mkdtempSync(join(tmpdir(), 'usage-tracker-race-'));
  t.teardown(() => {
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(`${dataDir}-backups`, { recursive: true, force: true });
  });
  let signal!: () => void;
  let release!: () => void;
  const reached = new Promise<void>((resolve) => (signal = resolve));
  const released = new Promise<void>((resolve) => (release = resolve));
  let holding = true;
  const fs: FileSystem = {
    ...nodeFileSystem,
    rename: async (from, to) => {
      await nodeFileSystem.rename(from, to);
      if (holding && to.endsWith(`${sep}archive.json`)) {
        holding = false;
        signal();
        await released;
      }
    },
  };
  // Rounds only when asked (a long interval), so that the test knows which one it holds.
  const config = loadConfig({
    text: 'cluster:\n  shards: 2\nbackup:\n  schedule: false\n  wal_archive_interval_s: 60\n',
    env: { USAGE_TRACKER_DATA_DIR: dataDir, USAGE_TRACKER_BACKUP_DIR: `${dataDir}-backups`, USAGE_TRACKER_TRANSPORT: 'embedded', USAGE_TRACKER_NATS_URL: 'nats://127.0.0.1:1', USAGE_TRACKER_NODE_ID: 'race' },
  });
  const embedded = new EmbeddedTransport();
  const node = await startNode(config, { embedded, fs, log: silentLogger });
  t.teardown(() => node.stop());
  const call = async (endpoint: EndpointName, body: unknown): Promise<any> =>
    decode((await embedded.request(subjects('usage').endpoint(endpoint), encode(body), { timeoutMs: 60_000 })).data, 'msgpack', { payloadBytesMax: 64 << 20, nestingDepthMax: 64 });
  const stored = await call('ingest', { records: [{ id: 'r1', ts: Date.now(), user_id: 'u', provider: 'openai', model: 'gpt-4o', input_tokens: 1, output_tokens: 1 }] });
  t.equal(stored.results[0].status, 'stored');

  const round = node.system.ref('race/maintenance/backup').ask({ type: 'archive' }, { timeoutMs: 60_000 });
  await reached;
  const during = await call('admin.backup.list', {});
  t.same([during.wal_archive.recovery_point, during.wal_archive.last_round], [null, null], 'while the first round runs: no recovery point and no round, though archive.json is already written');
  release();
  t.match(await round, { archived: true });
  const after = await call('admin.backup.list', {});
  t.match(after.wal_archive, { last_round: { ok: true } }, 'once the round ends, its status');
  t.ok(Date.parse(after.wal_archive.recovery_point) > 0, 'and its recovery point, together');
});
