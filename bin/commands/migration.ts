// `usage-tracker migration status | plan | apply | rollback`: the
// MigrationActor of a running node, over NATS (usage.v1.admin.migration.*).
// apply and rollback show a progress bar while they run (polling
// migration.status, which answers during a run), or with --dry-run print
// the exact plan and change nothing.

import { Presets, SingleBar } from 'cli-progress';
import { renderTable } from '../../src/text-table.js';
import { CliError, parseTimeout, withClient, type ConnectionOptions, type NodeClient } from '../client.js';

export interface MigrationCommandOptions extends ConnectionOptions {
  timeout: string;
  json?: boolean;
  quiet?: boolean;
  dryRun?: boolean;
  to?: string;
}

interface Step {
  id: string;
  description: string;
  direction?: string;
  targets: string[];
  state?: string;
  files?: number;
  bytes?: number;
  to_format?: number;
  sql?: string;
}

interface Progress {
  run_id: string;
  direction: string;
  migration: string | null;
  stage: string;
  shard: number | null;
  shards: number;
  files_done: number;
  files_total: number;
}

const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MB`;
const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`;

export async function migrationStatus(options: MigrationCommandOptions): Promise<string> {
  const timeoutMs = parseTimeout(options.timeout);
  const reply = await withClient(options, timeoutMs, (client) => client.expect<Record<string, any>>('admin.migration.status', {}, timeoutMs));
  if (options.json) return json(reply);
  const storage = reply.storage as { format_version: number; current: number; files_by_format: Record<string, number> };
  const postgres = reply.postgres as { state: string; schema?: string; error?: string };
  const files = Object.entries(storage.files_by_format).map(([format, count]) => `${count} at format ${format}`).join(', ') || 'no sealed files';
  const lines = [
    `storage: format ${storage.format_version} (this release writes ${storage.current}); sealed files: ${files}`,
    `postgres: ${postgres.state}${postgres.schema ? ` (schema ${postgres.schema})` : ''}${postgres.error ? `: ${postgres.error}` : ''}`,
  ];
  const running = reply.running as Progress | null;
  if (running) lines.push(`RUNNING: ${running.direction} ${running.migration ?? ''} at ${running.stage}${running.shard !== null ? `, shard ${running.shard + 1} of ${running.shards}` : ''}, ${running.files_done}/${running.files_total} files`);
  if (reply.journal) lines.push(`journal: ${reply.journal.direction} of ${reply.journal.migration} is ${reply.journal.state}`);
  if (reply.last_run) lines.push(`last run: ${reply.last_run.direction} ${reply.last_run.outcome}${reply.last_run.error ? `: ${reply.last_run.error}` : ''}`);
  const table = renderTable(
    ['migration', 'target', 'state', 'description'],
    (reply.registry as Step[]).map((step) => [step.id, step.targets.join(','), step.state ?? '', step.description]),
    ['left', 'left', 'left', 'left'],
  );
  return `${lines.join('\n')}\n\n${table}\n`;
}

export async function migrationPlan(options: MigrationCommandOptions): Promise<string> {
  const timeoutMs = parseTimeout(options.timeout);
  const reply = await withClient(options, timeoutMs, (client) => client.expect<{ steps: Step[]; skipped: { id: string; reason: string }[] }>('admin.migration.plan', {}, timeoutMs));
  if (options.json) return json(reply);
  const skipped = reply.skipped.map((step) => `skipped: ${step.id} (${step.reason})\n`).join('');
  if (reply.steps.length === 0) return `nothing to apply: every migration is applied\n${skipped}`;
  return `${reply.steps.map((step, index) => `${index + 1}. ${step.id} [${step.targets.join(',')}] ${step.description}`).join('\n')}\n${skipped}(usage-tracker migration apply --dry-run shows the files and bytes)\n`;
}

function renderRun(reply: Record<string, any>, direction: string): string {
  const steps = (reply.steps as Step[]).map((step) => {
    const what = step.sql !== undefined ? `SQL ${step.sql}` : `${step.files ?? 0} files, ${mb(step.bytes ?? 0)} rewritten to format ${step.to_format}`;
    return `  ${step.direction} ${step.id}: ${what}`;
  });
  if (steps.length === 0) return reply.dry_run ? `dry run: ${reply.note}; nothing was changed\n` : `${reply.note}\n`;
  if (reply.dry_run) return `dry run: nothing was changed. ${direction} would:\n  take a full backup first\n${steps.join('\n')}\n`;
  return `${direction}: done ${(reply.done as string[]).join(', ')} (backup ${reply.backup_id} taken first)\n${steps.join('\n')}\n`;
}

/** Runs apply or rollback; the bar follows migration.status while the request runs. */
async function run(direction: 'apply' | 'rollback', options: MigrationCommandOptions): Promise<string> {
  const timeoutMs = parseTimeout(options.timeout);
  if (options.to !== undefined && options.to.length === 0) throw new CliError('--to needs a migration id (usage-tracker migration status lists them)');
  const body = { ...(options.dryRun ? { dry_run: true } : {}), ...(options.to !== undefined ? (direction === 'apply' ? { to: options.to } : { id: options.to }) : {}) };
  const endpoint = direction === 'apply' ? 'admin.migration.apply' : 'admin.migration.rollback';
  return withClient(options, timeoutMs, async (client) => {
    const request = client.expect<Record<string, any>>(endpoint, body, timeoutMs);
    const bar = options.dryRun || options.quiet || options.json || !process.stderr.isTTY ? undefined : new SingleBar({ format: `${direction} [{bar}] {value}/{total} files, {stage}`, hideCursor: true }, Presets.shades_classic);
    const follow = bar ? followProgress(client, bar, request) : Promise.resolve();
    try {
      const reply = await request;
      return options.json ? json(reply) : renderRun(reply, direction);
    } finally {
      await follow;
      bar?.stop();
    }
  });
}

async function followProgress(client: NodeClient, bar: SingleBar, request: Promise<unknown>): Promise<void> {
  let over = false;
  request.then(
    () => (over = true),
    () => (over = true),
  );
  let started = false;
  while (!over) {
    const status = await client.expect<{ running: Progress | null }>('admin.migration.status', {}, 10_000).catch(() => undefined);
    const running = status?.running;
    if (running) {
      const stage = `${running.migration ?? ''} ${running.stage}${running.shard !== null ? ` shard ${running.shard + 1}/${running.shards}` : ''}`;
      if (!started) {
        bar.start(Math.max(running.files_total, 1), 0, { stage });
        started = true;
      }
      bar.setTotal(Math.max(running.files_total, 1));
      bar.update(running.files_done, { stage });
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

export const migrationApply = (options: MigrationCommandOptions) => run('apply', options);
export const migrationRollback = (options: MigrationCommandOptions) => run('rollback', options);
