// Crash test of the PostgreSQL mirror: a child process (fixture-sync.ts)
// ingests and updates while its SyncActor mirrors into PostgreSQL, and this
// test SIGKILLs it at random moments, round after round: in the middle of
// batches, transactions and checkpoints. Then a node started on the same
// data directory must bring the mirror to exactly the local data: the same
// ids, versions, seqs and content, nothing lost and nothing doubled.
// Rounds: at least SYNC_CRASH_ROUNDS_MIN (default 5), then more while
// SYNC_CRASH_BUDGET_S (default 20) lasts, or exactly SYNC_CRASH_ROUNDS;
// SYNC_CRASH_SEED seeds the kill times (test/helpers/rounds.ts, which
// prints the seed and a line that reproduces the run).

import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { decode, encode } from '../../protocols/codec.js';
import { subjects } from '../../protocols/subjects.js';
import { silentLogger } from '../../src/log.js';
import { EmbeddedTransport } from '../../src/transport/embedded.js';
import { startNode } from '../../supervisors/node.js';
import { compareMirror, mirroredRows } from '../helpers/mirror.js';
import { uniqueName } from '../helpers/node.js';
import { roundPlan } from '../helpers/rounds.js';
import { syncCrashConfig } from './fixture-sync.js';

// A round is a node start (modules, PostgreSQL) and up to 1.5 s of work; after the rounds the mirror may take up to a minute to catch up.
const PLAN = roundPlan(t, { stem: 'SYNC_CRASH', file: 'test/crash/sync-sigkill.test.ts', floor: 5, budgetS: 20, roundMsMax: 20_000, setupMsMax: 90_000 });
const KILL_MS_MIN = 200;
const KILL_MS_MAX = 1500;
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const POSTGRES_URL = process.env.USAGE_TRACKER_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

t.test(`SIGKILL in the middle of sync, round after round: the mirror ends equal to local data (seed ${PLAN.seed})`, async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'usage-tracker-synccrash-'));
  const schema = uniqueName('synccrash');
  const admin = new pg.Pool({ connectionString: POSTGRES_URL, max: 2 });
  t.teardown(async () => {
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(`${dataDir}-backups`, { recursive: true, force: true });
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
    await admin.end();
  });
  let mirroredBefore = 0;
  for (const index of PLAN.rounds()) {
    // Rounds count from 1 here: the fixture's generator seed and id prefix.
    const round = index + 1;
    const killMs = KILL_MS_MIN + Math.floor(PLAN.random(index)() * (KILL_MS_MAX - KILL_MS_MIN));
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/crash/fixture-sync.ts', dataDir, POSTGRES_URL, schema, String(round)], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise<void>((done) => child.once('exit', () => done()));
    await new Promise<void>((ready, fail) => {
      child.stdout.on('data', (chunk: Buffer) => chunk.toString().includes('ready') && ready());
      child.once('exit', (code) => fail(new Error(`fixture exited with ${code} before it was ready`)));
    });
    await sleep(killMs);
    child.kill('SIGKILL');
    await exited;
    const mirrored = Number((await admin.query(`SELECT count(*) AS n FROM "${schema}".usage_records`)).rows[0].n);
    t.ok(mirrored >= mirroredBefore, `round ${round}, killed ${killMs} ms after ready: the mirror never loses rows (${mirrored})`);
    mirroredBefore = mirrored;
  }
  PLAN.end();

  const embedded = new EmbeddedTransport();
  const config = syncCrashConfig(dataDir, POSTGRES_URL, schema);
  const node = await startNode(config, { log: silentLogger, embedded });
  t.teardown(() => node.stop());
  const names = subjects(config.transport.subject_prefix);
  const call = async (endpoint: 'admin.sync.status' | 'query.records', body: unknown) =>
    decode((await embedded.request(names.endpoint(endpoint), encode(body), { timeoutMs: 30_000 })).data) as any;
  const deadline = Date.now() + 60_000;
  for (;;) {
    const backend = (await call('admin.sync.status', {})).backends[0];
    if (backend.state === 'realtime' && backend.shards.every((shard: any) => shard.lag_records === 0)) break;
    if (Date.now() > deadline) throw new Error(`not caught up: ${JSON.stringify(backend)}`);
    await sleep(100);
  }
  const local = new Map<string, any>();
  let cursor: string | undefined;
  do {
    const page = await call('query.records', { limit: 1000, ...(cursor ? { cursor } : {}) });
    t.equal(page.complete, true);
    for (const record of page.records) local.set(record.id, record);
    cursor = page.next_cursor;
  } while (cursor);
  t.ok(local.size > 0, `${local.size} records were stored over ${PLAN.ran} rounds`);
  compareMirror(t, local, await mirroredRows(admin, schema));
});
