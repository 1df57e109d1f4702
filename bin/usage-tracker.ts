#!/usr/bin/env node
// The usage-tracker command line: `start` runs a node, `status` asks a running
// node over NATS for its actor tree. Every failure prints one line saying why
// and exits non-zero.

import { existsSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { decode, encode } from '../protocols/codec.js';
import { ProtocolError } from '../protocols/errors.js';
import { subjects } from '../protocols/subjects.js';
import { ConfigError, loadConfig } from '../src/config/load.js';
import { PriceTableError } from '../src/pricing/price-table.js';
import type { Config } from '../src/config/schema.js';
import { connectNats } from '../src/transport/nats.js';
import { VERSION } from '../src/version.js';
import { startNode, type StatusReply } from '../supervisors/node.js';
import { renderStatusTree } from '../supervisors/status.js';

class CliError extends Error {
  override readonly name = 'CliError';
}

/** cluster.yml from --config, USAGE_TRACKER_CONFIG, or ./cluster.yml when present; otherwise the defaults. */
function configFrom(file: string | undefined): Config {
  const explicit = file ?? (process.env.USAGE_TRACKER_CONFIG || undefined);
  const path = explicit ?? (existsSync('cluster.yml') ? 'cluster.yml' : undefined);
  return loadConfig(path === undefined ? {} : { file: path });
}

async function start(options: { config?: string }): Promise<void> {
  const config = configFrom(options.config);
  const node = await startNode(config, {
    onFatal: () => {
      void node.stop().finally(() => process.exit(1));
    },
  });
  const status = node.status();
  process.stderr.write(
    `usage-tracker ${VERSION}: node ${status.node_id} running (transport ${status.transport.kind}, NATS ${status.transport.nats}, ` +
      `subjects ${status.transport.subject_prefix}.v1.*). Ctrl-C stops it.\n`,
  );
  // Nothing else may hold the event loop open on the embedded transport alone.
  const keepAlive = setInterval(() => undefined, 1 << 30);
  let signals = 0;
  const shutdown = (signal: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      process.stderr.write(`usage-tracker: ${signal} again; exiting without an orderly stop\n`);
      process.exit(130);
    }
    process.stderr.write(`usage-tracker: ${signal} received; stopping the actor tree in order\n`);
    clearInterval(keepAlive);
    node.stop().then(
      () => {
        process.stderr.write('usage-tracker: node stopped\n');
        process.exit(0);
      },
      (error: unknown) => {
        process.stderr.write(`usage-tracker: stop failed: ${(error as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
}

interface StatusOptions {
  config?: string;
  natsUrl?: string;
  prefix?: string;
  node?: string;
  timeout: string;
  json?: boolean;
}

async function status(options: StatusOptions): Promise<void> {
  const config = configFrom(options.config);
  const servers = options.natsUrl ? options.natsUrl.split(',') : config.transport.nats.servers;
  const names = subjects(options.prefix ?? config.transport.subject_prefix);
  const timeoutMs = Number(options.timeout);
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1) throw new CliError(`--timeout must be a whole number of milliseconds, got ${options.timeout}`);
  const transport = await connectNats({ servers, connectTimeoutMs: Math.min(timeoutMs, 5000), name: 'usage-tracker-cli' });
  try {
    const subject = options.node ? names.nodeEndpoint(options.node, 'admin.status') : names.endpoint('admin.status');
    let reply;
    try {
      reply = await transport.request(subject, encode({}), { timeoutMs });
    } catch (error) {
      if (error instanceof ProtocolError && error.code === 'E_UNAVAILABLE') {
        throw new CliError(`no node answers on ${subject} at ${servers.join(', ')} (is a node running with NATS and this subject prefix?)`);
      }
      throw error;
    }
    const body = decode(reply.data, 'msgpack', { payloadBytesMax: 64 * 1024 * 1024, nestingDepthMax: 64 }) as { ok: boolean; error?: { code: string; message: string } } & StatusReply;
    if (!body.ok) throw new CliError(`${body.error?.code ?? 'error'}: ${body.error?.message ?? 'the node refused'}`);
    if (options.json) {
      process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
      return;
    }
    const uptime = `${Math.round(body.uptime_ms / 1000)} s`;
    process.stdout.write(
      `node ${body.node_id} (cluster ${body.cluster_id}), usage-tracker ${body.version}, protocol v${body.protocol}, up ${uptime}\n` +
        `transport ${body.transport.kind}, NATS ${body.transport.nats}, subjects ${body.transport.subject_prefix}.v1.*\n\n` +
        `${renderStatusTree(body.tree)}\n`,
    );
  } finally {
    await transport.drain().catch(() => undefined);
  }
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
  cli
    .command('status')
    .description("ask a running node over NATS for its actor tree")
    .option('-c, --config <file>', 'cluster.yml for the NATS servers and subject prefix')
    .option('--nats-url <urls>', 'NATS server(s), comma-separated (default: from config, nats://127.0.0.1:4222)')
    .option('--prefix <prefix>', 'subject prefix (default: from config, usage)')
    .option('--node <id>', 'ask this node only (default: whichever node answers first)')
    .addOption(new Option('--timeout <ms>', 'how long to wait for an answer').default('3000'))
    .option('--json', 'print the raw reply as JSON')
    .action(status);
  return cli;
}

async function main(argv: string[]): Promise<void> {
  try {
    await program().parseAsync(argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      process.exitCode = error.exitCode;
      return;
    }
    const whole = error instanceof ConfigError || error instanceof PriceTableError;
    const message = whole ? (error as Error).message : error instanceof Error ? error.message.split('\n')[0] : String(error);
    process.stderr.write(`usage-tracker: ${message}\n`);
    process.exitCode = 1;
  }
}

await main(process.argv);
