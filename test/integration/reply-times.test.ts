// Every time in every reply has one form: an ISO 8601 UTC string with
// milliseconds (protocols/README.md §4). Each admin and query reply is
// decoded as a JavaScript client on msgpackr's defaults decodes it (`unpack`,
// which turns 64-bit integers into BigInt) and must go through
// `JSON.stringify`; the only 64-bit integers are the epoch milliseconds the
// usage record itself defines (§5: `ts`, `ingested_at`, `updated_at`).

import t from 'tap';
import pg from 'pg';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { unpack } from 'msgpackr';
import { encode } from '../../protocols/codec.js';
import type { EndpointName } from '../../protocols/subjects.js';
import { startTestNode, uniqueName, type TestNode } from '../helpers/node.js';
import { waitFor } from '../helpers/wait.js';

const POSTGRES_URL = process.env.USAGE_TRACKER_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const ISO_MS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
/** Keys whose value is a moment in time. */
const TIME_KEY = /(^|_)(at|time|now)$|^ts$|^next_run$|^recovery_point$|^before$/;
/** The record's own epoch-ms fields (§5), which stay integers. */
const RECORD_TIME_FIELDS = new Set(['ts', 'ingested_at', 'updated_at']);
/** Keys holding usage records (§5). `remote_record` is a PostgreSQL row, not one: its times are reply times. */
const RECORD_KEYS = new Set(['record', 'records', 'local_record']);

/** Paths of values that break the rule, with what was found. */
function offences(value: unknown, path: string, inRecord: boolean, out: string[]): string[] {
  const key = path.slice(path.lastIndexOf('.') + 1);
  if (inRecord && RECORD_TIME_FIELDS.has(key)) return out;
  if (typeof value === 'bigint') out.push(`${path}: a 64-bit integer (${value}n), which msgpackr decodes to BigInt`);
  else if (TIME_KEY.test(key) && value !== null && !(typeof value === 'string' && ISO_MS.test(value))) {
    out.push(`${path}: ${JSON.stringify(value)} is not an ISO 8601 UTC time with milliseconds`);
  } else if (Array.isArray(value)) value.forEach((child, i) => offences(child, `${path}.${i}`, inRecord, out));
  else if (value !== null && typeof value === 'object') {
    for (const [childKey, child] of Object.entries(value)) {
      const record = inRecord || (RECORD_KEYS.has(childKey) && !Array.isArray(child)) || (path.endsWith('.records') && /^\d+$/.test(childKey));
      offences(child, `${path}.${childKey}`, record || RECORD_KEYS.has(key), out);
    }
  }
  return out;
}

/** The reply with the record objects left out: what must survive JSON.stringify as decoded. */
function withoutRecords(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutRecords);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(Object.entries(value).filter(([key]) => !RECORD_KEYS.has(key)).map(([key, child]) => [key, withoutRecords(child)]));
}

t.test('every admin and query reply gives its times as ISO strings, and JSON.stringify takes it on msgpackr defaults', async (t) => {
  const schema = uniqueName('times');
  const admin = new pg.Pool({ connectionString: POSTGRES_URL, max: 1 });
  const restoreRoot = mkdtempSync(join(tmpdir(), 'usage-tracker-times-'));
  const node: TestNode = await startTestNode(
    `cluster:\n  shards: 2\nbackends:\n  postgres:\n    url: ${POSTGRES_URL}\n    schema: ${schema}\n    window_ms: 20\n    conflict_strategy: manual\n`,
  );
  t.teardown(async () => {
    await node.stop();
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await admin.end();
    rmSync(restoreRoot, { recursive: true, force: true });
  });
  const raw = async (endpoint: EndpointName, body: unknown): Promise<any> =>
    unpack((await node.client.request(node.subjects.endpoint(endpoint), encode(body), { timeoutMs: 30_000 })).data);

  const records = Array.from({ length: 12 }, (_, i) => ({
    id: `${schema}-r${i}`,
    ts: Date.now() - 3_600_000 * (i + 1),
    user_id: 'user-1',
    provider: 'openai',
    model: 'gpt-4o',
    input_tokens: 100 + i,
    output_tokens: 10 + i,
    latency_ms: 200 + i,
  }));
  t.equal((await raw('ingest', { records })).results.length, 12);
  t.equal((await raw('record.update', { id: records[0]!.id, user_id: 'user-1', expected_version: 1, patch: { latency_ms: 5 } })).version, 2);
  await waitFor('the mirror has every record', async () =>
    Number((await admin.query(`SELECT count(*) AS n FROM "${schema}".usage_records`).catch(() => ({ rows: [{ n: 0 }] }))).rows[0].n) === 12,
  );
  // A row edited outside usage-tracker: a parked conflict, with its detection time.
  await admin.query(`UPDATE "${schema}".usage_records SET output_tokens = 777 WHERE id = $1`, [records[1]!.id]);
  await waitFor('the edit is parked as a conflict', async () => (await raw('admin.sync.conflicts', { backend: 'postgres' })).conflicts?.length === 1);
  const backup = await raw('admin.backup.create', { kind: 'full' });
  t.equal(backup.ok, true, 'a backup to list, verify and restore');

  const requests: [EndpointName, unknown][] = [
    ['record.get', { id: records[0]!.id, user_id: 'user-1' }],
    ['query.records', { user_id: 'user-1', limit: 5 }],
    ['query.aggregate', { group_by: ['day', 'provider'], metrics: ['count', 'cost', 'latency_p95'] }],
    ['query.anomalies', { user_id: 'user-1' }],
    ['query.similar', { like: { id: records[0]!.id, user_id: 'user-1' } }],
    ['admin.status', {}],
    ['admin.sync.status', {}],
    ['admin.sync.conflicts', { backend: 'postgres', open: false }],
    ['admin.sync.verify', { backend: 'postgres', repair: false }],
    ['admin.sync.resync', { backend: 'postgres', from_seq: 0 }],
    ['admin.backup.list', {}],
    ['admin.backup.verify', { backup_id: backup.backup_id }],
    ['admin.backup.restore', { backup_id: backup.backup_id, to_time: new Date().toISOString(), target_dir: join(restoreRoot, 'restored') }],
    ['admin.migration.status', {}],
    ['admin.migration.plan', {}],
    ['admin.migration.apply', { dry_run: true }],
    ['admin.migration.rollback', { dry_run: true }],
    ['admin.retention.run', { dry_run: true }],
    ['admin.retention.status', {}],
    ['admin.status', { unknown: 1 }],
  ];
  for (const [endpoint, body] of requests) {
    const reply = await raw(endpoint, body);
    t.same(offences(reply, endpoint, false, []), [], `${endpoint}: every time is an ISO string, nothing decodes to BigInt but the record's own fields`);
    t.doesNotThrow(() => JSON.stringify(withoutRecords(reply)), `${endpoint}: JSON.stringify takes the reply as msgpackr decoded it`);
  }
  const status = await raw('admin.status', {});
  t.match(status.started_at, ISO_MS, 'admin.status.started_at is an ISO string');
  t.ok(Date.parse(status.started_at) <= Date.now(), 'and a moment in the past');
  const retention = await raw('admin.retention.run', { dry_run: true });
  t.match(retention.now, ISO_MS, 'admin.retention.run.now is an ISO string');
  const conflict = (await raw('admin.sync.conflicts', { backend: 'postgres', open: false })).conflicts[0];
  t.match(conflict.detected_at, ISO_MS, 'a conflict says when it was found as an ISO string');
  t.match(conflict.remote_record.edited_outside_at, ISO_MS, 'and the row it found gives its times in the same form, not PostgreSQL\'s');
});
