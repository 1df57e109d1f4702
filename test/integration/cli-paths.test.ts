// A path typed on the CLI means what it means in the user's shell: the CLI
// resolves it against its own working directory before sending it, since
// the node resolves a relative path against its own. The node runs in this
// process (its working directory is this one); the CLI runs from another.

import { existsSync, mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { cli } from '../helpers/cli.js';
import { startTestNode } from '../helpers/node.js';

// A node, a backup and a restore through a child process compiling the CLI through tsx.
t.setTimeout(600_000);

t.test("backup restore --target: a relative path is under the CLI's working directory, not the node's", async (t) => {
  const node = await startTestNode('cluster:\n  shards: 2\n');
  t.teardown(() => node.stop());
  const elsewhere = mkdtempSync(join(tmpdir(), 'usage-tracker-cli-cwd-'));
  const relative = `restored-${process.pid}`;
  t.teardown(() => {
    rmSync(elsewhere, { recursive: true, force: true });
    rmSync(join(process.cwd(), relative), { recursive: true, force: true });
  });
  const created = await node.call('admin.backup.create', { kind: 'full' });
  t.equal(created.ok, true, JSON.stringify(created));

  const restored = await cli(['backup', 'restore', created.backup_id, '--target', relative], node.subjects.prefix, { cwd: elsewhere });
  t.equal(restored.code, 0, restored.stderr);
  const expected = join(realpathSync(elsewhere), relative);
  t.ok(existsSync(join(expected, 'node.json')), 'the restored directory is under the working directory of the CLI');
  t.notOk(existsSync(join(process.cwd(), relative)), "and not under the node's");
  t.match(restored.stdout, `restored into ${expected}: 0 records`);
});
