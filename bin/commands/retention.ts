// `usage-tracker retention run [--dry-run] [--json]` runs (or plans) the
// retention policies of a running node now, with a progress bar over its
// shards while it works (from admin.retention.status) and a per-shard
// summary at the end; `usage-tracker retention status` shows the policies,
// the legal holds, the last and next run and the mirror deletions pending.

import { Presets, SingleBar } from 'cli-progress';
import { renderTable } from '../../src/text-table.js';
import { parseTimeout, withClient, type ConnectionOptions } from '../client.js';

export interface RetentionCommandOptions extends ConnectionOptions {
  timeout: string;
  json?: boolean;
  dryRun?: boolean;
  quiet?: boolean;
}

interface ShardResult {
  shard: number;
  state: string;
  reason?: string;
  policies?: { name: string; action: string; records: number; held: number; outputs: string[] }[];
  files_dropped?: string[];
  files_rewritten?: unknown[];
  files_compressed?: unknown[];
  rollups_written?: unknown[];
  records_removed?: number;
  records_rolled_up?: number;
}

interface RunReply {
  run_id: string;
  dry_run: boolean;
  shards: ShardResult[];
  totals: Record<string, number>;
  categories: Record<string, any>;
  mirrors: Record<string, any>;
}

function renderRun(reply: RunReply): string {
  const t = reply.totals;
  const verb = reply.dry_run ? 'would be' : 'were';
  const head =
    `${reply.dry_run ? 'dry run' : 'run'} ${reply.run_id}: ${t.records_removed} records ${verb} removed ` +
    `(${t.records_rolled_up} rolled up, ${t.records_archived} archived, ${t.records_exported} exported); ` +
    `${t.files_dropped} files ${verb} dropped, ${t.files_rewritten} rewritten, ${t.files_compressed} recompressed\n`;
  const table = renderTable(
    ['shard', 'state', 'removed', 'held', 'dropped', 'rewritten', 'compressed', 'rollups'],
    reply.shards.map((shard) => [
      String(shard.shard),
      shard.reason ? `${shard.state}: ${shard.reason}` : shard.state,
      String(shard.records_removed ?? 0),
      String((shard.policies ?? []).reduce((sum, policy) => sum + policy.held, 0)),
      String(shard.files_dropped?.length ?? 0),
      String(shard.files_rewritten?.length ?? 0),
      String(shard.files_compressed?.length ?? 0),
      String(shard.rollups_written?.length ?? 0),
    ]),
    ['right', 'left', 'right', 'right', 'right', 'right', 'right', 'right'],
  );
  const outputs = reply.shards.flatMap((shard) => (shard.policies ?? []).flatMap((policy) => policy.outputs));
  const audit = reply.categories.audit_logs?.files_removed?.length ?? 0;
  const temp = reply.categories.temp?.files_removed?.length ?? 0;
  const pending = Object.entries(reply.mirrors.pending ?? {}).filter(([, count]) => Number(count) > 0);
  return (
    head +
    `\n${table}\n` +
    (outputs.length > 0 ? `\noutput:\n${outputs.map((path) => `  ${path}`).join('\n')}\n` : '') +
    `\naudit log files ${verb} removed: ${audit}; temp files: ${temp}\n` +
    (pending.length > 0 ? `mirror deletions pending (retried at the next run): ${pending.map(([backend, count]) => `${backend} ${count}`).join(', ')}\n` : '')
  );
}

export async function retentionRun(options: RetentionCommandOptions): Promise<string> {
  const timeoutMs = parseTimeout(options.timeout);
  return withClient(options, timeoutMs, async (client) => {
    const bar = options.quiet || options.json || !process.stderr.isTTY ? undefined : new SingleBar({ format: 'retention [{bar}] {value}/{total} shards', hideCursor: true }, Presets.shades_classic);
    let done = false;
    const follow = (async () => {
      let started = false;
      while (!done && bar) {
        await new Promise((resolve) => setTimeout(resolve, 300));
        const status = await client.call<{ running: { shards_done: number; shards_total: number } | null }>('admin.retention.status', {}, 5000).catch(() => undefined);
        const running = status?.running;
        if (!running || done) continue;
        if (!started) bar.start(running.shards_total, 0);
        started = true;
        bar.update(running.shards_done);
      }
      if (started) bar?.stop();
    })();
    try {
      const reply = await client.expect<RunReply>('admin.retention.run', { dry_run: options.dryRun === true }, timeoutMs);
      return options.json ? `${JSON.stringify(reply, null, 2)}\n` : renderRun(reply);
    } finally {
      done = true;
      await follow;
    }
  });
}

export async function retentionStatus(options: RetentionCommandOptions): Promise<string> {
  const timeoutMs = parseTimeout(options.timeout);
  const reply = await withClient(options, timeoutMs, (client) => client.expect<Record<string, any>>('admin.retention.status', {}, timeoutMs));
  if (options.json) return `${JSON.stringify(reply, null, 2)}\n`;
  const lines: string[] = [];
  const last = reply.last_run;
  lines.push(last ? `last run: ${last.run_id}${last.dry_run ? ' (dry run)' : ''}, finished ${last.finished_at}` : 'last run: never');
  lines.push(`next run: ${reply.next_run ?? 'not scheduled (schedule_interval_hours: 0)'}`);
  if (reply.running) lines.push(`running: ${reply.running.run_id}, ${reply.running.shards_done}/${reply.running.shards_total} shards`);
  lines.push('policies:');
  for (const policy of reply.policies) {
    const bound = policy.max_age_days !== undefined ? ` older than ${policy.max_age_days} days` : policy.max_records !== undefined ? ` beyond ${policy.max_records} records a shard` : policy.max_bytes !== undefined ? ` beyond ${policy.max_bytes} bytes a shard` : '';
    lines.push(`  ${policy.name}: ${policy.type} ${policy.action}${bound}${policy.where ? ` where ${JSON.stringify(policy.where)}` : ''}`);
  }
  lines.push(reply.legal_holds.length > 0 ? 'legal holds:' : 'legal holds: none');
  for (const hold of reply.legal_holds) lines.push(`  ${hold.id}: ${hold.user_id ?? 'every user'}${hold.from !== undefined ? ` from ${new Date(hold.from).toISOString()}` : ''}${hold.to !== undefined ? ` to ${new Date(hold.to).toISOString()}` : ''} (${hold.reason})`);
  const pending = Object.entries(reply.pending_mirror_deletions ?? {});
  lines.push(`mirror deletions pending: ${pending.length === 0 ? 'none' : pending.map(([backend, count]) => `${backend} ${count}`).join(', ')}`);
  const c = reply.categories;
  lines.push(`other categories: aggregated metrics ${c.aggregated_metrics_days} days, Chroma (analytics insights) ${c.analytics_insights_days} days, audit logs ${c.audit_logs_days} days, temp files ${c.temp_days} days, backups ${c.backups_days.days} days (by the ${c.backups_days.handled_by})`);
  return `${lines.join('\n')}\n`;
}
