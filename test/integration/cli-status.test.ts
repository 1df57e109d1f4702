// `usage-tracker status` on a directory with a history: a node's data
// directory is backed up and restored, one shard of the restored directory
// gets a damaged manifest, and a node on the nats transport started on it
// must say which history it serves (incarnation, and the backup and
// incarnation it was restored from), its transport and link, and that the
// damaged shard is corrupt with no record count it cannot know.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { cli, cliEnvironment, startCliNode } from '../helpers/cli.js';
import { uniqueName } from '../helpers/node.js';
import { within } from '../helpers/wait.js';

// Two node starts and a handful of CLI runs, each a child process compiling through tsx.
t.setTimeout(600_000);

const ROOT = mkdtempSync(join(tmpdir(), 'usage-tracker-cli-status-'));
t.teardown(() => rmSync(ROOT, { recursive: true, force: true }));

t.test('status shows lineage, the transport and a corrupt shard without record counts', async (t) => {
  const prefix = uniqueName('status');
  const nodeId = uniqueName('st');
  const env = (dataDir: string, extra: Record<string, string> = {}) =>
    cliEnvironment({ USAGE_TRACKER_SUBJECT_PREFIX: prefix, USAGE_TRACKER_NODE_ID: nodeId, USAGE_TRACKER_DATA_DIR: dataDir, USAGE_TRACKER_BACKUP_DIR: join(ROOT, 'backups'), USAGE_TRACKER_SHARDS: '2', ...extra });

  const first = await startCliNode(t, env(join(ROOT, 'first')));
  const created = await cli(['backup', 'create'], prefix);
  t.equal(created.code, 0, created.stderr);
  const backupId = /backup (\S+) \(full\)/.exec(created.stdout)?.[1];
  const restoredDir = join(ROOT, 'restored');
  const restored = await cli(['backup', 'restore', backupId!, '--target', restoredDir], prefix);
  t.equal(restored.code, 0, restored.stderr);
  const parent = /base backup: \S+ \(incarnation ([0-9a-f]{16})\)/.exec(restored.stdout)?.[1];
  const incarnation = /restored as: incarnation ([0-9a-f]{16})/.exec(restored.stdout)?.[1];
  t.ok(parent && incarnation, restored.stdout);
  first.child.kill('SIGTERM');
  t.equal((await within('the first node to stop', first.exit)).code, 0);

  // Shard 1's manifest is damaged while no node runs: it cannot know what it holds.
  writeFileSync(join(restoredDir, 'shards', '1', 'metadata.json'), '{"format_version": 1, "files": [');
  await startCliNode(t, env(restoredDir, { USAGE_TRACKER_TRANSPORT: 'nats' }));
  const status = await cli(['status'], prefix);
  t.equal(status.code, 0, status.stderr);
  const out = status.stdout.split('\n');
  t.equal(out[1], `transport nats (connected), subjects ${prefix}.v1.*`);
  t.match(out[2], new RegExp(`^this data directory: incarnation ${incarnation}, restored \\S+ from backup ${backupId} of incarnation ${parent}$`));
  const shard = (n: number) => out.find((line) => line.includes(`partition-${n} [`)) ?? '';
  t.match(shard(0), /partition-0 \[running, mailbox=0, health=serving, records=0\]$/);
  t.match(shard(1), /partition-1 \[running, mailbox=0, health=corrupt, records unknown, reason="[^"]*metadata\.json[^"]*"\]$/);
  t.notMatch(shard(1), /records=/, 'no stale or zero count for the corrupt shard');

  const json = await cli(['status', '--json'], prefix);
  const body = JSON.parse(json.stdout) as { incarnation: string; lineage: { parent_incarnation: string; backup_id: string; to_time: string | null }; tree: { children: { path: string; children?: { path: string; detail?: Record<string, unknown> }[] }[] } };
  t.equal(body.incarnation, incarnation);
  t.match(body.lineage, { parent_incarnation: parent, backup_id: backupId, to_time: null });
  const shards = body.tree.children.find((child) => child.path.endsWith('/shards'))!.children!;
  t.same(Object.keys(shards[1]!.detail!).sort(), ['health', 'reason'], 'the reply carries no counts for the corrupt shard either');
  t.equal(shards[0]!.detail!.records, 0);
});
