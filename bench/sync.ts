// Benches of the PostgreSQL mirror (issue 4, DESIGN §9), each beside a
// baseline measured in the same run:
// - catch-up: a node restarted with the mirror on over N records already
//   stored, until PostgreSQL holds them all, vs a raw `COPY ... FROM STDIN`
//   of the same rows into a table of the same columns;
// - lag: records ingested at 10k/s while the mirror runs in real-time mode;
//   each row's lag is `synced_at - ingested_at` (PostgreSQL's now() of the
//   writing transaction minus the node's ingest time; one machine, one clock);
// - Chroma: the mirror sink's rate beside the raw chromadb client adding the
//   same vectors and metadata to three collections (the sink also reads
//   stored versions first and writes a checkpoint).

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { ChromaClient } from 'chromadb';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { decode, encode } from '../protocols/codec.js';
import { PATCHABLE_FIELDS, type StoredRecord } from '../protocols/record.js';
import { subjects } from '../protocols/subjects.js';
import { loadConfig } from '../src/config/load.js';
import { createGenerator } from '../src/demo/generate.js';
import { silentLogger } from '../src/log.js';
import { chromaId, chromaMetadata, ChromaSink } from '../src/sync/chroma-sink.js';
import { featuresOf } from '../src/sync/features.js';
import { EmbeddedTransport } from '../src/transport/embedded.js';
import { startNode, type UsageNode } from '../supervisors/node.js';
import { load } from './load.js';
import type { Measurement, Row } from './measure.js';

const DAY_MS = 86_400_000;

export interface SyncBenchOptions {
  postgresUrl: string;
  records: number;
  durationMs: number;
  log: (line: string) => void;
}

const none: Measurement = { requests: 0, errors: 0, seconds: 0, perSecond: 0, p50Ms: Number.NaN, p95Ms: Number.NaN, p99Ms: Number.NaN };

function nodeEnv(dataDir: string, prefix: string): Record<string, string> {
  return {
    USAGE_TRACKER_DATA_DIR: dataDir,
    // Backups and the WAL archive (on by default) inside the bench's own directory, removed with it, never in the working directory.
    USAGE_TRACKER_BACKUP_DIR: join(dataDir, 'bench-backups'),
    USAGE_TRACKER_SUBJECT_PREFIX: prefix,
    USAGE_TRACKER_NODE_ID: 'bench',
    USAGE_TRACKER_TRANSPORT: 'embedded',
    USAGE_TRACKER_NATS_URL: 'nats://127.0.0.1:1',
    USAGE_TRACKER_LOG_LEVEL: 'silent',
  };
}

async function startBenchNode(dataDir: string, prefix: string, yaml: string): Promise<{ node: UsageNode; embedded: EmbeddedTransport }> {
  const embedded = new EmbeddedTransport(64 * 1024 * 1024);
  const node = await startNode(loadConfig({ text: yaml, env: nodeEnv(dataDir, prefix) }), { log: silentLogger, embedded });
  return { node, embedded };
}

async function waitCaughtUp(embedded: EmbeddedTransport, prefix: string, timeoutMs: number): Promise<void> {
  const subject = subjects(prefix).endpoint('admin.sync.status');
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const reply = decode((await embedded.request(subject, encode({}), { timeoutMs: 30_000 })).data) as {
      backends: { state: string; shards: { lag_records: number }[] }[];
    };
    const backend = reply.backends[0]!;
    if (backend.state === 'realtime' && backend.shards.every((shard) => shard.lag_records === 0)) return;
    if (performance.now() > deadline) throw new Error(`sync did not catch up within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const pgYaml = (url: string, schema: string) =>
  `limits:\n  mailbox_capacity: 65536\n  query_timeout_ms: 30000\nbackends:\n  postgres:\n    url: ${url}\n    schema: ${schema}\n`;

/** CSV of a record's mirrored columns, as COPY reads it. */
function csvLine(record: StoredRecord): string {
  const text = (value: unknown) => (value === undefined || value === null ? '' : `"${String(value).replace(/"/g, '""')}"`);
  const time = (ms: number) => new Date(ms).toISOString();
  return [
    record.shard, text(record.id), text(record.user_id), time(record.ts), text(record.provider), text(record.model), record.input_tokens, record.output_tokens,
    record.cached_tokens ?? '', record.cost_usd ?? '', text(record.cost_source), record.latency_ms ?? '', text(record.status), text(record.error_code),
    text(record.session_id), text(record.campaign_id), text(record.operation), record.metadata ? text(JSON.stringify(record.metadata)) : '',
    record.version, record.seq, time(record.ingested_at), time(record.updated_at), text(JSON.stringify(record.vv)),
    text(JSON.stringify(Object.fromEntries(PATCHABLE_FIELDS.map((field) => [field, record[field] ?? null])))),
  ].join(',');
}

async function copyBaseline(pool: pg.Pool, schema: string, records: StoredRecord[]): Promise<number> {
  const client = await pool.connect();
  try {
    await client.query(`CREATE TABLE "${schema}".copy_baseline (LIKE "${schema}".usage_records INCLUDING ALL)`);
    const started = performance.now();
    const columns =
      'shard, id, user_id, ts, provider, model, input_tokens, output_tokens, cached_tokens, cost_usd, cost_source, latency_ms, status, error_code, session_id, campaign_id, operation, metadata, version, seq, ingested_at, updated_at, version_vector, synced_record';
    const stream = client.query(copyFrom(`COPY "${schema}".copy_baseline (${columns}) FROM STDIN WITH (FORMAT csv)`));
    await pipeline(
      Readable.from(
        (function* () {
          for (let start = 0; start < records.length; start += 1000) yield records.slice(start, start + 1000).map(csvLine).join('\n') + '\n';
        })(),
      ),
      stream,
    );
    return (performance.now() - started) / 1000;
  } finally {
    client.release();
  }
}

export async function syncBench(options: SyncBenchOptions): Promise<Row[]> {
  const rows: Row[] = [];
  const pool = new pg.Pool({ connectionString: options.postgresUrl, max: 2 });
  const schema = `bench_sync_${process.pid}`;
  const dataDir = mkdtempSync(join(tmpdir(), 'usage-tracker-bench-sync-'));
  const prefix = `benchsync${process.pid}`;
  try {
    options.log(`sync: storing ${options.records.toLocaleString('en-US')} records, then mirroring them into PostgreSQL`);
    const first = await startBenchNode(dataDir, prefix, 'limits:\n  mailbox_capacity: 65536\n');
    await load({ embedded: first.embedded, prefix }, options.records, 10_000, 30, 5, options.log);
    await first.node.stop();

    const started = performance.now();
    const mirrored = await startBenchNode(dataDir, prefix, pgYaml(options.postgresUrl, schema));
    await waitCaughtUp(mirrored.embedded, prefix, 600_000);
    const syncSeconds = (performance.now() - started) / 1000;
    const count = Number((await pool.query(`SELECT count(*) AS n FROM "${schema}".usage_records`)).rows[0].n);
    if (count !== options.records) throw new Error(`the mirror holds ${count} rows, not ${options.records}`);
    const stored = (await pool.query(`SELECT * FROM "${schema}".usage_records`)).rows.map(
      (row) =>
        ({
          ...row,
          ts: row.ts.getTime(),
          ingested_at: row.ingested_at.getTime(),
          input_tokens: Number(row.input_tokens),
          output_tokens: Number(row.output_tokens),
          cached_tokens: row.cached_tokens === null ? undefined : Number(row.cached_tokens),
          seq: Number(row.seq),
          updated_at: row.updated_at.getTime(),
          vv: row.version_vector,
        }) as StoredRecord,
    );
    const copySeconds = await copyBaseline(pool, schema, stored);
    const copyRate: Measurement = { ...none, perSecond: options.records / copySeconds, seconds: copySeconds };
    const syncRate: Measurement = { ...none, perSecond: options.records / syncSeconds, seconds: syncSeconds };
    rows.push({
      group: 'sync',
      name: `PostgreSQL: raw COPY of the same ${options.records.toLocaleString('en-US')} rows`,
      concurrency: 1,
      measurement: copyRate,
      value: `${Math.round(copyRate.perSecond).toLocaleString('en-US')} rows/s`,
    });
    rows.push({
      group: 'sync',
      name: `PostgreSQL mirror catching up ${options.records.toLocaleString('en-US')} records (node start to caught up)`,
      concurrency: 1,
      measurement: syncRate,
      baseline: copyRate,
      value: `${Math.round(syncRate.perSecond).toLocaleString('en-US')} rows/s`,
      target: '>= 0.6',
    });

    options.log('sync: lag while ingesting 10k records/s');
    const generator = createGenerator({ seed: 11, users: 10_000, fromMs: Date.now() - DAY_MS, days: 1, idPrefix: `lag${process.pid}` });
    const subject = subjects(prefix).endpoint('ingest');
    const ingestStarted = Date.now();
    let sent = 0;
    const inFlight: Promise<unknown>[] = [];
    const ticks = Math.round(options.durationMs / 10);
    for (let tick = 0; tick < ticks; tick++) {
      const due = ingestStarted + tick * 10;
      if (due > Date.now()) await new Promise((resolve) => setTimeout(resolve, due - Date.now()));
      const records = Array.from({ length: 100 }, (_, i) => generator.recordAt(sent + i));
      sent += records.length;
      inFlight.push(mirrored.embedded.request(subject, encode({ records }), { timeoutMs: 30_000 }));
    }
    await Promise.all(inFlight);
    const offeredPerSecond = sent / ((Date.now() - ingestStarted) / 1000);
    await waitCaughtUp(mirrored.embedded, prefix, 120_000);
    const lags = (
      await pool.query(
        `SELECT extract(epoch from (synced_at - ingested_at)) * 1000 AS lag_ms FROM "${schema}".usage_records WHERE id LIKE $1 ORDER BY 1`,
        [`lag${process.pid}%`],
      )
    ).rows.map((row) => Number(row.lag_ms));
    const at = (q: number) => lags[Math.min(lags.length - 1, Math.floor(q * lags.length))] ?? Number.NaN;
    rows.push({
      group: 'sync',
      name: `PostgreSQL mirror lag while ingesting ${Math.round(offeredPerSecond).toLocaleString('en-US')} records/s (${lags.length.toLocaleString('en-US')} rows)`,
      concurrency: '10k/s',
      measurement: { ...none, requests: lags.length, p50Ms: at(0.5), p95Ms: at(0.95), p99Ms: at(0.99) },
      value: `p99 ${at(0.99).toFixed(0)} ms`,
      target: 'p99 < 1,000 ms',
    });
    await mirrored.node.stop();
  } finally {
    await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
    await pool.end();
    rmSync(dataDir, { recursive: true, force: true });
  }
  return rows;
}

/**
 * A Chroma server of the bench's own, from the chromadb package's `chroma
 * run` (as test/helpers/chroma.ts starts one for the tests; the bench
 * cannot import test code from dist).
 */
async function startChromaServer(): Promise<{ url: string; stop: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'usage-tracker-bench-chroma-'));
  const port = await new Promise<number>((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address() as AddressInfo;
      probe.close(() => resolve(address.port));
    });
  });
  const child = spawn(join(process.cwd(), 'node_modules', '.bin', 'chroma'), ['run', '--path', dir, '--port', String(port)], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      if ((await fetch(`${url}/api/v2/heartbeat`)).ok) break;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`Chroma did not start on ${url} within 60 s`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return {
    url,
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The Chroma sink's upsert rate beside the raw client adding the same vectors and metadata to three collections. */
export async function chromaBench(options: { records: number; log: (line: string) => void }): Promise<Row[]> {
  options.log(`sync: Chroma, ${options.records.toLocaleString('en-US')} records through the sink and through the raw client`);
  const server = await startChromaServer();
  try {
    const generator = createGenerator({ seed: 13, users: 1000, fromMs: Date.now() - 7 * DAY_MS, days: 7, idPrefix: 'chroma' });
    const records: StoredRecord[] = Array.from({ length: options.records }, (_, i) => ({
      ...generator.recordAt(i),
      version: 1,
      shard: i % 4,
      seq: Math.floor(i / 4) + 1,
      ingested_at: Date.now(),
      cost_source: 'price_table',
    })) as StoredRecord[];
    const batch = 1000;

    const { hostname, port } = new URL(server.url);
    const client = new ChromaClient({ host: hostname, port: Number(port) });
    const raw = await Promise.all(
      ['raw_usage_patterns', 'raw_cost_optimization', 'raw_performance_metrics'].map((name) =>
        client.createCollection({ name, configuration: { hnsw: { space: 'l2' } }, embeddingFunction: null }),
      ),
    );
    let started = performance.now();
    for (let start = 0; start < records.length; start += batch) {
      const part = records.slice(start, start + batch);
      const ids = part.map((record) => chromaId(record.shard, record.id));
      const embeddings = part.map(featuresOf);
      const metadatas = part.map(chromaMetadata);
      for (const collection of raw) await collection.add({ ids, embeddings, metadatas });
    }
    const rawRate: Measurement = { ...none, perSecond: records.length / ((performance.now() - started) / 1000) };

    const sink = new ChromaSink({ url: server.url, collectionPrefix: 'bench_' });
    await sink.connect();
    started = performance.now();
    for (let shard = 0; shard < 4; shard++) {
      const own = records.filter((record) => record.shard === shard);
      for (let start = 0; start < own.length; start += batch) {
        const part = own.slice(start, start + batch);
        await sink.apply(shard, part, part.at(-1)!.seq);
      }
    }
    const sinkRate: Measurement = { ...none, perSecond: records.length / ((performance.now() - started) / 1000) };
    await sink.close();
    return [
      {
        group: 'sync',
        name: `Chroma: raw client adding the same ${options.records.toLocaleString('en-US')} vectors to 3 collections`,
        concurrency: 1,
        measurement: rawRate,
        value: `${Math.round(rawRate.perSecond).toLocaleString('en-US')} records/s`,
      },
      {
        group: 'sync',
        name: 'Chroma mirror sink: version check, upsert to 3 collections, checkpoint',
        concurrency: 1,
        measurement: sinkRate,
        baseline: rawRate,
        value: `${Math.round(sinkRate.perSecond).toLocaleString('en-US')} records/s`,
      },
    ];
  } finally {
    await server.stop();
  }
}
