// The PostgreSQL mirror as a sync sink: one pool of its own (never shared
// with queries), the schema migrated at connect, and each batch applied in
// one transaction together with its shard's checkpoint, so that a replay
// after a crash is idempotent: either both the rows and the checkpoint
// moved, or neither did. A row is only overwritten by a newer version.

import pg from 'pg';
import type { StoredRecord } from '../../protocols/record.js';
import { migratePostgres, quoteIdent } from './postgres-schema.js';
import { ShardDigest } from './merkle.js';
import type { VerifiableSink } from './sink.js';

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
] as const;

const TIMESTAMPS = new Set(['ts', 'ingested_at']);

const UPSERT = `
INSERT INTO usage_records (${COLUMNS.map(([name]) => name).join(', ')})
SELECT ${COLUMNS.map(([name]) => (TIMESTAMPS.has(name) ? toTimestamp(`u.${name}`) : `u.${name}`)).join(', ')}
FROM unnest(${COLUMNS.map(([, type], index) => `$${index + 1}::${type}[]`).join(', ')})
  AS u(${COLUMNS.map(([name]) => name).join(', ')})
ON CONFLICT (shard, id) DO UPDATE SET
  ${COLUMNS.filter(([name]) => name !== 'shard' && name !== 'id')
    .map(([name]) => `${name} = EXCLUDED.${name}`)
    .join(',\n  ')},
  synced_at = now()
WHERE usage_records.version < EXCLUDED.version`;

/** A repair writes the local version whatever the row holds (it may be newer by an outside edit). */
const REPAIR = UPSERT.replace('WHERE usage_records.version < EXCLUDED.version', '');

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

function columnsOf(records: readonly StoredRecord[]): unknown[][] {
  const arrays: unknown[][] = COLUMNS.map(() => new Array(records.length));
  records.forEach((record, row) => {
    const source = record as unknown as Record<string, unknown>;
    COLUMNS.forEach(([name], column) => {
      const value = source[name];
      arrays[column]![row] = value === undefined ? null : name === 'metadata' ? JSON.stringify(value) : value;
    });
  });
  return arrays;
}

export class PostgresSink implements VerifiableSink {
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
    const client = await this.requirePool().connect();
    try {
      await client.query('BEGIN');
      if (records.length > 0) await client.query(UPSERT, columnsOf(records));
      await client.query(CHECKPOINT, [shard, nextSeq]);
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
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
    await this.requirePool().query(REPAIR, columnsOf(records));
  }

  async remove(shard: number, ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.requirePool().query('DELETE FROM usage_records WHERE shard = $1 AND id = ANY($2::text[])', [shard, ids]);
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
