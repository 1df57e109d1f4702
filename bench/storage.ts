// Benches of ingest and storage (issue 3, DESIGN §9), each beside a baseline
// measured in the same run:
// - single-record durable ingest over NATS vs the raw NATS echo of the same
//   payload, and vs one INSERT per record into PostgreSQL (what a user would
//   otherwise pick); p99 at 10k req/s offered; the node and the echo each run
//   in a child process, apart from the load generator;
// - batched ingest, 1,000 records a request;
// - a user's 30-day aggregate over the dataset (default 5M records, 10k
//   users, 90 days) at 5k queries/s offered, and the node's RSS;
// - restart with 1M records in the WAL: time until the node serves again.

import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { connect } from '@nats-io/transport-node';
import pg from 'pg';
import { decode, encode } from '../protocols/codec.js';
import { subjects } from '../protocols/subjects.js';
import { loadConfig } from '../src/config/load.js';
import { createGenerator } from '../src/demo/generate.js';
import { silentLogger } from '../src/log.js';
import { EmbeddedTransport } from '../src/transport/embedded.js';
import { startNode, type UsageNode } from '../supervisors/node.js';
import { benchEnv } from './env.js';
import { load } from './load.js';
import { closedLoop, openLoop, type Measurement, type Row } from './measure.js';

const DAY_MS = 86_400_000;
const execFileAsync = promisify(execFile);

export interface StorageBenchOptions {
  natsUrl: string;
  postgresUrl: string;
  durationMs: number;
  datasetRecords: number;
  datasetUsers: number;
  restartRecords: number;
  /** Which parts run: ingest, dataset, restart. */
  groups: ReadonlySet<string>;
  log: (line: string) => void;
}

interface BenchNode {
  node: UsageNode;
  embedded: EmbeddedTransport;
  prefix: string;
  dataDir: string;
  yaml: string;
  env: Record<string, string>;
}

async function benchNode(natsUrl: string, yaml: string, reuse?: { dataDir: string; prefix: string }): Promise<BenchNode> {
  const dataDir = reuse?.dataDir ?? mkdtempSync(join(tmpdir(), 'usage-tracker-bench-'));
  const prefix = reuse?.prefix ?? `bench${process.pid}x${Date.now().toString(36)}`;
  const env = benchEnv(dataDir, prefix, natsUrl);
  const embedded = new EmbeddedTransport(64 * 1024 * 1024);
  const node = await startNode(loadConfig({ text: yaml, env }), { log: silentLogger, embedded });
  return { node, embedded, prefix, dataDir, yaml, env };
}

const rowOf = (group: string, name: string, load: string | number, measurement: Measurement, extra: Partial<Row> = {}): Row => ({
  group,
  name,
  concurrency: load,
  measurement,
  ...extra,
});

const none: Measurement = { requests: 0, errors: 0, seconds: 0, perSecond: 0, p50Ms: Number.NaN, p95Ms: Number.NaN, p99Ms: Number.NaN };

export async function storageBench(options: StorageBenchOptions): Promise<Row[]> {
  const rows: Row[] = [];
  if (options.groups.has('ingest')) rows.push(...(await ingestBench(options)));
  if (options.groups.has('dataset')) rows.push(...(await datasetBench(options)));
  if (options.groups.has('restart')) rows.push(...(await restartBench(options)));
  return rows;
}

/**
 * A server in a process of its own (serve-child.ts), stopped with SIGTERM.
 * `report` is the JSON line it printed before `ready`, if any.
 */
async function serveChild(args: string[], nodeFlags: string[] = []): Promise<{ report: unknown; stop: () => Promise<void> }> {
  const script = join(dirname(fileURLToPath(import.meta.url)), 'serve-child.js');
  // BENCH_CHILD_FLAGS passes node flags to the servers, such as `--cpu-prof` to see where their time goes.
  const flags = [...nodeFlags, ...(process.env.BENCH_CHILD_FLAGS ?? '').split(' ').filter(Boolean)];
  const child = spawn(process.execPath, [...flags, script, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let output = '';
  const report = await new Promise<unknown>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`bench server ${args[0]} exited with ${code} before it was ready`)));
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const lines = output.split('\n');
      if (!lines.includes('ready')) return;
      const json = lines.find((line) => line.startsWith('{'));
      resolve(json === undefined ? undefined : JSON.parse(json));
    });
  });
  return {
    report,
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

async function ingestBench(options: StorageBenchOptions): Promise<Row[]> {
  const rows: Row[] = [];
  const run = (call: () => Promise<unknown>, concurrency: number) => closedLoop(call, { concurrency, warmupMs: 500, durationMs: options.durationMs });
  const yaml = process.env.BENCH_YAML ?? 'limits:\n  payload_bytes_max: 4194304\n  mailbox_capacity: 65536\n';
  // The node and the echo each run in a process of their own, as a server does beside its client.
  const dataDir = mkdtempSync(join(tmpdir(), 'usage-tracker-bench-'));
  const prefix = `bench${process.pid}x${Date.now().toString(36)}`;
  const node = await serveChild(['node', dataDir, prefix, options.natsUrl, yaml]);
  const echoServer = await serveChild(['echo', options.natsUrl, `${prefix}.echo`]);
  const names = subjects(prefix);
  const client = await connect({ servers: options.natsUrl, name: 'bench-ingest-client' });
  const generator = createGenerator({ seed: 7, users: 10_000, fromMs: Date.now() - DAY_MS, days: 1, idPrefix: `single-${Date.now()}` });
  let next = 0;
  const single = () => encode(generator.recordAt(next++));
  const ingestSubject = names.endpoint('ingest');
  const ingestOne = async () => {
    const reply = decode((await client.request(ingestSubject, single(), { timeout: 10_000 })).data) as { ok: boolean; results?: { status: string }[] };
    if (!reply.ok || reply.results?.[0]?.status !== 'stored') throw new Error('not stored');
  };

  options.log('storage: single-record ingest vs raw echo and PostgreSQL');
  const echo = await run(() => client.request(`${prefix}.echo`, single(), { timeout: 10_000 }), 64);
  rows.push(rowOf('ingest', 'raw NATS echo of one record', 64, echo));
  const ingest = await run(ingestOne, 64);
  rows.push(rowOf('ingest', 'ingest 1 record/request, durable ack', 64, ingest, { baseline: echo, target: '>= 0.6' }));
  const insert = await postgresInserts(options.postgresUrl, options.durationMs);
  rows.push(rowOf('ingest', 'PostgreSQL: one INSERT per record', 64, insert));
  rows.push(rowOf('ingest', 'ingest 1 record/request vs INSERT', 64, ingest, { baseline: insert, target: '>= 4' }));
  const offered = await openLoop(ingestOne, { ratePerSecond: 10_000, durationMs: options.durationMs });
  rows.push(rowOf('ingest', `ingest at 10k req/s offered (${Math.round(offered.offeredPerSecond)}/s sent)`, '10k/s', offered, { target: 'p99 < 10 ms' }));

  options.log('storage: batched ingest');
  const batchSubject = names.endpoint('ingest');
  const batchOf = () => encode({ records: Array.from({ length: 1000 }, () => generator.recordAt(next++)) });
  const batches = await run(async () => {
    const reply = decode((await client.request(batchSubject, batchOf(), { timeout: 30_000 })).data) as { ok: boolean };
    if (!reply.ok) throw new Error('batch refused');
  }, 4);
  rows.push(
    rowOf('ingest', 'ingest 1,000 records/request, durable', 4, batches, {
      value: `${Math.round(batches.perSecond * 1000).toLocaleString('en-US')} records/s`,
      target: '>= 200,000 records/s',
    }),
  );
  await client.drain();
  await Promise.all([node.stop(), echoServer.stop()]);
  rmSync(dataDir, { recursive: true, force: true });
  return rows;
}

async function postgresInserts(url: string, durationMs: number): Promise<Measurement> {
  const pool = new pg.Pool({ connectionString: url, max: 16 });
  const table = `bench_usage_${process.pid}`;
  try {
    await pool.query(
      `CREATE TABLE ${table} (id text PRIMARY KEY, ts bigint NOT NULL, user_id text NOT NULL, provider text NOT NULL, model text NOT NULL,
        input_tokens integer NOT NULL, output_tokens integer NOT NULL, cost_usd double precision, latency_ms double precision, status text NOT NULL)`,
    );
    const generator = createGenerator({ seed: 9, users: 10_000, fromMs: Date.now() - DAY_MS, days: 1 });
    let next = 0;
    return await closedLoop(
      async () => {
        const r = generator.recordAt(next++);
        await pool.query(`INSERT INTO ${table} VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)`, [
          r.id, r.ts, r.user_id, r.provider, r.model, r.input_tokens, r.output_tokens, r.cost_usd ?? null, r.latency_ms ?? null, r.status,
        ]);
      },
      { concurrency: 64, warmupMs: 500, durationMs },
    );
  } catch (error) {
    process.stderr.write(`bench: PostgreSQL baseline failed: ${(error as Error).message}\n`);
    return none;
  } finally {
    await pool.query(`DROP TABLE IF EXISTS ${table}`).catch(() => undefined);
    await pool.end();
  }
}

async function datasetBench(options: StorageBenchOptions): Promise<Row[]> {
  const rows: Row[] = [];
  const total = options.datasetRecords;
  const dataDir = mkdtempSync(join(tmpdir(), 'usage-tracker-bench-'));
  const prefix = `bench${process.pid}x${Date.now().toString(36)}`;
  options.log(`storage: loading ${total.toLocaleString('en-US')} records (${options.datasetUsers} users, 90 days) into a node process`);
  // The node loads the dataset itself (embedded transport), seals it, and reports its own RSS.
  const node = await serveChild(
    ['dataset', dataDir, prefix, options.natsUrl, 'limits:\n  mailbox_capacity: 65536\n  query_timeout_ms: 30000\n', String(total), String(options.datasetUsers)],
    ['--expose-gc'],
  );
  const { load_seconds: seconds, rss_mb: rssMb } = node.report as { load_seconds: number; rss_mb: number };
  rows.push(
    rowOf('dataset', `load ${total.toLocaleString('en-US')} records (embedded, batches of 1,000)`, 8, { ...none, perSecond: total / seconds }, {
      value: `${Math.round(total / seconds).toLocaleString('en-US')} records/s`,
    }),
  );
  rows.push(rowOf('dataset', `RSS of the node process with ${total.toLocaleString('en-US')} records`, '-', none, { value: `${Math.round(rssMb)} MB`, target: '< 1,536 MB' }));

  const client = await connect({ servers: options.natsUrl, name: 'bench-query-client' });
  const subject = subjects(prefix).endpoint('query.aggregate');
  const now = Date.now();
  let turn = 0;
  const query = async () => {
    const user = `user-${(turn++ * 7919) % options.datasetUsers}`;
    const body = { user_id: user, from: now - 30 * DAY_MS, group_by: ['provider', 'model'], metrics: ['count', 'tokens', 'cost', 'latency_p50', 'latency_p95'] };
    const reply = decode((await client.request(subject, encode(body), { timeout: 30_000 })).data) as { ok: boolean };
    if (!reply.ok) throw new Error('query failed');
  };
  for (let i = 0; i < 200; i++) await query();
  const capacity = await closedLoop(query, { concurrency: 16, warmupMs: 500, durationMs: options.durationMs });
  rows.push(rowOf('dataset', 'aggregate, one user, 30 days, closed loop (what one node sustains)', 16, capacity));
  const offered = await openLoop(query, { ratePerSecond: 5000, durationMs: options.durationMs });
  rows.push(
    rowOf('dataset', `aggregate, one user, 30 days (${Math.round(offered.offeredPerSecond)}/s sent)`, '5k q/s', offered, { target: 'p95 < 10 ms' }),
  );
  await client.drain();
  await node.stop();
  rmSync(dataDir, { recursive: true, force: true });
  return rows;
}

async function restartBench(options: StorageBenchOptions): Promise<Row[]> {
  const total = options.restartRecords;
  const yaml = 'storage:\n  memtable_records_max: 10000000\n  seal_interval_s: 86400\nlimits:\n  mailbox_capacity: 65536\n';
  const first = await benchNode(options.natsUrl, yaml);
  options.log(`storage: writing ${total.toLocaleString('en-US')} records to the WAL, then restarting in a fresh process`);
  await load(first, total, 10_000, 1, 2, options.log);
  await first.node.stop();
  // A real restart is a new process: measure in one, not in this heap full of the first node's garbage.
  const child = join(dirname(fileURLToPath(import.meta.url)), 'restart-child.js');
  const { stdout } = await execFileAsync(process.execPath, [child, first.dataDir, first.prefix, options.natsUrl, yaml], { maxBuffer: 1 << 20 });
  const { elapsedMs, count } = JSON.parse(stdout.trim().split('\n').at(-1)!) as { elapsedMs: number; count: number };
  rmSync(first.dataDir, { recursive: true, force: true });
  return [
    rowOf('restart', `restart with ${total.toLocaleString('en-US')} records in the WAL, new process until serving (${count.toLocaleString('en-US')} found)`, '-', none, {
      value: `${(elapsedMs / 1000).toFixed(2)} s`,
      target: '< 5 s',
    }),
  ];
}
