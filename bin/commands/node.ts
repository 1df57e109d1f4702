// `usage-tracker start` runs a node in this process until SIGINT/SIGTERM;
// `usage-tracker status` asks a running node for its actor tree.

import { createLogger } from '../../src/log.js';
import { VERSION } from '../../src/version.js';
import { startNode, type StatusReply } from '../../supervisors/node.js';
import { configFrom, parseTimeout, withClient, type ConnectionOptions } from '../client.js';
import { renderStatus, transportPhrase } from './status-text.js';

export async function start(options: { config?: string }): Promise<void> {
  const config = configFrom(options.config);
  // Readable lines on a terminal, JSON lines when piped (log.format: auto), or what log.format says.
  const log = createLogger({ level: config.log.level, format: config.log.format });
  const node = await startNode(config, {
    log,
    onFatal: () => {
      void node.stop().finally(() => process.exit(1));
    },
  });
  const status = node.status();
  process.stderr.write(
    `usage-tracker ${VERSION}: node ${status.node_id} running (transport ${transportPhrase(status.transport)}, ` +
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

export interface StatusOptions extends ConnectionOptions {
  timeout: string;
  json?: boolean;
}

export async function status(options: StatusOptions): Promise<void> {
  const timeoutMs = parseTimeout(options.timeout);
  const body = await withClient(options, timeoutMs, (client) => client.expect<StatusReply>('admin.status', {}, timeoutMs));
  if (options.json) {
    process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
    return;
  }
  process.stdout.write(renderStatus(body));
}
