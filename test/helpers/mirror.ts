// Helpers of the mirror tests: a PostgreSQL schema of the test's own behind
// a proxy it can cut, wait until the mirrors caught up or reached a state,
// read every local record, and compare the PostgreSQL mirror with them (the
// same ids, and for each the same version, seq and content, field by field).

import type pg from 'pg';
import type { Test } from 'tap';
import { uniqueName, type TestNode } from './node.js';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js';
import { WAIT_DEADLINE_MS, waitFor } from './wait.js';

/**
 * A schema named after `stem`, dropped when `t` ends, on the PostgreSQL at
 * `postgresUrl`, and a TCP proxy to it closed then too: `url` reaches the
 * database through the proxy, so the test can cut the mirror's link.
 */
export async function proxiedPostgres(t: Test, admin: pg.Pool, postgresUrl: string, stem: string): Promise<{ schema: string; proxy: TcpProxy; url: URL }> {
  const schema = uniqueName(stem);
  t.teardown(() => admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`));
  const target = new URL(postgresUrl);
  const proxy = await startTcpProxy(target.hostname, Number(target.port || 5432));
  t.teardown(() => proxy.close());
  const url = new URL(postgresUrl);
  url.host = `127.0.0.1:${proxy.port}`;
  return { schema, proxy, url };
}

export async function mirroredRows(pool: pg.Pool, schema: string): Promise<Map<string, any>> {
  const rows = (
    await pool.query(
      `SELECT id, user_id, shard, version, seq, provider, model, input_tokens, output_tokens, cost_usd, cost_source, status, metadata,
              (extract(epoch from ts) * 1000)::bigint AS ts_ms
       FROM "${schema}".usage_records`,
    )
  ).rows;
  return new Map(rows.map((row) => [row.id, row]));
}

/** JSON with sorted keys: jsonb keeps its own key order. */
function canonical(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  return JSON.stringify(value, (_key, inner) =>
    inner && typeof inner === 'object' && !Array.isArray(inner) ? Object.fromEntries(Object.entries(inner).sort(([a], [b]) => a.localeCompare(b))) : inner,
  );
}

/** Asserts the mirror holds exactly the local records; names the first few that differ. */
export function compareMirror(t: Test, local: Map<string, any>, mirror: Map<string, any>): void {
  t.equal(mirror.size, local.size, `mirror has ${local.size} rows`);
  let mismatches = 0;
  for (const [id, record] of local) {
    const row = mirror.get(id);
    const same =
      row &&
      row.version === record.version &&
      Number(row.seq) === record.seq &&
      row.user_id === record.user_id &&
      row.shard === record.shard &&
      Number(row.ts_ms) === record.ts &&
      Number(row.input_tokens) === record.input_tokens &&
      Number(row.output_tokens) === record.output_tokens &&
      (row.cost_usd ?? undefined) === record.cost_usd &&
      row.cost_source === record.cost_source &&
      row.status === record.status &&
      canonical(row.metadata) === canonical(record.metadata);
    if (!same && mismatches++ < 3) t.fail(`row ${id} differs: local ${JSON.stringify(record)} mirror ${JSON.stringify(row)}`);
  }
  t.equal(mismatches, 0, 'every row matches its local record');
}

/** Every local record of a node, through query.records, page by page. */
export async function localRecords(node: TestNode): Promise<Map<string, any>> {
  const out = new Map<string, any>();
  let cursor: string | undefined;
  do {
    const page = await node.call('query.records', { limit: 1000, ...(cursor ? { cursor } : {}) });
    for (const record of page.records) out.set(record.id, record);
    cursor = page.next_cursor;
  } while (cursor);
  return out;
}

/**
 * Waits until the node's `backends` mirrors all run in real time with no
 * lag and no shard error; returns their statuses. Past the deadline the
 * error shows the last status seen.
 */
export async function caughtUp(node: TestNode, backends = 1, deadlineMs = WAIT_DEADLINE_MS): Promise<any[]> {
  let last: unknown;
  return waitFor(
    `${backends} mirror(s) in real time with no lag and no shard error`,
    async () => {
      const reply = await node.call('admin.sync.status', {});
      last = reply;
      const all = reply.backends ?? [];
      return all.length === backends && all.every((b: any) => b.state === 'realtime' && b.shards.every((s: any) => s.lag_records === 0 && !s.error)) && all;
    },
    { deadlineMs, pollMs: 50, describe: () => last },
  );
}

/**
 * Waits until the status of the node's mirror `backend` satisfies `seen`
 * (described by `what`, e.g. "the PostgreSQL mirror retrying"); returns it.
 */
export async function mirrorReaches(node: TestNode, backend: 'postgres' | 'chroma', what: string, seen: (status: any) => boolean): Promise<any> {
  let last: unknown;
  return waitFor(
    what,
    async () => {
      const status = (await node.call('admin.sync.status', { backend })).backends?.[0];
      last = status;
      return status !== undefined && seen(status) && status;
    },
    { pollMs: 50, describe: () => last },
  );
}
