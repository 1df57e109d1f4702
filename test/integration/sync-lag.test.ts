// `sync status` lag after restarts (real NATS and PostgreSQL, the mirror
// taken down by a TCP proxy in front of it): lag_seconds is now minus the
// write time of the oldest record the mirror does not have, read from the
// node's own data, so it holds across a restart, and lag_records counts
// from the checkpoint the mirror last took (the node's local copy of it)
// while the mirror cannot be asked. The three lives run on clocks set apart
// (two hours behind, the system's, ten minutes ahead), so the lag says from
// which records it counts. After the mirror is back and caught up, the lag
// is 0.

import t from 'tap';
import pg from 'pg';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { systemClock, type Clock } from '../../src/ports/clock.js';
import { cli } from '../helpers/cli.js';
import { caughtUp, mirroredRows, proxiedPostgres } from '../helpers/mirror.js';
import { startTestNode, uniqueName, type TestNode } from '../helpers/node.js';

const POSTGRES_URL = process.env.USAGE_TRACKER_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const HOUR_MS = 3_600_000;
const AHEAD_MS = 10 * 60_000;

const admin = new pg.Pool({ connectionString: POSTGRES_URL, max: 2 });
t.teardown(() => admin.end());

/** The system clock moved by `offsetMs` (timers run as usual). */
const shifted = (offsetMs: number): Clock => ({ ...systemClock, now: () => Date.now() + offsetMs });

function records(prefix: string, count: number, ts: number) {
  return Array.from({ length: count }, (_, i) => ({
    id: `${prefix}-${i}`,
    ts: ts + i,
    user_id: `user-${i % 3}`,
    provider: 'anthropic',
    model: 'claude-sonnet-4',
    input_tokens: 100 + i,
    output_tokens: 10,
    cost_usd: 0.001,
  }));
}

async function syncStatus(node: TestNode): Promise<{ state: string; shards: { lag_records: number; lag_seconds: number }[] }> {
  const reply = await node.call('admin.sync.status', {});
  if (!reply.ok) throw new Error(`admin.sync.status failed: ${JSON.stringify(reply.error)}`);
  return reply.backends[0];
}

const lagRecords = (status: { shards: { lag_records: number }[] }) => status.shards.reduce((sum, shard) => sum + shard.lag_records, 0);
const lagSeconds = (status: { shards: { lag_seconds: number }[] }) => Math.max(0, ...status.shards.map((shard) => shard.lag_seconds));

t.test('lag counts from the oldest record the mirror lacks, across restarts with the mirror down', async (t) => {
  const { schema, proxy, url } = await proxiedPostgres(t, admin, POSTGRES_URL, 'lag');
  const yaml =
    `cluster:\n  shards: 2\nbackup:\n  schedule: false\n  wal_archive: false\n` +
    `backends:\n  postgres:\n    url: ${url.href}\n    schema: ${schema}\n    window_ms: 20\n    retry_base_ms: 50\n    retry_max_ms: 300\n`;
  const running: TestNode[] = [];
  t.teardown(async () => {
    for (const node of running) await node.stop().catch(() => undefined);
  });
  const life = async (clock: Clock, same?: TestNode) => {
    const node = await startTestNode(yaml, {}, { keepData: true, clock, ...(same ? { dataDir: same.config.node.data_dir, nodeId: same.config.node.id, prefix: same.config.transport.subject_prefix } : {}) });
    running.push(node);
    return node;
  };
  const stop = async (node: TestNode) => {
    running.splice(running.indexOf(node), 1);
    await node.stop();
  };

  // Life 1, two hours behind: 50 records, all mirrored; then the mirror goes down.
  const first = await life(shifted(-2 * HOUR_MS));
  const dataDir = first.config.node.data_dir;
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const prefix = uniqueName('l');
  await first.call('ingest', { records: records(`${prefix}-early`, 50, Date.now() - 2 * HOUR_MS - 60_000) });
  await caughtUp(first, 1, 60_000);
  t.equal((await mirroredRows(admin, schema)).size, 50);
  proxy.down();
  await stop(first);
  t.ok(existsSync(join(dataDir, 'sync', 'postgres.json')), 'the checkpoints the mirror took are kept locally');

  // Life 2, on the system clock: 100 records the mirror cannot take.
  const second = await life(systemClock, first);
  const lateFrom = Date.now();
  await second.call('ingest', { records: records(`${prefix}-late`, 100, lateFrom - 60_000) });
  const during = await syncStatus(second);
  t.equal(lagRecords(during), 100, `100 changes behind the checkpoint the mirror last took: ${JSON.stringify(during)}`);
  t.ok(lagSeconds(during) < HOUR_MS / 1000, `the lag counts from the late records, not the mirrored ones: ${lagSeconds(during)} s`);
  await stop(second);

  // Life 3, ten minutes ahead, the mirror still down: the late records have waited at least ten minutes.
  const third = await life(shifted(AHEAD_MS), first);
  const after = await syncStatus(third);
  t.not(after.state, 'realtime', 'the mirror is still unreachable');
  t.equal(lagRecords(after), 100, `after the restart still 100 behind: ${JSON.stringify(after)}`);
  const upper = (AHEAD_MS + Date.now() - lateFrom) / 1000 + 1;
  t.ok(lagSeconds(after) >= AHEAD_MS / 1000, `lag_seconds ${lagSeconds(after)} is at least the ten minutes the late records have waited`);
  t.ok(lagSeconds(after) <= upper, `and no more than their age (${upper.toFixed(1)} s): it does not count from the mirrored records`);
  const text = await cli(['sync', 'status'], third.config.transport.subject_prefix);
  t.equal(text.code, 0, text.stderr);
  const shown = /records behind \((\d+(?:\.\d)?) s\)/.exec(text.stdout);
  t.ok(shown && Number(shown[1]) >= AHEAD_MS / 1000, `sync status prints the wait, not 0.0 s: ${text.stdout}`);

  proxy.up();
  const caught = await caughtUp(third, 1, 60_000);
  t.equal(lagSeconds(caught[0]), 0, 'caught up: no lag');
  t.equal((await mirroredRows(admin, schema)).size, 150);
  t.equal(lagSeconds(await syncStatus(third)), 0, 'and a fresh status agrees');
});
