// A user's mistake is the user's to fix: the node answers it with a code and
// a sentence, and its log says what was refused and why, without a stack
// trace (a stack points into the node, where nothing is wrong). The node is
// started as a user does, its JSON log read from its stdout.

import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { cli, cliEnvironment, startCliNode } from '../helpers/cli.js';
import { uniqueName } from '../helpers/node.js';
import { within } from '../helpers/wait.js';

// A node start and a few CLI runs, each a child process compiling through tsx.
t.setTimeout(600_000);

const ROOT = mkdtempSync(join(tmpdir(), 'usage-tracker-user-error-'));
t.teardown(() => rmSync(ROOT, { recursive: true, force: true }));

t.test('a refused restore is logged with its reason and no stack trace', async (t) => {
  const prefix = uniqueName('usererr');
  const node = await startCliNode(
    t,
    cliEnvironment({ USAGE_TRACKER_SUBJECT_PREFIX: prefix, USAGE_TRACKER_NODE_ID: uniqueName('ue'), USAGE_TRACKER_DATA_DIR: join(ROOT, 'data'), USAGE_TRACKER_BACKUP_DIR: join(ROOT, 'backups'), USAGE_TRACKER_SHARDS: '2' }),
  );
  const created = await cli(['backup', 'create'], prefix);
  t.equal(created.code, 0, created.stderr);
  const existing = join(ROOT, 'existing');
  mkdirSync(existing);
  const exists = await cli(['backup', 'restore', '--to-time', new Date().toISOString(), '--target', existing], prefix);
  t.equal(exists.code, 1);
  t.equal(exists.stderr, `usage-tracker: E_VALIDATION: ${existing} exists; restore into a new directory, then point data_dir at it\n`);
  const tooEarly = await cli(['backup', 'restore', '--to-time', '2001-01-01T00:00:00Z', '--target', join(ROOT, 'early')], prefix);
  t.equal(tooEarly.code, 1);
  t.match(tooEarly.stderr, /^usage-tracker: E_NOT_FOUND: no backup of incarnation [0-9a-f]{16} completed at or before 2001-01-01T00:00:00\.000Z/);

  node.child.kill('SIGTERM');
  t.equal((await within('the node to stop', node.exit)).code, 0);
  const lines = node.output.stdout.split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>);
  const refused = lines.filter((line) => line.msg === 'backup job refused');
  t.same(
    refused.map((line) => line.reason),
    [`${existing} exists; restore into a new directory, then point data_dir at it`, (tooEarly.stderr.split(': ').slice(2).join(': ')).trim()],
    'each refusal is logged with its reason',
  );
  t.same(lines.filter((line) => JSON.stringify(line).includes('"stack"')), [], 'no line of the log carries a stack trace');
});
