// Crash test of storage migrations: a child process (fixture-migration.ts)
// applies storage-0002 to a data directory with many sealed files (or rolls
// it back, when the directory is at format 2), and this test SIGKILLs it at
// seeded random moments, round after round. After each kill a node started
// here on the directory (its start rolls back or completes the interrupted
// run) must show:
//
// - node.json, every manifest and every listed file all at format 1, or all
//   at format 2: never a mix;
// - every file a manifest lists exists, has the listed size and SHA-256, and
//   partitions/ holds nothing else; no undo dir, no journal, no node.json copy;
// - every record equal (id, version, content) to what the directory held
//   before the first run, and every shard serving.
//
// Round 0 applies to completion and times the run. Rounds 1 to 3 are fixed
// so that the floor alone kills a rollback and an apply in mid-run: 1 kills
// a rollback, 2 lets a rollback finish, 3 kills an apply. From round 4 on,
// one round in three (a seeded choice) lets the run finish, so the format
// flips. Each kill lands at a seeded random moment within round 0's time.
// Rounds: at least MIGRATION_CRASH_ROUNDS_MIN (default 5), then more while
// MIGRATION_CRASH_BUDGET_S (default 30) lasts, or exactly
// MIGRATION_CRASH_ROUNDS; MIGRATION_CRASH_SEED seeds the kills
// (test/helpers/rounds.ts, which prints a line that reproduces the run).

import t from 'tap';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { decode, encode } from '../../protocols/codec.js';
import { subjects, type EndpointName } from '../../protocols/subjects.js';
import { canonicalJson } from '../../src/migration/shard-rewrite.js';
import { silentLogger } from '../../src/log.js';
import { EmbeddedTransport } from '../../src/transport/embedded.js';
import { startNode } from '../../supervisors/node.js';
import { manifests, toFormat1 } from '../helpers/format1.js';
import { migrationCrashConfig, MIGRATION_CRASH_SHARDS } from './fixture-migration.js';
import { roundPlan } from '../helpers/rounds.js';

// Before the rounds: 1500 records ingested and read back. A round: a fixture's start and run, then a node's start and a read of every record.
const PLAN = roundPlan(t, { stem: 'MIGRATION_CRASH', file: 'test/crash/migration-sigkill.test.ts', floor: 5, budgetS: 30, roundMsMax: 25_000, setupMsMax: 60_000 });
const SEED = PLAN.seed;
/** Rounds 1 to 3: kill a rollback, let a rollback finish, kill an apply (round 0 applies to the end). */
const FIXED_TO_END = [true, false, true, false];
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const RECORDS = 1500;
const FILE_DELAY_MS = 5;
const DAY_MS = 86_400_000;

function fixtureEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^(NODE_OPTIONS|NODE_V8_COVERAGE|TAP|_TAPJS_)/.test(name)));
}

type Call = (endpoint: EndpointName, body: unknown) => Promise<any>;

async function withNode<T>(dataDir: string, backupDir: string, work: (call: Call) => Promise<T>): Promise<T> {
  const embedded = new EmbeddedTransport();
  const node = await startNode(migrationCrashConfig(dataDir, backupDir), { embedded, log: silentLogger });
  const call: Call = async (endpoint, body) =>
    decode((await embedded.request(subjects('usage').endpoint(endpoint), encode(body), { timeoutMs: 60_000 })).data, 'msgpack', { payloadBytesMax: 64 << 20, nestingDepthMax: 64 });
  try {
    return await work(call);
  } finally {
    await node.stop();
  }
}

async function recordsOf(call: Call): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  let cursor: string | undefined;
  do {
    const reply = await call('query.records', { limit: 1000, ...(cursor ? { cursor } : {}) });
    if (!reply.ok || reply.complete !== true) throw new Error(`query.records: ${JSON.stringify(reply.error ?? reply.missing_shards)}`);
    for (const record of reply.records) found.set(record.id, canonicalJson(record));
    cursor = reply.next_cursor;
  } while (cursor !== undefined);
  return found;
}

/** What is wrong on disk: mixed formats, missing or damaged listed files, leftovers. Returns the format and the problems. */
function diskProblems(dataDir: string): { format: number; problems: string[] } {
  const problems: string[] = [];
  const format = JSON.parse(readFileSync(join(dataDir, 'node.json'), 'utf8')).format_version as number;
  for (const manifest of manifests(dataDir)) {
    const dir = join(dataDir, 'shards', manifest.dir);
    if (manifest.format_version !== format) problems.push(`shard ${manifest.dir}: manifest at ${manifest.format_version}, node.json at ${format}`);
    const listed = new Set<string>();
    for (const entry of manifest.files as { name: string; format?: number; bytes: number; sha256: string }[]) {
      listed.add(entry.name);
      if ((entry.format ?? 1) !== format) problems.push(`shard ${manifest.dir}: ${entry.name} at format ${entry.format ?? 1}`);
      const path = join(dir, 'partitions', entry.name);
      if (!existsSync(path)) {
        problems.push(`shard ${manifest.dir}: ${entry.name} is listed but missing`);
        continue;
      }
      const bytes = readFileSync(path);
      if (bytes.byteLength !== entry.bytes || createHash('sha256').update(bytes).digest('hex') !== entry.sha256) problems.push(`shard ${manifest.dir}: ${entry.name} does not verify`);
    }
    for (const name of readdirSync(join(dir, 'partitions'))) if (!listed.has(name)) problems.push(`shard ${manifest.dir}: ${name} is not listed`);
    if (existsSync(join(dir, 'migration-undo'))) problems.push(`shard ${manifest.dir}: an undo dir is left`);
  }
  for (const name of ['journal.json', 'node.json.undo']) if (existsSync(join(dataDir, 'migration', name))) problems.push(`migration/${name} is left`);
  return { format, problems };
}

interface Run {
  lines: string[];
  stderr: string;
  ms: number;
  signal: NodeJS.Signals | null;
}

/** Runs the fixture; kills it `killAfterMs` after it said running (or waits for done when undefined). */
async function runFixture(dataDir: string, backupDir: string, killAfterMs: number | undefined): Promise<Run> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/crash/fixture-migration.ts', dataDir, backupDir, String(FILE_DELAY_MS)], {
    cwd: ROOT,
    env: fixtureEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const run: Run = { lines: [], stderr: '', ms: 0, signal: null };
  let partial = '';
  let runningAt = 0;
  const seen = (prefix: string) => run.lines.some((line) => line.startsWith(prefix));
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n');
    partial = parts.pop()!;
    run.lines.push(...parts);
    if (!runningAt && seen('running')) runningAt = Date.now();
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => (run.stderr += chunk));
  const exited = new Promise<NodeJS.Signals | null>((resolveExit) => child.once('close', (_code, signal) => resolveExit(signal)));
  const deadline = Date.now() + 120_000;
  while (!runningAt && Date.now() < deadline && child.exitCode === null) await sleep(5);
  if (!runningAt) throw new Error(`the fixture never started its run:\n${run.stderr}`);
  if (killAfterMs === undefined) {
    while (!seen('done') && Date.now() < deadline && child.exitCode === null) await sleep(5);
    run.ms = Date.now() - runningAt;
  } else {
    await sleep(killAfterMs);
  }
  child.kill('SIGKILL');
  run.signal = await exited;
  return run;
}

t.test(`SIGKILL in the middle of a storage migration, round after round (seed ${SEED})`, async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'usage-tracker-migcrash-'));
  const backupDir = mkdtempSync(join(tmpdir(), 'usage-tracker-migcrashbk-'));
  t.teardown(() => {
    if (t.passing()) rmSync(dataDir, { recursive: true, force: true });
    else t.comment(`data directory kept for inspection: ${dataDir}`);
    rmSync(backupDir, { recursive: true, force: true });
  });
  // Many sealed files in every shard: small memtables and many small batches over several days.
  await withNode(dataDir, backupDir, async (call) => {
    for (let start = 0; start < RECORDS; start += 15) {
      const batch = Array.from({ length: 15 }, (_, i) => {
        const n = start + i;
        return { id: `c-${n}`, ts: Date.now() - (n % 5) * DAY_MS - n, user_id: `u-${n % 17}`, provider: 'openai', model: 'gpt-4o', input_tokens: n, output_tokens: n % 97 };
      });
      const reply = await call('ingest', { records: batch });
      if (!reply.ok) throw new Error(JSON.stringify(reply.error));
    }
  });
  const { files } = toFormat1(dataDir);
  t.ok(files >= 60, `a format-1 directory with ${files} sealed files`);
  const model = await withNode(dataDir, backupDir, recordsOf);
  t.equal(model.size, RECORDS);

  let runMs = 0;
  const outcomes = { midRun: 0, finished: 0, atFormat: new Map<number, number>() };
  for (const round of PLAN.rounds()) {
    const random = PLAN.random(round);
    // After the fixed rounds, about one in three runs to the end, so the format flips and both apply and rollback get killed mid-run.
    const toEnd = FIXED_TO_END[round] ?? random() < 0.3;
    const killAfterMs = toEnd ? undefined : Math.floor(random() * runMs);
    const run = await runFixture(dataDir, backupDir, killAfterMs);
    if (round === 0) {
      runMs = run.ms;
      t.ok(run.lines.includes('done ok'), `round 0 ran to completion in ${run.ms} ms`, { lines: run.lines, stderr: run.stderr });
    } else if (toEnd) {
      t.ok(run.lines.includes('done ok'), `round ${round} ran to completion`, { lines: run.lines, stderr: run.stderr });
    }
    const finished = run.lines.some((line) => line.startsWith('done'));
    if (finished) outcomes.finished++;
    else outcomes.midRun++;
    t.equal(run.signal, 'SIGKILL', `round ${round}: killed`);
    const label = `round ${round} (${run.lines.find((line) => line.startsWith('running')) ?? '?'}, killed ${killAfterMs ?? 'after done'} ms in${finished ? ', after it finished' : ''})`;
    // A node's start rolls back or completes the interrupted run; check the directory while it serves, and its records.
    const records = await withNode(dataDir, backupDir, async (call) => {
      const status = await call('admin.migration.status', {});
      t.equal(status.journal, null, `${label}: no journal after the start`);
      return recordsOf(call);
    });
    const { format, problems } = diskProblems(dataDir);
    outcomes.atFormat.set(format, (outcomes.atFormat.get(format) ?? 0) + 1);
    t.strictSame(problems.slice(0, 10), [], `${label}: at format ${format}, every listed file present and verified, nothing left over`);
    t.equal(records.size, model.size, `${label}: every record present`);
    const differ = [...model].filter(([id, json]) => records.get(id) !== json).map(([id]) => id);
    t.strictSame(differ.slice(0, 10), [], `${label}: every record equal to the model`);
    if (!t.passing()) break;
  }
  PLAN.end();
  t.comment(`${outcomes.midRun} kills during a run, ${outcomes.finished} after it finished; ended at format 1: ${outcomes.atFormat.get(1) ?? 0}, format 2: ${outcomes.atFormat.get(2) ?? 0}`);
  t.ok(outcomes.midRun >= Math.min(2, PLAN.ran - 2), 'kills landed in the middle of runs, of a rollback and of an apply (the test tested something)');
});
