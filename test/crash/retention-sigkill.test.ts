// SIGKILL in the middle of retention: after restart each shard is either
// complete (the after-state) or rolled back (the before-state), and no
// manifest points at a removed file.
//
// A fixture child (fixture-retention.ts) prepares a data directory with
// many sealed files per shard (old and new records, updated ones whose
// older versions lie dead in older files) and a few old records still
// unsealed (which a run seals before it commits). A reference copy runs retention
// to the end: its shards are the after-state; the prepared directory's are
// the before-state. Then, round after round, a fixture runs retention on
// the data directory and is SIGKILLed at a seeded random moment. After each
// kill every shard is opened here (recovery, as a restart does) and must:
// - serve (every listed file exists and verifies: size, SHA-256, gzip, rows);
// - hold on disk exactly the partition and rollup files its manifest lists;
// - serve the same records (id and version) and the same aggregate totals
//   (count, tokens, cost over raw records plus rollups) as either the
//   before-state or the after-state of that shard.
// Each round starts again from the prepared state; after each kill a whole
// run follows, and every shard must then be in the after-state.
//
// Rounds: at least RETENTION_CRASH_ROUNDS_MIN (default 3), then more while
// RETENTION_CRASH_BUDGET_S (default 20) lasts, or exactly
// RETENTION_CRASH_ROUNDS; RETENTION_CRASH_SEED seeds the kill moments
// (test/helpers/rounds.ts, which prints a line that reproduces the run).

import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { silentLogger } from '../../src/log.js';
import { nodeFileSystem } from '../../src/ports/fs.js';
import { createAggregator } from '../../src/query/aggregate.js';
import { ShardStore } from '../../src/storage/shard-store.js';
import { roundPlan } from '../helpers/rounds.js';
import { SHARDS } from './fixture-retention.js';

// Before the rounds: the prepared directory and a whole reference run. A round: a killed run, a whole run, each shard opened twice.
const PLAN = roundPlan(t, { stem: 'RETENTION_CRASH', file: 'test/crash/retention-sigkill.test.ts', floor: 3, budgetS: 20, roundMsMax: 40_000, setupMsMax: 60_000 });
const SEED = PLAN.seed;
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const FIXTURE = 'test/crash/fixture-retention.ts';

function fixtureEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^(NODE_OPTIONS|NODE_V8_COVERAGE|TAP|_TAPJS_)/.test(name)));
}

interface Child {
  lines: string[];
  stderr: () => string;
  waitFor(prefix: string, timeoutMs: number): Promise<number>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(): void;
}

function spawnFixture(dataDir: string, mode: 'prepare' | 'run', exportDir: string): Child {
  const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE, dataDir, mode, exportDir], { cwd: ROOT, env: fixtureEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let partial = '';
  let errText = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n');
    partial = parts.pop()!;
    lines.push(...parts);
  });
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (chunk: string) => {
    if (errText.length < 20_000) errText += chunk;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) => child.once('close', (code, signal) => done({ code, signal })));
  return {
    lines,
    stderr: () => errText,
    exited,
    async waitFor(prefix, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while (!lines.some((line) => line.startsWith(prefix))) {
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`fixture exited before "${prefix}":\n${errText}`);
        if (Date.now() > deadline) throw new Error(`no "${prefix}" after ${timeoutMs} ms:\n${errText}`);
        await sleep(5);
      }
      return Date.now();
    },
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

interface ShardState {
  records: string;
  totals: string;
}

/** Opens one shard as a restart does (recovery included) and fingerprints what it serves; checks its files against its manifest. */
async function shardState(t: Test, dataDir: string, shard: number, label: string): Promise<ShardState> {
  const dir = join(dataDir, 'shards', String(shard));
  const store = await ShardStore.open({
    dir,
    shard,
    nodeId: 'crash-retention',
    now: () => Date.now(),
    fs: nodeFileSystem,
    fsync: true,
    log: silentLogger,
    memtableRecordsMax: 1_000_000,
    cacheBytesMax: 64 << 20,
  });
  try {
    t.equal(store.health.state, 'serving', `${label} shard ${shard}: serving, every listed file verified ${store.health.state === 'corrupt' ? store.health.reason : ''}`);
    const manifest = JSON.parse(readFileSync(join(dir, 'metadata.json'), 'utf8'));
    const partitions = readdirSync(join(dir, 'partitions')).sort();
    t.same(partitions, manifest.files.map((file: { name: string }) => file.name).sort(), `${label} shard ${shard}: exactly the listed partition files`);
    const rollupDir = join(dir, 'rollups');
    const rollups = existsSync(rollupDir) ? readdirSync(rollupDir).sort() : [];
    t.same(rollups, (manifest.rollups ?? []).map((file: { name: string }) => file.name).sort(), `${label} shard ${shard}: exactly the listed rollup files`);
    const ids: string[] = [];
    for await (const record of store.scan({})) ids.push(`${record.id}@${record.version}`);
    const aggregator = createAggregator({ group_by: [], metrics: ['count', 'tokens', 'cost'] });
    store.aggregate({}, (record) => void aggregator.add(record));
    for (const rows of store.rollups.values()) for (const row of rows) aggregator.addRollup(row);
    const group = aggregator.partial().groups[0];
    return { records: ids.sort().join(','), totals: JSON.stringify(group ?? null) };
  } finally {
    await store.close();
  }
}


t.test(`SIGKILL in the middle of retention leaves each shard complete or rolled back (seed ${SEED})`, async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'usage-tracker-retention-crash-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const dataDir = join(root, 'data');
  const exportDir = join(root, 'exports');
  const prepare = spawnFixture(dataDir, 'prepare', exportDir);
  await prepare.waitFor('prepared', 120_000);
  t.equal((await prepare.exited).code, 0, prepare.stderr());

  const before: ShardState[] = [];
  for (let shard = 0; shard < SHARDS; shard++) before.push(await shardState(t, dataDir, shard, 'prepared'));
  const reference = join(root, 'reference');
  cpSync(dataDir, reference, { recursive: true });
  const full = spawnFixture(reference, 'run', join(root, 'reference-exports'));
  const startedAt = await full.waitFor('started', 120_000);
  const doneAt = await full.waitFor('done', 120_000);
  t.equal((await full.exited).code, 0, full.stderr());
  const totals = JSON.parse(full.lines.find((line) => line.startsWith('done '))!.slice(5));
  t.ok(totals.records_removed > 0 && totals.records_rolled_up > 0 && totals.files_dropped > 0 && totals.files_rewritten > 0, `the reference run drops and rewrites files: ${JSON.stringify(totals)}`);
  const after: ShardState[] = [];
  for (let shard = 0; shard < SHARDS; shard++) after.push(await shardState(t, reference, shard, 'reference'));
  for (let shard = 0; shard < SHARDS; shard++) t.not(after[shard]!.records, before[shard]!.records, `shard ${shard}: retention changes it`);
  const runMs = Math.max(20, doneAt - startedAt);
  t.comment(`seed ${SEED}; a whole run takes about ${runMs} ms`);

  const seen = { before: 0, after: 0 };
  const prepared = join(root, 'prepared');
  cpSync(dataDir, prepared, { recursive: true });
  for (const round of PLAN.rounds()) {
    // Every round starts from the prepared state, so each kill lands somewhere in a whole run.
    rmSync(dataDir, { recursive: true, force: true });
    cpSync(prepared, dataDir, { recursive: true });
    const child = spawnFixture(dataDir, 'run', exportDir);
    await child.waitFor('started', 120_000);
    const killMs = Math.floor(PLAN.random(round)() * runMs);
    await sleep(killMs);
    child.kill();
    await child.exited;
    for (let shard = 0; shard < SHARDS; shard++) {
      const state = await shardState(t, dataDir, shard, `round ${round}`);
      const isBefore = state.records === before[shard]!.records && state.totals === before[shard]!.totals;
      const isAfter = state.records === after[shard]!.records && state.totals === after[shard]!.totals;
      if (isBefore) seen.before++;
      if (isAfter) seen.after++;
      t.ok(isBefore || isAfter, `round ${round} (killed ${killMs} ms in) shard ${shard}: ${isBefore ? 'the before-state' : isAfter ? 'the after-state' : 'neither'}, never a mix (seed ${SEED})`);
    }
    // The next run finishes what the killed one left: every shard complete.
    const rerun = spawnFixture(dataDir, 'run', exportDir);
    await rerun.waitFor('done', 120_000);
    t.equal((await rerun.exited).code, 0, rerun.stderr());
    for (let shard = 0; shard < SHARDS; shard++) {
      const state = await shardState(t, dataDir, shard, `round ${round} rerun`);
      t.ok(state.records === after[shard]!.records && state.totals === after[shard]!.totals, `round ${round} shard ${shard}: complete after the next run`);
    }
  }
  PLAN.end();
  t.comment(`shards seen rolled back: ${seen.before}, complete: ${seen.after}`);
});
