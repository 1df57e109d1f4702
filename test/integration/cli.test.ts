// The usage-tracker command line as a user runs it: a child process per
// command, a real nats-server with JetStream on 127.0.0.1:4222, and the exit
// codes and lines it prints. Every run has its own subject prefix, node ids
// and data directory so concurrent runs do not answer each other.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { startCliNode as startNode } from '../helpers/cli.js';
import { within } from '../helpers/wait.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
// A deadline for one command, generous for a loaded machine: never a duration asserted.
const WAIT_MS = 60_000;
// Some twenty child processes, each compiling the CLI through tsx: the 120 s default does not fit a loaded machine.
t.setTimeout(600_000);
const PREFIX = `clitest${process.pid}`;
const NODE_ID = `cli-${process.pid}`;
const DATA_DIR = mkdtempSync(join(tmpdir(), 'usage-tracker-cli-'));
t.teardown(() => {
  rmSync(DATA_DIR, { recursive: true, force: true });
  rmSync(`${DATA_DIR}-backups`, { recursive: true, force: true });
  rmSync(`${DATA_DIR}-term`, { recursive: true, force: true });
});

/** The caller's environment without any USAGE_TRACKER_* of its own, plus this run's names. */
function cliEnv(overrides: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('USAGE_TRACKER_')) env[name] = value;
  return { ...env, USAGE_TRACKER_SUBJECT_PREFIX: PREFIX, USAGE_TRACKER_NODE_ID: NODE_ID, USAGE_TRACKER_DATA_DIR: DATA_DIR, USAGE_TRACKER_BACKUP_DIR: `${DATA_DIR}-backups`, USAGE_TRACKER_SHARDS: '2', ...overrides };
}

function spawnCli(args: string[], env: NodeJS.ProcessEnv): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', 'bin/usage-tracker.ts', ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
}

interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Collects a child's output until it exits; kills it and rejects after WAIT_MS. */
function finished(child: ChildProcess, output = { stdout: '', stderr: '' }): Promise<Finished> {
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (output.stdout += chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (output.stderr += chunk));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the CLI did not exit within ${WAIT_MS} ms; stderr so far: ${output.stderr}`));
    }, WAIT_MS);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      // 'exit' may come before the pipes are drained; 'close' follows once they are.
      child.on('close', () => resolve({ code, signal, ...output }));
    });
  });
}

/** Runs one command to completion. */
function run(args: string[], env: NodeJS.ProcessEnv = cliEnv()): Promise<Finished> {
  return finished(spawnCli(args, env));
}


const lines = (text: string) => text.split('\n').filter((line) => line.length > 0);
const STACK_FRAME = /^\s+at\s/m;

t.test('--help prints usage and exits 0', async (t) => {
  const help = new Map<string, Finished>();
  for (const args of [['--help'], ['start', '--help'], ['status', '--help'], ['help', 'status']]) {
    const result = await run(args);
    t.equal(result.code, 0, `${args.join(' ')} exits 0`);
    t.equal(result.stderr, '', `${args.join(' ')} writes nothing to stderr`);
    t.match(result.stdout, /^Usage: usage-tracker/, `${args.join(' ')} prints usage`);
    help.set(args.join(' '), result);
  }
  const program = help.get('--help')!.stdout;
  t.match(program, /^\s+start \[options\]/m);
  t.match(program, /^\s+status \[options\]/m);
  const start = help.get('start --help')!.stdout;
  t.match(start, /^Usage: usage-tracker start \[options\]$/m);
  t.match(start, /-c, --config <file>/);
  const status = help.get('status --help')!.stdout;
  t.match(status, /^Usage: usage-tracker status \[options\]$/m);
  for (const option of ['--nats-url <urls>', '--prefix <prefix>', '--node <id>', '--timeout <ms>', '--json']) t.match(status, option);
  t.equal(help.get('help status')!.stdout, status, '`help status` is `status --help`');
});

/** The Commands section of a help text: each command's name and its description, wrapped lines joined. */
function commandsOf(help: string): Map<string, string> {
  const commands = new Map<string, string>();
  let last: string | undefined;
  for (const line of help.slice(help.indexOf('Commands:\n') + 'Commands:\n'.length).split('\n')) {
    const entry = /^  (\S+)(?: \S+)*?\s{2,}(\S.*)$/.exec(line);
    if (entry) commands.set((last = entry[1]!), entry[2]!);
    else if (last !== undefined && /^\s{4,}\S/.test(line)) commands.set(last, `${commands.get(last)} ${line.trim()}`);
  }
  return commands;
}

t.test("the top-level help names every subcommand of each command group", async (t) => {
  const top = commandsOf((await run(['--help'])).stdout);
  t.match(top.get('sync'), /^the PostgreSQL and Chroma mirrors: /);
  for (const group of ['sync', 'backup', 'retention', 'migration']) {
    const subcommands = [...commandsOf((await run([group, '--help'])).stdout).keys()].filter((name) => name !== 'help');
    t.ok(subcommands.length > 1, `${group} has subcommands: ${subcommands.join(', ')}`);
    for (const name of subcommands) t.match(top.get(group), new RegExp(`\\b${name}\\b`), `${group}'s description names ${name}: ${top.get(group)}`);
  }
});

t.test('an unknown command or option exits 1 with a one-line reason', async (t) => {
  const cases: [string[], string][] = [
    [['bogus'], "error: unknown command 'bogus'"],
    [['start', '--bogus'], "error: unknown option '--bogus'"],
    [['status', '--colour'], "error: unknown option '--colour'"],
  ];
  for (const [args, reason] of cases) {
    const result = await run(args);
    t.equal(result.code, 1, `${args.join(' ')} exits 1`);
    t.same(lines(result.stderr), [reason, '(run with --help for usage)'], `${args.join(' ')}: the reason, then where to look`);
    t.equal(result.stdout, '');
  }
});

t.test('start with a bad config file exits 1 with the config error and no stack trace', async (t) => {
  const file = join(DATA_DIR, 'bad.yml');
  writeFileSync(file, 'cluster:\n  shards: 0\ntransport:\n  kind: tcp\n');
  const result = await run(['start', '--config', file], cliEnv({ USAGE_TRACKER_SHARDS: '' }));
  t.equal(result.code, 1);
  t.equal(
    result.stderr,
    `usage-tracker: invalid configuration in ${file}:\n` +
      '  - cluster.shards: must be a whole number from 1 to 4096 (got 0)\n' +
      '  - transport.kind: must be embedded or nats (got "tcp")\n',
  );
  t.notMatch(result.stderr, STACK_FRAME);
  t.equal(result.stdout, '', 'no node started, nothing logged');

  const viaEnv = await run(['start'], cliEnv({ USAGE_TRACKER_CONFIG: file, USAGE_TRACKER_SHARDS: '' }));
  t.equal(viaEnv.code, 1, 'USAGE_TRACKER_CONFIG names the file too');
  t.equal(viaEnv.stderr, result.stderr);

  const fromCwd = await run(['start'], cliEnv({ USAGE_TRACKER_SHARDS: 'lots' }));
  t.equal(fromCwd.code, 1, 'without --config, ./cluster.yml is loaded and the variable named');
  t.equal(fromCwd.stderr, 'usage-tracker: invalid configuration in cluster.yml:\n  - cluster.shards (from USAGE_TRACKER_SHARDS): must be a whole number from 1 to 4096 (got the string "lots")\n');

  const missing = join(DATA_DIR, 'missing.yml');
  const absent = await run(['start', '--config', missing]);
  t.equal(absent.code, 1);
  t.equal(absent.stderr, `usage-tracker: invalid configuration in ${missing}:\n  - file not found\n`);
});

t.test('an empty USAGE_TRACKER_CONFIG counts as unset, like the other variables', async (t) => {
  const result = await run(['start'], cliEnv({ USAGE_TRACKER_CONFIG: '', USAGE_TRACKER_SHARDS: 'lots' }));
  t.equal(result.code, 1);
  t.equal(result.stderr, 'usage-tracker: invalid configuration in cluster.yml:\n  - cluster.shards (from USAGE_TRACKER_SHARDS): must be a whole number from 1 to 4096 (got the string "lots")\n');
});

t.test('a started node answers status over NATS', async (t) => {
  const node = await startNode(t, cliEnv());
  t.match(node.output.stderr, `node ${NODE_ID} running (transport embedded, also on nats (connected), subjects ${PREFIX}.v1.*)`);

  await t.test('status prints the tree', async (t) => {
    const result = await run(['status']);
    t.equal(result.code, 0, result.stderr);
    const out = lines(result.stdout);
    t.match(out[0], new RegExp(`^node ${NODE_ID} \\(cluster default\\), usage-tracker \\S+, protocol v1, up \\d+ s$`));
    t.equal(out[1], `transport embedded, also on nats (connected), subjects ${PREFIX}.v1.*`, 'the transport, and the link to NATS as the node knows it');
    t.match(out[2], /^this data directory: incarnation [0-9a-f]{16}$/, 'a directory created empty: its incarnation, no lineage');
    t.match(out[3], new RegExp(`^${NODE_ID} \\[running\\b`), 'the root supervisor');
    t.match(out[4], /^├── shards \[running\b/);
    t.match(out[5], /^│   ├── partition-0 \[running, mailbox=0, health=serving, records=0\]$/, 'health shown when it is good too');
    t.match(out[6], /^│   └── partition-1 \[running, mailbox=0, health=serving, records=0\]$/);
    t.match(out[7], /^├── ingest \[running\b/);
    t.match(out[8], /^│   ├── ingest-0 \[running, mailbox=0\]$/);
    t.match(out[9], /^│   └── ingest-1 \[running, mailbox=0\]$/);
    t.match(out[10], /^├── sync \[running\b/);
    t.match(out[11], /^├── maintenance \[running\b/);
    t.match(out[12], /^│   ├── backup \[running, mailbox=0\]$/);
    t.match(out[13], /^│   ├── migration \[running, mailbox=0\]$/);
    t.match(out[14], /^│   └── retention \[running, mailbox=0\]$/);
    t.match(out[15], /^└── api \[running\b/);
    t.equal(out.length, 16);
  });

  await t.test('status --json parses, ok true, children in start order', async (t) => {
    const result = await run(['status', '--json']);
    t.equal(result.code, 0, result.stderr);
    const body = JSON.parse(result.stdout) as { ok: boolean; node_id: string; tree: { state: string; children: { path: string; state: string }[] } };
    t.equal(body.ok, true);
    t.equal(body.node_id, NODE_ID);
    t.equal(body.tree.state, 'running');
    t.same(
      body.tree.children.map((child) => child.path.slice(child.path.lastIndexOf('/') + 1)),
      ['shards', 'ingest', 'sync', 'maintenance', 'api'],
    );
    t.ok(body.tree.children.every((child) => child.state === 'running'), 'every child is running');
  });

  await t.test('status --node <id> asks that node', async (t) => {
    const result = await run(['status', '--node', NODE_ID, '--json']);
    t.equal(result.code, 0, result.stderr);
    t.equal((JSON.parse(result.stdout) as { node_id: string }).node_id, NODE_ID);
  });

  await t.test('status --node nosuchnode fails with one line', async (t) => {
    const result = await run(['status', '--node', 'nosuchnode', '--timeout', '500']);
    t.equal(result.code, 1);
    t.equal(
      result.stderr,
      `usage-tracker: no node answers on ${PREFIX}.v1.node.nosuchnode.admin.status at nats://127.0.0.1:4222 ` +
        '(is a node running with NATS and this subject prefix?)\n',
    );
    t.equal(result.stdout, '');
  });

  await t.test('status with another prefix does not reach this node', async (t) => {
    const result = await run(['status', '--prefix', `${PREFIX}other`, '--timeout', '500']);
    t.equal(result.code, 1);
    t.equal(lines(result.stderr).length, 1);
    t.match(result.stderr, `no node answers on ${PREFIX}other.v1.admin.status`);
  });
});

t.test('status where no NATS listens exits 1 with one line', async (t) => {
  const result = await run(['status', '--nats-url', 'nats://127.0.0.1:1']);
  t.equal(result.code, 1);
  t.equal(lines(result.stderr).length, 1, result.stderr);
  t.match(result.stderr, /^usage-tracker: cannot connect to NATS at nats:\/\/127\.0\.0\.1:1: \S/);
  t.notMatch(result.stderr, STACK_FRAME);
  t.equal(result.stdout, '');
});

t.test('status --timeout must be a whole number of milliseconds', async (t) => {
  const result = await run(['status', '--timeout', 'soon']);
  t.equal(result.code, 1);
  t.equal(result.stderr, 'usage-tracker: --timeout must be a whole number of milliseconds, got soon\n');
});

t.test('SIGTERM stops a started node in order and it exits 0', async (t) => {
  const id = `${NODE_ID}-term`;
  const node = await startNode(t, cliEnv({ USAGE_TRACKER_NODE_ID: id, USAGE_TRACKER_DATA_DIR: `${DATA_DIR}-term` }));
  const before = await run(['status', '--node', id, '--json']);
  t.equal(before.code, 0, 'it answers before the signal');

  node.child.kill('SIGTERM');
  const result = await within('the node to exit after SIGTERM', node.exit);
  t.equal(result.signal, null, 'it exits by itself, not by the signal');
  t.equal(result.code, 0);
  t.same(lines(result.stderr).slice(1), ['usage-tracker: SIGTERM received; stopping the actor tree in order', 'usage-tracker: node stopped']);
  t.notMatch(result.stderr, STACK_FRAME);
  const stopped = lines(result.stdout)
    .map((line) => JSON.parse(line) as { msg?: string; child?: string })
    .filter((entry) => entry.msg === 'child stopped')
    .map((entry) => entry.child);
  t.same(
    stopped,
    ['api', 'maintenance/retention', 'maintenance/migration', 'maintenance/backup', 'maintenance', 'sync', 'ingest/ingest-1', 'ingest/ingest-0', 'ingest', 'shards/partition-1', 'shards/partition-0', 'shards'].map((child) => `${id}/${child}`),
    'the log shows the children stopped in reverse start order',
  );

  const after = await run(['status', '--node', id, '--timeout', '500']);
  t.equal(after.code, 1, 'it no longer answers');
  t.match(after.stderr, `no node answers on ${PREFIX}.v1.node.${id}.admin.status`);
});

t.test('start on the nats transport fails when NATS is unreachable, naming the URL', async (t) => {
  const result = await run(['start'], cliEnv({ USAGE_TRACKER_TRANSPORT: 'nats', USAGE_TRACKER_NATS_URL: 'nats://127.0.0.1:1' }));
  t.equal(result.code, 1);
  t.equal(lines(result.stderr).length, 1, result.stderr);
  t.match(result.stderr, /^usage-tracker: cannot connect to NATS at nats:\/\/127\.0\.0\.1:1: \S/);
  t.notMatch(result.stderr, STACK_FRAME);
});
