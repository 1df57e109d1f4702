// Child process of the ingest bench: the server under test runs in a process
// of its own, as it does beside MDMAI, so the load generator does not share
// its event loop. `node DATA_DIR PREFIX NATS_URL YAML` starts a usage-tracker
// node; `echo NATS_URL SUBJECT` answers every request with its own payload
// (the baseline, in a process of its own too); `dataset DATA_DIR PREFIX
// NATS_URL YAML RECORDS USERS` starts a node, loads and seals the generated
// dataset, and prints its load time and RSS as a JSON line. Prints `ready` when serving;
// stops cleanly on SIGTERM.

process.env.UV_THREADPOOL_SIZE ??= '16';
const [mode, ...args] = process.argv.slice(2);
let stop: () => Promise<unknown>;
if (mode === 'node') {
  const [dataDir, prefix, natsUrl, yaml] = args as [string, string, string, string];
  const { loadConfig } = await import('../src/config/load.js');
  const { silentLogger } = await import('../src/log.js');
  const { startNode } = await import('../supervisors/node.js');
  const { benchEnv } = await import('./env.js');
  const node = await startNode(loadConfig({ text: yaml, env: benchEnv(dataDir, prefix, natsUrl) }), { log: silentLogger });
  stop = () => node.stop();
} else if (mode === 'dataset') {
  const [dataDir, prefix, natsUrl, yaml, records, users] = args as [string, string, string, string, string, string];
  const { loadConfig } = await import('../src/config/load.js');
  const { silentLogger } = await import('../src/log.js');
  const { EmbeddedTransport } = await import('../src/transport/embedded.js');
  const { startNode } = await import('../supervisors/node.js');
  const { benchEnv } = await import('./env.js');
  const { load } = await import('./load.js');
  const embedded = new EmbeddedTransport(64 * 1024 * 1024);
  const node = await startNode(loadConfig({ text: yaml, env: benchEnv(dataDir, prefix, natsUrl) }), { log: silentLogger, embedded });
  const loadSeconds = await load({ embedded, prefix }, Number(records), Number(users), 90, 1, (line) => process.stderr.write(`bench: ${line}\n`));
  for (let shard = 0; shard < node.config.cluster.shards; shard++) {
    await node.system.ref(`bench/shards/partition-${shard}`).ask({ type: 'seal' }, { timeoutMs: 600_000 });
  }
  global.gc?.();
  process.stdout.write(`${JSON.stringify({ load_seconds: loadSeconds, rss_mb: process.memoryUsage().rss / 2 ** 20 })}\n`);
  stop = () => node.stop();
} else if (mode === 'echo') {
  const [natsUrl, subject] = args as [string, string];
  const { connect } = await import('@nats-io/transport-node');
  const connection = await connect({ servers: natsUrl, name: 'bench-echo-server' });
  connection.subscribe(subject, { callback: (_error, msg) => void msg.respond(msg.data) });
  await connection.flush();
  stop = () => connection.drain();
} else {
  process.stderr.write(`serve-child: unknown mode ${mode}\n`);
  process.exit(2);
}
process.once('SIGTERM', () => {
  void stop().finally(() => process.exit(0));
});
process.stdout.write('ready\n');
