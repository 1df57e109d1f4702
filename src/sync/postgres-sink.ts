// The PostgreSQL mirror as a sync sink: one pool of its own (never shared
// with queries), the schema migrated at connect, and each batch applied in
// one transaction together with its shard's checkpoint, so that a replay
// after a crash is idempotent: either both the rows and the checkpoint
// moved, or neither did. A row is only overwritten by a newer version.

import pg from 'pg';
import { PATCHABLE_FIELDS, type StoredRecord } from '../../protocols/record.js';
import { migratePostgres, quoteIdent } from './postgres-schema.js';
import { ShardDigest } from './merkle.js';
import type { OutsideEdit, PatchableValues } from './conflicts.js';
import type { ConflictRow, ConflictSink } from './sink.js';

export interface PostgresSinkOptions {
  url: string;
  schema: string;
  poolMax: number;
  connectTimeoutMs: number;
  /** Bound on each statement, so a hung server becomes an error and a retry, not a stuck actor. */
  statementTimeoutMs: number;
}

const toTimestamp = (column: string) => `to_timestamp(${column} / 1000.0)`;

/** The columns written, in the order of the unnest arrays. */
const COLUMNS = [
  ['shard', 'integer'],
  ['id', 'text'],
  ['user_id', 'text'],
  ['ts', 'float8'],
  ['provider', 'text'],
  ['model', 'text'],
  ['input_tokens', 'bigint'],
  ['output_tokens', 'bigint'],
  ['cached_tokens', 'bigint'],
  ['cost_usd', 'float8'],
  ['cost_source', 'text'],
  ['latency_ms', 'float8'],
  ['status', 'text'],
  ['error_code', 'text'],
  ['session_id', 'text'],
  ['campaign_id', 'text'],
  ['operation', 'text'],
  ['metadata', 'jsonb'],
  ['version', 'integer'],
  ['seq', 'bigint'],
  ['ingested_at', 'float8'],
  ['updated_at', 'float8'],
  ['version_vector', 'jsonb'],
] as const;

/** The patchable fields as written, built in SQL from the same arrays: the base of a field-level merge. */
const SYNCED_RECORD = `jsonb_build_object(${PATCHABLE_FIELDS.map((field) => `'${field}', u.${field}`).join(', ')})`;

const TIMESTAMPS = new Set(['ts', 'ingested_at', 'updated_at']);

/** INSERT ... ON CONFLICT DO UPDATE of every column, then `tail` (more SET items and a WHERE). */
const upsertSql = (tail: string) => `
INSERT INTO usage_records (${COLUMNS.map(([name]) => name).join(', ')}, synced_record)
SELECT ${COLUMNS.map(([name]) => (TIMESTAMPS.has(name) ? toTimestamp(`u.${name}`) : `u.${name}`)).join(', ')}, ${SYNCED_RECORD}
FROM unnest(${COLUMNS.map(([, type], index) => `$${index + 1}::${type}[]`).join(', ')})
  AS u(${COLUMNS.map(([name]) => name).join(', ')})
ON CONFLICT (shard, id) DO UPDATE SET
  ${COLUMNS.filter(([name]) => name !== 'shard' && name !== 'id')
    .map(([name]) => `${name} = EXCLUDED.${name}`)
    .join(',\n  ')},
  synced_record = EXCLUDED.synced_record,
  synced_at = now()${tail}`;

/** A change from the feed: only over an older version, never over a row written outside usage-tracker. */
const UPSERT = upsertSql('\nWHERE usage_records.version < EXCLUDED.version AND usage_records.edited_outside_at IS NULL');

/** A repair writes the local version whatever the row holds (it may be newer by an outside edit), and makes the row ours again. */
const REPAIR = upsertSql(', edited_outside_at = NULL');

const OUTSIDE_EDITS = `
SELECT r.shard, r.id, r.user_id, r.synced_record, (extract(epoch from r.edited_outside_at) * 1000)::float8 AS edited_ms,
       to_jsonb(r) - 'synced_record' AS row
FROM usage_records r
WHERE r.edited_outside_at IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM sync_conflicts c WHERE c.shard = r.shard AND c.id = r.id AND c.resolved_at IS NULL)
ORDER BY r.edited_outside_at LIMIT $1`;

const CONFLICT_COLUMNS = `conflict_id, shard, id, local_version, local_record, remote_record, strategy,
  to_char(detected_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS detected_at,
  to_char(resolved_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS resolved_at, resolution`;

/** The patchable fields of a row (as to_jsonb gives them), with numbers as numbers. */
function patchableOf(row: Record<string, unknown>): PatchableValues {
  const fields: PatchableValues = {};
  for (const field of PATCHABLE_FIELDS) {
    const value = row[field];
    fields[field] = value === null || value === undefined ? undefined : ['input_tokens', 'output_tokens', 'cached_tokens'].includes(field) ? Number(value) : value;
  }
  return fields;
}

/** The row's timestamptz columns, which to_jsonb writes in PostgreSQL's own form (`...+00:00`, microseconds). */
const ROW_TIME_COLUMNS = ['ts', 'ingested_at', 'updated_at', 'synced_at', 'edited_outside_at'];

/** A row as a reply shows it: its times as every reply gives times, ISO 8601 UTC with milliseconds. */
function rowForReply(row: Record<string, unknown>): Record<string, unknown> {
  const out = { ...row };
  for (const column of ROW_TIME_COLUMNS) {
    const value = out[column];
    if (typeof value !== 'string') continue;
    const ms = Date.parse(value);
    if (Number.isFinite(ms)) out[column] = new Date(ms).toISOString();
  }
  return out;
}

const conflictOf = (row: Record<string, unknown>): ConflictRow => ({
  ...(row as unknown as ConflictRow),
  conflict_id: Number(row.conflict_id),
  remote_record: rowForReply(row.remote_record as Record<string, unknown>),
});

/** Marks a transaction's writes as usage-tracker's own, so the trigger of migration 0002 does not flag them. */
const AS_SYNC = "SET LOCAL usage_tracker.writer = 'sync'";

/** The anti-entropy tree of one shard, as src/sync/merkle.ts computes it locally. */
const DIGEST = `
SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day,
       get_byte(decode(md5(id), 'hex'), 0) AS bucket,
       count(*) AS n,
       bit_xor(('x' || substr(md5(id || ':' || version), 1, 16))::bit(64)::bigint)::text AS x
FROM usage_records WHERE shard = $1 GROUP BY 1, 2`;

const VERSIONS_IN = `
SELECT id, version FROM usage_records
WHERE shard = $1 AND ts >= $2::date AND ts < $2::date + 1 AND get_byte(decode(md5(id), 'hex'), 0) = ANY($3::int[])`;

const CHECKPOINT = `
INSERT INTO sync_checkpoints (shard, seq, updated_at) VALUES ($1, $2, now())
ON CONFLICT (shard) DO UPDATE SET seq = EXCLUDED.seq, updated_at = now()`;

/** What a row holds in a column: the record's field, or what the mirror derives from it. */
function columnValue(record: StoredRecord, source: Record<string, unknown>, name: string): unknown {
  if (name === 'version_vector') return JSON.stringify(record.vv ?? {});
  const value = source[name];
  if (value === undefined) return null;
  return name === 'metadata' ? JSON.stringify(value) : value;
}

function columnsOf(records: readonly StoredRecord[]): unknown[][] {
  const arrays: unknown[][] = COLUMNS.map(() => new Array(records.length));
  records.forEach((record, row) => {
    const source = record as unknown as Record<string, unknown>;
    COLUMNS.forEach(([name], column) => {
      arrays[column]![row] = columnValue(record, source, name);
    });
  });
  return arrays;
}

export class PostgresSink implements ConflictSink {
  readonly backend = 'postgres';
  private pool: pg.Pool | undefined;

  constructor(private readonly options: PostgresSinkOptions) {}

  async connect(): Promise<void> {
    await this.close();
    const pool = new pg.Pool({
      connectionString: this.options.url,
      max: this.options.poolMax,
      connectionTimeoutMillis: this.options.connectTimeoutMs,
      statement_timeout: this.options.statementTimeoutMs,
      options: `-c search_path=${quoteIdent(this.options.schema)}`,
      application_name: 'usage-tracker sync',
    });
    // An idle client that loses its server is dropped by the pool; without a listener it would crash the process.
    pool.on('error', () => undefined);
    try {
      const client = await pool.connect();
      try {
        await migratePostgres(client, this.options.schema);
      } finally {
        client.release();
      }
    } catch (error) {
      await pool.end().catch(() => undefined);
      throw error;
    }
    this.pool = pool;
  }

  private requirePool(): pg.Pool {
    if (!this.pool) throw new Error('PostgreSQL sink is not connected');
    return this.pool;
  }

  async checkpoints(): Promise<Map<number, number>> {
    const rows = (await this.requirePool().query<{ shard: number; seq: string }>('SELECT shard, seq FROM sync_checkpoints')).rows;
    return new Map(rows.map((row) => [row.shard, Number(row.seq)]));
  }

  async apply(shard: number, records: readonly StoredRecord[], nextSeq: number): Promise<void> {
    await this.inTransaction(async (client) => {
      await client.query(AS_SYNC);
      if (records.length > 0) await client.query(UPSERT, columnsOf(records));
      await client.query(CHECKPOINT, [shard, nextSeq]);
    });
  }

  async digest(shard: number): Promise<ShardDigest> {
    const rows = (await this.requirePool().query<{ day: string; bucket: number; n: string; x: string }>(DIGEST, [shard])).rows;
    return ShardDigest.fromWire(rows.map((row) => [row.day, row.bucket, Number(row.n), row.x] as const));
  }

  async versionsIn(shard: number, day: string, buckets: readonly number[]): Promise<Map<string, number>> {
    const rows = (await this.requirePool().query<{ id: string; version: number }>(VERSIONS_IN, [shard, day, buckets])).rows;
    return new Map(rows.map((row) => [row.id, row.version]));
  }

  async repair(shard: number, records: readonly StoredRecord[]): Promise<void> {
    if (records.length === 0) return;
    if (records.some((record) => record.shard !== shard)) throw new Error(`repair of shard ${shard} got a record of another shard`);
    await this.inTransaction(async (client) => {
      await client.query(AS_SYNC);
      await client.query(REPAIR, columnsOf(records));
    });
  }

  async remove(shard: number, ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.requirePool().query('DELETE FROM usage_records WHERE shard = $1 AND id = ANY($2::text[])', [shard, ids]);
  }

  async outsideEdits(limit: number): Promise<{ edit: OutsideEdit; row: Record<string, unknown> }[]> {
    const rows = (await this.requirePool().query<{ shard: number; id: string; user_id: string; synced_record: PatchableValues | null; edited_ms: number; row: Record<string, unknown> }>(OUTSIDE_EDITS, [limit])).rows;
    return rows.map((row) => ({
      edit: { shard: row.shard, id: row.id, user_id: row.user_id, fields: patchableOf(row.row), base: row.synced_record ? patchableOf(row.synced_record) : undefined, editedAt: Number(row.edited_ms) },
      row: row.row,
    }));
  }

  async recordConflict(shard: number, id: string, local: StoredRecord | undefined, row: Record<string, unknown>, strategy: string, resolution: string | undefined): Promise<number> {
    const inserted = await this.requirePool().query<{ conflict_id: string }>(
      `INSERT INTO sync_conflicts (shard, id, local_version, local_record, remote_record, strategy, resolved_at, resolution)
       VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $7::text IS NULL THEN NULL ELSE now() END, $7) RETURNING conflict_id`,
      [shard, id, local?.version ?? 0, local ? JSON.stringify(local) : null, JSON.stringify(row), strategy, resolution ?? null],
    );
    return Number(inserted.rows[0]!.conflict_id);
  }

  async conflicts(open: boolean, limit: number): Promise<ConflictRow[]> {
    const where = open ? 'WHERE resolved_at IS NULL' : '';
    return (await this.requirePool().query(`SELECT ${CONFLICT_COLUMNS} FROM sync_conflicts ${where} ORDER BY conflict_id DESC LIMIT $1`, [limit])).rows.map(conflictOf);
  }

  async conflict(conflictId: number): Promise<ConflictRow | undefined> {
    const rows = (await this.requirePool().query(`SELECT ${CONFLICT_COLUMNS} FROM sync_conflicts WHERE conflict_id = $1`, [conflictId])).rows;
    return rows[0] ? conflictOf(rows[0]) : undefined;
  }

  async markResolved(conflictId: number, resolution: string): Promise<void> {
    await this.requirePool().query('UPDATE sync_conflicts SET resolved_at = now(), resolution = $2 WHERE conflict_id = $1', [conflictId, resolution]);
  }

  /** Runs `work` in one transaction on a client of the pool. */
  async inTransaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.requirePool().connect();
    try {
      await client.query('BEGIN');
      const result = await work(client);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }

  async setCheckpoint(shard: number, seq: number): Promise<void> {
    await this.requirePool().query(CHECKPOINT, [shard, seq]);
  }

  async close(): Promise<void> {
    const pool = this.pool;
    this.pool = undefined;
    await pool?.end().catch(() => undefined);
  }
}
