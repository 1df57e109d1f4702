// Child process of the restart bench: a fresh process, as after a real
// restart, starts a node on an existing data directory and prints how many
// milliseconds passed until it answered a query over every shard.

process.env.UV_THREADPOOL_SIZE ??= '16';
const started = performance.now();
const [dataDir, prefix, natsUrl, yaml] = process.argv.slice(2) as [string, string, string, string];
const { decode, encode } = await import('../protocols/codec.js');
const { subjects } = await import('../protocols/subjects.js');
const { loadConfig } = await import('../src/config/load.js');
const { silentLogger } = await import('../src/log.js');
const { EmbeddedTransport } = await import('../src/transport/embedded.js');
const { startNode } = await import('../supervisors/node.js');
const { benchEnv } = await import('./env.js');
const env = benchEnv(dataDir, prefix, natsUrl);
const embedded = new EmbeddedTransport(64 * 1024 * 1024);
const node = await startNode(loadConfig({ text: yaml, env }), { log: silentLogger, embedded });
const reply = decode((await embedded.request(subjects(prefix).endpoint('query.aggregate'), encode({ metrics: ['count'] }), { timeoutMs: 120_000 })).data) as {
  rows?: { count: number }[];
};
const elapsedMs = performance.now() - started;
process.stdout.write(`${JSON.stringify({ elapsedMs, count: reply.rows?.[0]?.count ?? 0 })}\n`);
await node.stop();
