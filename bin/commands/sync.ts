// `usage-tracker sync status` shows each mirror's state and lag per shard;
// `usage-tracker sync resync` replays a mirror from a seq (0: from scratch)
// and, unless --no-wait, follows it with a progress bar until it has
// caught up again.

import { Presets, SingleBar } from 'cli-progress';
import { renderTable } from '../../src/text-table.js';
import { CliError, parseTimeout, withClient, type ConnectionOptions, type NodeClient } from '../client.js';

interface ShardStatus {
  shard: number;
  checkpoint: number;
  head: number;
  lag_records: number;
  lag_seconds: number;
  error?: string;
}

export interface BackendStatus {
  backend: string;
  state: string;
  applied_records: number;
  last_error?: string;
  last_error_at?: string;
  shards: ShardStatus[];
}

export interface SyncStatusOptions extends ConnectionOptions {
  backend?: string;
  timeout: string;
  json?: boolean;
}

export function renderSyncStatus(backends: readonly BackendStatus[]): string {
  if (backends.length === 0) return 'no backend is configured on this node (backends.postgres / backends.chroma in cluster.yml)\n';
  return backends
    .map((backend) => {
      const lag = backend.shards.reduce((sum, shard) => sum + shard.lag_records, 0);
      const seconds = Math.max(0, ...backend.shards.map((shard) => shard.lag_seconds));
      const head =
        `${backend.backend}: ${backend.state}, ${lag.toLocaleString('en-US')} records behind (${seconds.toFixed(1)} s), ` +
        `${backend.applied_records.toLocaleString('en-US')} applied since start` +
        (backend.last_error ? `\n  last error${backend.last_error_at ? ` at ${backend.last_error_at}` : ''}: ${backend.last_error}` : '');
      const table = renderTable(
        ['shard', 'checkpoint', 'head', 'lag records', 'lag s', 'error'],
        backend.shards.map((shard) => [
          String(shard.shard),
          String(shard.checkpoint),
          String(shard.head),
          String(shard.lag_records),
          shard.lag_seconds.toFixed(1),
          shard.error ?? '',
        ]),
        ['right', 'right', 'right', 'right', 'right', 'left'],
      );
      return `${head}\n\n${table}\n`;
    })
    .join('\n');
}

async function statusOf(client: NodeClient, backend: string | undefined, timeoutMs: number): Promise<BackendStatus[]> {
  const reply = await client.expect<{ backends: BackendStatus[] }>('admin.sync.status', backend ? { backend } : {}, timeoutMs);
  return reply.backends;
}

export async function syncStatus(options: SyncStatusOptions): Promise<string> {
  const timeoutMs = parseTimeout(options.timeout);
  const backends = await withClient(options, timeoutMs, (client) => statusOf(client, options.backend, timeoutMs));
  return options.json ? `${JSON.stringify(backends, null, 2)}\n` : renderSyncStatus(backends);
}

export interface ResyncOptions extends ConnectionOptions {
  fromSeq: string;
  shards?: string;
  wait: boolean;
  quiet?: boolean;
  timeout: string;
}

function parseShards(text: string | undefined): number[] | undefined {
  if (text === undefined) return undefined;
  const shards = text.split(',').map((part) => Number(part.trim()));
  if (shards.some((shard) => !Number.isInteger(shard) || shard < 0)) throw new CliError(`--shards must be comma-separated shard numbers, got ${text}`);
  return shards;
}

export async function resync(backend: string, options: ResyncOptions): Promise<string> {
  const timeoutMs = parseTimeout(options.timeout);
  const fromSeq = Number(options.fromSeq);
  if (!Number.isInteger(fromSeq) || fromSeq < 0) throw new CliError(`--from-seq must be a whole number, 0 or more, got ${options.fromSeq}`);
  const shards = parseShards(options.shards);
  return withClient(options, timeoutMs, async (client) => {
    await client.expect('admin.sync.resync', { backend, from_seq: fromSeq, ...(shards ? { shards } : {}) }, timeoutMs);
    if (!options.wait) return `${backend}: replaying from seq ${fromSeq}; follow it with usage-tracker sync status\n`;
    const bar = options.quiet || !process.stderr.isTTY ? undefined : new SingleBar({ format: `${backend} resync [{bar}] {value}/{total} records replayed, {state}`, hideCursor: true }, Presets.shades_classic);
    let started = false;
    for (;;) {
      const [status] = await statusOf(client, backend, timeoutMs);
      if (!status) throw new CliError(`${backend} disappeared from sync.status`);
      const lag = status.shards.reduce((sum, shard) => sum + shard.lag_records, 0);
      if (bar && !started) {
        bar.start(Math.max(lag, 1), 0, { state: status.state });
        started = true;
      }
      bar?.setTotal(Math.max(bar.getTotal(), lag, 1));
      bar?.update(bar.getTotal() - lag, { state: status.state });
      if (lag === 0 && status.state === 'realtime') {
        bar?.stop();
        return `${backend}: caught up; ${status.applied_records.toLocaleString('en-US')} records applied since the node started\n`;
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  });
}

export interface VerifyOptions extends ConnectionOptions {
  repair: boolean;
  shards?: string;
  quiet?: boolean;
  json?: boolean;
  timeout: string;
}

interface ShardVerify {
  shard: number;
  days_equal: number;
  days_differ: number;
  buckets_differ: number;
  missing: number;
  stale: number;
  extra: number;
}

/**
 * Compares a mirror with local data shard by shard (one request each, so a
 * progress bar can follow), repairing what differs unless --no-repair.
 */
export async function verify(backend: string, options: VerifyOptions): Promise<string> {
  const timeoutMs = parseTimeout(options.timeout);
  return withClient(options, timeoutMs, async (client) => {
    const [status] = await client.expect<{ backends: BackendStatus[] }>('admin.sync.status', { backend }, timeoutMs).then((reply) => reply.backends);
    if (!status) throw new CliError(`${backend} is not configured on the node that answered`);
    const shards = parseShards(options.shards) ?? status.shards.map((shard) => shard.shard);
    const bar = options.quiet || options.json || !process.stderr.isTTY ? undefined : new SingleBar({ format: `${backend} verify [{bar}] {value}/{total} shards`, hideCursor: true }, Presets.shades_classic);
    bar?.start(shards.length, 0);
    const reports: ShardVerify[] = [];
    for (const shard of shards) {
      const reply = await client.expect<{ shards: ShardVerify[] }>('admin.sync.verify', { backend, repair: options.repair, shards: [shard] }, timeoutMs);
      reports.push(...reply.shards);
      bar?.increment();
    }
    bar?.stop();
    if (options.json) return `${JSON.stringify({ backend, repair: options.repair, shards: reports }, null, 2)}\n`;
    const sum = (key: 'missing' | 'stale' | 'extra' | 'buckets_differ') => reports.reduce((total, report) => total + report[key], 0);
    const differing = reports.filter((report) => report.days_differ > 0);
    const verdict =
      sum('missing') + sum('stale') + sum('extra') === 0
        ? `${backend}: equal to local data on ${reports.length} shard(s)`
        : `${backend}: ${sum('missing')} missing, ${sum('stale')} at another version, ${sum('extra')} extra, in ${sum('buckets_differ')} bucket(s); ${options.repair ? 'repaired' : 'not repaired (--no-repair)'}`;
    if (differing.length === 0) return `${verdict}\n`;
    const table = renderTable(
      ['shard', 'days equal', 'days differ', 'buckets differ', 'missing', 'stale', 'extra'],
      differing.map((report) => [report.shard, report.days_equal, report.days_differ, report.buckets_differ, report.missing, report.stale, report.extra].map(String)),
    );
    return `${verdict}\n\n${table}\n`;
  });
}

export interface ConflictsOptions extends ConnectionOptions {
  all?: boolean;
  limit: string;
  timeout: string;
  json?: boolean;
}

interface ConflictRow {
  conflict_id: number;
  shard: number;
  id: string;
  local_version: number;
  strategy: string;
  detected_at: string;
  resolved_at: string | null;
  resolution: string | null;
}

/** Rows written outside usage-tracker: the open conflicts, or with --all every recorded decision. */
export async function conflicts(backend: string, options: ConflictsOptions): Promise<string> {
  const timeoutMs = parseTimeout(options.timeout);
  const limit = Number(options.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new CliError(`--limit must be a whole number from 1 to 1000, got ${options.limit}`);
  const reply = await withClient(options, timeoutMs, (client) =>
    client.expect<{ conflicts: ConflictRow[] }>('admin.sync.conflicts', { backend, open: !options.all, limit }, timeoutMs),
  );
  if (options.json) return `${JSON.stringify(reply.conflicts, null, 2)}\n`;
  if (reply.conflicts.length === 0) return options.all ? `${backend}: no conflict recorded\n` : `${backend}: no open conflict\n`;
  const table = renderTable(
    ['conflict', 'shard', 'record', 'local version', 'strategy', 'detected', 'resolution'],
    reply.conflicts.map((row) => [String(row.conflict_id), String(row.shard), row.id, String(row.local_version), row.strategy, row.detected_at, row.resolution ?? 'open']),
    ['right', 'right', 'left', 'right', 'left', 'left', 'left'],
  );
  return `${table}\n`;
}

/** Settles a parked conflict: keep the local version, or take the row's edit into local data. */
export async function resolveConflict(backend: string, conflictId: string, options: ConnectionOptions & { take: string; timeout: string }): Promise<string> {
  const timeoutMs = parseTimeout(options.timeout);
  const id = Number(conflictId);
  if (!Number.isInteger(id) || id < 1) throw new CliError(`the conflict id must be a whole number, got ${conflictId}`);
  const reply = await withClient(options, timeoutMs, (client) =>
    client.expect<{ conflict: ConflictRow }>('admin.sync.resolve', { backend, conflict_id: id, take: options.take }, timeoutMs),
  );
  return `conflict ${id} on ${reply.conflict.id}: ${reply.conflict.resolution}\n`;
}
