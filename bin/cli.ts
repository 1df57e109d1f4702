// The usage-tracker command line. `start` runs a node; the other commands
// talk to a running node over NATS. Every failure prints one line saying
// why and exits non-zero; USAGE_TRACKER_DEBUG=1 adds the stack trace.

import { Command, CommanderError, Option } from 'commander';
import { ConfigError } from '../src/config/load.js';
import { PriceTableError } from '../src/pricing/price-table.js';
import { VERSION } from '../src/version.js';
import { runDemo } from './commands/demo.js';
import { CliError } from './client.js';
import { ingestFile, printSummary, stoppedLine, type IngestOptions } from './commands/ingest.js';
import { start, status } from './commands/node.js';
import { runQuery } from './commands/query.js';
import { backupCreate, backupList, backupRestore, backupVerify } from './commands/backup.js';
import { conflicts, resolveConflict, resync, syncStatus, verify } from './commands/sync.js';
import { migrationApply, migrationPlan, migrationRollback, migrationStatus } from './commands/migration.js';
import { needs } from './option-rules.js';
import { retentionRun, retentionStatus } from './commands/retention.js';

function connectionOptions(command: Command, what: string): Command {
  return command
    .option('-c, --config <file>', `cluster.yml for the NATS servers and subject prefix`)
    .option('--nats-url <urls>', 'NATS server(s), comma-separated (default: from config, nats://127.0.0.1:4222)')
    .option('--prefix <prefix>', 'subject prefix (default: from config, usage)')
    .option('--node <id>', `${what} this node only (default: whichever node answers first)`);
}

function program(): Command {
  const cli = new Command('usage-tracker')
    .description('LLM usage records over NATS: durable, sharded, queryable')
    .version(VERSION)
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  cli
    .command('start')
    .description('start a node (embedded transport by default; serves NATS too when reachable)')
    .option('-c, --config <file>', 'cluster.yml to load (default: ./cluster.yml when present, else built-in defaults)')
    .action(start);
  connectionOptions(cli.command('status').description("ask a running node over NATS for its transport, its data directory's history and its actor tree with each shard's health"), 'ask')
    .addOption(new Option('--timeout <ms>', 'how long to wait for an answer').default('3000'))
    .option('--json', 'print the raw reply as JSON')
    .action(status);
  connectionOptions(cli.command('ingest').argument('<file>', 'JSON lines, one usage record a line').description('send a JSON-lines file of usage records to a running node'), 'send to')
    .addOption(new Option('--batch <n>', 'records per request (1-1000)').default('500'))
    .addOption(new Option('--concurrency <n>', 'requests in flight').default('4'))
    .addOption(new Option('--timeout <ms>', 'how long to wait for each answer').default('30000'))
    .option('--quiet', 'no progress bar')
    .action(async (file: string, options: IngestOptions) => {
      const summary = await ingestFile(file, options);
      printSummary(summary);
      const stopped = stoppedLine(summary);
      if (stopped !== undefined) throw new CliError(stopped);
      if (summary.rejected > 0) process.exitCode = 1;
    });
  const query = connectionOptions(cli.command('query').description('usage and cost: an aggregate table by default, records with --records'), 'ask')
    .option('--user <id>', 'only this user')
    .option('--provider <name>', 'only this provider')
    .option('--model <name>', 'only this model')
    .option('--status <status>', 'only success, error, timeout or cancelled')
    .option('--from <time>', 'from this time, inclusive (epoch ms or ISO 8601)')
    .option('--to <time>', 'up to this time, exclusive (epoch ms or ISO 8601)')
    .addOption(new Option('--days <n>', 'the last n days (sets --from)').conflicts('from'))
    .addOption(new Option('--group-by <keys>', 'comma-separated: user_id, provider, model, day, hour (not with --records)').conflicts('records'))
    .addOption(new Option('--metrics <names>', 'comma-separated: count, input_tokens, output_tokens, tokens, cost, latency_p50, latency_p95 (not with --records)').conflicts('records'))
    .option('--records', 'list records instead of aggregating')
    .option('--limit <n>', 'records per page (with --records, 1-1000)')
    .option('--cursor <cursor>', 'the next page (with --records)')
    .addOption(new Option('--timeout <ms>', 'how long to wait for the answer').default('10000'))
    .option('--json', 'print the raw reply as JSON')
    .action(async (options) => {
      process.stdout.write(await runQuery(options));
    });
  needs(needs(query, 'limit', 'records'), 'cursor', 'records');
  connectionOptions(cli.command('demo').description('send realistic traffic to a running node, then show what it stored'), 'send to')
    .addOption(new Option('--records <n>', 'how many records').default('20000'))
    .addOption(new Option('--users <n>', 'how many users').default('200'))
    .addOption(new Option('--days <n>', 'spread over the last n days').default('1'))
    .addOption(new Option('--rate <n>', 'records per second').default('5000'))
    .option('--seed <n>', 'generator seed (default: from the clock, so each demo adds new records)')
    .addOption(new Option('--timeout <ms>', 'how long to wait for each answer').default('30000'))
    .action(async (options) => {
      process.stdout.write(await runDemo(options));
    });
  const sync = cli.command('sync').description('the PostgreSQL and Chroma mirrors: status, resync, verify (and repair), conflicts, resolve');
  connectionOptions(sync.command('status').description('state and lag of each mirror, per shard'), 'ask')
    .option('--backend <name>', 'postgres or chroma (default: every configured one)')
    .addOption(new Option('--timeout <ms>', 'how long to wait for the answer').default('10000'))
    .option('--json', 'print the raw reply as JSON')
    .action(async (options) => {
      process.stdout.write(await syncStatus(options));
    });
  connectionOptions(sync.command('resync').argument('<backend>', 'postgres or chroma').description('replay a mirror from a seq (0: from scratch), then follow it until caught up'), 'ask')
    .addOption(new Option('--from-seq <n>', 'replay every change after this seq').default('0'))
    .option('--shards <list>', 'only these shards, comma-separated (default: all)')
    .option('--no-wait', 'return once the replay is scheduled')
    .addOption(new Option('--quiet', 'no progress bar (there is none with --no-wait)').conflicts('wait'))
    .addOption(new Option('--timeout <ms>', 'how long to wait for each answer').default('10000'))
    .action(async (backend: string, options) => {
      process.stdout.write(await resync(backend, options));
    });
  connectionOptions(sync.command('verify').argument('<backend>', 'postgres').description('compare a mirror with local data (Merkle trees per shard and day) and repair what differs'), 'ask')
    .option('--no-repair', 'only report the differences')
    .option('--shards <list>', 'only these shards, comma-separated (default: all)')
    .addOption(new Option('--quiet', 'no progress bar (there is none with --json)').conflicts('json'))
    .option('--json', 'print the per-shard report as JSON')
    .addOption(new Option('--timeout <ms>', 'how long to wait for each shard').default('600000'))
    .action(async (backend: string, options) => {
      process.stdout.write(await verify(backend, options));
    });
  connectionOptions(sync.command('conflicts').argument('<backend>', 'postgres').description('rows written outside usage-tracker: the open conflicts (--all: every decision)'), 'ask')
    .option('--all', 'every recorded conflict, resolved ones too')
    .addOption(new Option('--limit <n>', 'most conflicts listed (1-1000)').default('100'))
    .addOption(new Option('--timeout <ms>', 'how long to wait for the answer').default('10000'))
    .option('--json', 'print the conflicts as JSON')
    .action(async (backend: string, options) => {
      process.stdout.write(await conflicts(backend, options));
    });
  connectionOptions(sync.command('resolve').argument('<backend>', 'postgres').argument('<conflict-id>').description('settle a parked conflict'), 'ask')
    .requiredOption('--take <side>', 'local (write the local version over the row) or remote (take the edit into local data)')
    .addOption(new Option('--timeout <ms>', 'how long to wait for the answer').default('10000'))
    .action(async (backend: string, conflictId: string, options) => {
      process.stdout.write(await resolveConflict(backend, conflictId, options));
    });
  const backup = cli.command('backup').description("backups of a running node's data directory into backup.target_dir: create, list, verify, restore");
  const backupOptions = (command: Command) =>
    connectionOptions(command, 'ask')
      .addOption(new Option('--timeout <ms>', 'how long to wait for the answer').default('3600000'))
      .option('--json', 'print the raw reply as JSON');
  backupOptions(backup.command('create').description('take a backup'))
    .addOption(new Option('--kind <kind>', 'full, incremental (only what the store lacks) or differential (what the last full lacks)').default('full'))
    .action(async (options) => {
      process.stdout.write(await backupCreate(options.kind, options));
    });
  backupOptions(backup.command('list').description('the backups, oldest first')).action(async (options) => {
    process.stdout.write(await backupList(options));
  });
  backupOptions(backup.command('verify').argument('<backup-id>').description('re-read every file of a backup and test-restore it')).action(async (id: string, options) => {
    process.stdout.write(await backupVerify(id, options));
  });
  backupOptions(
    backup
      .command('restore')
      .argument('[backup-id]', 'the backup to restore (with --to-time: the base to replay from; default the newest completed by then)')
      .description('restore a backup, or the state at a moment, or part of either, into a new directory checked before it is put in place'),
  )
    .requiredOption('--target <dir>', 'the new data directory (must not exist; a relative path is relative to the working directory here)')
    .option('--to-time <time>', 'point in time: the state as of this moment (ISO 8601 or epoch ms), from a backup plus the archived WAL')
    .option('--user-id <id>', "partial: this user's records only")
    .option('--from <time>', 'partial: records with ts at or after this (ISO 8601 or epoch ms)')
    .option('--to <time>', 'partial: records with ts before this')
    .option('--incarnation <id>', "the history to restore (see backup list): default the backup's, or with --to-time alone this node's own")
    .action(async (id: string | undefined, options) => {
      process.stdout.write(await backupRestore(id, options));
    });
  const retention = cli.command('retention').description('retention policies of a running node: run (or dry-run) them now, status (where they stand)');
  const retentionOptions = (command: Command) =>
    connectionOptions(command, 'ask')
      .addOption(new Option('--timeout <ms>', 'how long to wait for the answer').default('14400000'))
      .option('--json', 'print the raw reply as JSON');
  retentionOptions(retention.command('run').description('apply the policies now: per shard and policy, exact files and record counts'))
    .option('--dry-run', 'only plan: show exactly what a run would do, change nothing')
    .addOption(new Option('--quiet', 'no progress bar (there is none with --json)').conflicts('json'))
    .action(async (options) => {
      process.stdout.write(await retentionRun(options));
    });
  retentionOptions(retention.command('status').description('policies, legal holds, last and next run, mirror deletions pending')).action(async (options) => {
    process.stdout.write(await retentionStatus(options));
  });
  const migration = cli.command('migration').description('storage format and PostgreSQL schema migrations: status, plan, apply, rollback');
  const migrationOptions = (command: Command) =>
    connectionOptions(command, 'ask')
      .addOption(new Option('--timeout <ms>', 'how long to wait for the answer').default('3600000'))
      .option('--json', 'print the raw reply as JSON');
  migrationOptions(migration.command('status').description('where the storage format and the mirror schema stand; a run in progress')).action(async (options) => {
    process.stdout.write(await migrationStatus(options));
  });
  migrationOptions(migration.command('plan').description('the pending migrations, in the order apply would run them')).action(async (options) => {
    process.stdout.write(await migrationPlan(options));
  });
  migrationOptions(migration.command('apply').description('apply pending migrations: a full backup first, then each step; rolled back automatically on failure'))
    .option('--dry-run', 'print the exact plan (steps, files, bytes) and change nothing')
    .option('--to <id>', 'only this migration and what it depends on')
    .addOption(new Option('--quiet', 'no progress bar (there is none with --dry-run or --json)').conflicts(['dryRun', 'json']))
    .action(async (options) => {
      process.stdout.write(await migrationApply(options));
    });
  migrationOptions(migration.command('rollback').description('roll back the newest applied migration (a full backup first)'))
    .option('--dry-run', 'print the exact plan and change nothing')
    .option('--to <id>', 'roll back this migration and every applied one that depends on it')
    .addOption(new Option('--quiet', 'no progress bar (there is none with --dry-run or --json)').conflicts(['dryRun', 'json']))
    .action(async (options) => {
      process.stdout.write(await migrationRollback(options));
    });
  return cli;
}

/** Prints a failure as one line (the whole message for configuration and price errors, which list their problems). */
function report(error: unknown): void {
  const whole = error instanceof ConfigError || error instanceof PriceTableError;
  const message = whole ? (error as Error).message : error instanceof Error ? error.message.split('\n')[0] : String(error);
  process.stderr.write(`usage-tracker: ${message}\n`);
  if (process.env.USAGE_TRACKER_DEBUG === '1' && error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
}

async function main(argv: string[]): Promise<void> {
  // A failure nobody awaited is still one line, not Node's stack dump.
  const fatal = (error: unknown) => {
    report(error);
    process.exit(1);
  };
  process.on('uncaughtException', fatal);
  process.on('unhandledRejection', fatal);
  try {
    await program().parseAsync(argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      process.exitCode = error.exitCode;
      return;
    }
    report(error);
    process.exitCode = 1;
  }
}

await main(process.argv);
