// `usage-tracker start` with stdout on a pipe, as under systemd or `| jq`:
// JSON lines by default (log.format auto), readable lines when
// USAGE_TRACKER_LOG_FORMAT=pretty asks for them. The config file sits in a
// directory of its own, and the node's data directory, written there as
// ./data, is created beside it, not in the working directory; so is the
// default price file looked for.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const WAIT_MS = 60_000;
const BASE = mkdtempSync(join(tmpdir(), 'usage-tracker-log-'));
t.teardown(() => rmSync(BASE, { recursive: true, force: true }));

interface Started {
  child: ChildProcess;
  stdout: () => string;
  exited: Promise<number | null>;
}

/** Starts the node on a config file in `dir` and waits for stdout to say `node started`; killed at teardown. */
async function start(t: { teardown(fn: () => unknown): void }, dir: string, env: Record<string, string>): Promise<Started> {
  const file = join(dir, 'cluster.yml');
  writeFileSync(file, `node:\n  id: log-${process.pid}\n  data_dir: ./data\ncluster:\n  shards: 1\nbackup:\n  target_dir: ./backups\n  schedule: false\n  wal_archive: false\n`);
  const clean: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('USAGE_TRACKER_')) clean[name] = value;
  // NATS on a port nothing listens on: the embedded transport serves in-process and says so.
  const child = spawn(process.execPath, ['--import', 'tsx', 'bin/usage-tracker.ts', 'start', '--config', file], {
    cwd: ROOT,
    env: { ...clean, USAGE_TRACKER_NATS_URL: 'nats://127.0.0.1:1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`stdout did not say 'node started' within ${WAIT_MS} ms; stdout: ${stdout}; stderr: ${stderr}`)), WAIT_MS);
    const check = () => {
      if (stdout.includes('node started')) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', check);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`the node exited (${code}) before 'node started'; stderr: ${stderr}`));
    });
  });
  return { child, stdout: () => stdout, exited };
}

async function stop(node: Started): Promise<void> {
  node.child.kill('SIGTERM');
  const code = await node.exited;
  if (code !== 0) throw new Error(`the node exited ${code} after SIGTERM`);
}

t.test('piped, the node logs one JSON object a line, and its data directory is beside the config file', async (t) => {
  const dir = join(BASE, 'json');
  mkdirSync(dir);
  const node = await start(t, dir, {});
  await stop(node);
  const lines = node.stdout().split('\n').filter(Boolean);
  t.ok(lines.length >= 2, `${lines.length} lines`);
  const records = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
  t.ok(
    records.some((record) => record.msg === 'node started' && record.level === 30),
    'the start line is JSON',
  );
  t.ok(
    records.some((record) => typeof record.msg === 'string' && record.msg.startsWith('NATS not reachable')),
    'so is the line about NATS',
  );
  t.ok(existsSync(join(dir, 'data', 'node.json')), 'data_dir ./data is under the directory of the config file');
  t.ok(
    records.some((record) => record.price_file === join(dir, 'prices.yml')),
    'the price file (the default ./prices.yml) is looked for beside the config file, not in the working directory',
  );
});

t.test('piped, USAGE_TRACKER_LOG_FORMAT=pretty gives readable lines, uncoloured', async (t) => {
  const dir = join(BASE, 'pretty');
  mkdirSync(dir);
  const node = await start(t, dir, { USAGE_TRACKER_LOG_FORMAT: 'pretty' });
  await stop(node);
  const out = node.stdout();
  t.match(out, /^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] INFO: node started$/m);
  t.match(out, /\] INFO: NATS not reachable/);
  t.notMatch(out, /^\{/m, 'no JSON line');
  t.notMatch(out, /\x1b\[/, 'no colour codes into a pipe');
});
