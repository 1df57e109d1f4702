// cluster.yml loading: the defaults, the environment overrides, and the exact
// lines a user reads when the file is wrong. Every case passes `text` and
// `env` so nothing depends on the machine's environment or working directory.

import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { ConfigError, ENV_OVERRIDES, loadConfig, type LoadOptions } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';

const REPOSITORY_CLUSTER_YML = fileURLToPath(new URL('../../cluster.yml', import.meta.url));

const DEFAULTS: Config = {
  node: { id: 'node-1', data_dir: './data' },
  cluster: { id: 'default', shards: 16 },
  transport: {
    kind: 'embedded',
    subject_prefix: 'usage',
    nats: {
      servers: ['nats://127.0.0.1:4222'],
      connect_timeout_ms: 2000,
      reconnect_base_ms: 250,
      reconnect_max_ms: 10_000,
      queue_group: 'usage-tracker',
    },
  },
  backends: {},
  retention: {
    raw_usage_days: 90,
    aggregated_metrics_days: 365,
    analytics_insights_days: 180,
    audit_logs_days: 2555,
    backups_days: 30,
    temp_days: 1,
    legal_holds: [],
    schedule_interval_hours: 24,
    archive_dir: './archive',
    export_dir: './exports',
  },
  backup: { target_dir: './backups', full_interval_hours: 168, incremental_interval_hours: 24, schedule: true, wal_archive: true, wal_archive_interval_s: 30 },
  storage: { memtable_records_max: 20_000, seal_interval_s: 600, cache_bytes_max: 268_435_456 },
  ingest: { pool_size: 2, price_file: './prices.yml' },
  durability: { fsync: 'always' },
  limits: { payload_bytes_max: 1_048_576, batch_records_max: 1000, mailbox_capacity: 4096, ask_timeout_ms: 5000, query_timeout_ms: 5000 },
  supervision: { intensity: 5, period_ms: 10_000, backoff_base_ms: 100, backoff_max_ms: 5000, shutdown_ms: 5000 },
  log: { level: 'info' },
};

/** The ConfigError that loading must raise; a configuration that loads fails the test. */
function configError(options: LoadOptions): ConfigError {
  try {
    loadConfig(options);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('expected a ConfigError, but the configuration loaded');
}

/** Loads `text` as if it were ./cluster.yml. */
const fileError = (text: string, env: NodeJS.ProcessEnv = {}) => configError({ file: 'cluster.yml', text, env });

t.test('defaults', async (t) => {
  t.test('no file and no environment give the defaults', async (t) => {
    t.same(loadConfig({ env: {} }), DEFAULTS);
  });

  t.test('an empty file, or one holding only comments, gives the defaults', async (t) => {
    t.same(loadConfig({ text: '', env: {} }), DEFAULTS);
    t.same(loadConfig({ text: '# nothing here\n\n', env: {} }), DEFAULTS);
  });

  t.test("the repository's cluster.yml loads and equals the defaults", async (t) => {
    t.same(loadConfig({ file: REPOSITORY_CLUSTER_YML, env: {} }), DEFAULTS);
  });

  t.test('an empty section written as {} gives the defaults', async (t) => {
    t.same(loadConfig({ text: 'backends: {}\nnode: {}\n', env: {} }), DEFAULTS);
  });

  t.test('a file that sets some keys keeps the defaults of the others', async (t) => {
    const config = loadConfig({ text: 'cluster:\n  shards: 4\nbackends:\n  postgres:\n    url: postgres://127.0.0.1:5432/usage\n', env: {} });
    t.equal(config.cluster.shards, 4);
    t.equal(config.cluster.id, 'default');
    t.same(config.backends, { postgres: { url: 'postgres://127.0.0.1:5432/usage', pool_max: 4, schema: 'public', batch_records_max: 5000, window_ms: 50, retry_base_ms: 200, retry_max_ms: 30000, statement_timeout_ms: 60000, conflict_strategy: 'latest_wins', source_priority: ['local', 'mirror'] } });
    t.same(config.transport, DEFAULTS.transport);
  });
});

t.test('environment overrides', async (t) => {
  // A file that sets every overridable key to a value neither the default nor the variable's.
  const file = [
    'node: { id: file-node, data_dir: /file/data }',
    'cluster: { id: file-cluster, shards: 8 }',
    'transport:',
    '  kind: nats',
    '  subject_prefix: file.prefix',
    '  nats: { servers: [nats://file:4222], user: file-user, pass: file-pass, token: file-token }',
    'backends:',
    '  postgres: { url: postgres://file:5432/db }',
    '  chroma: { url: http://file:8000 }',
    'backup: { target_dir: /file/backups }',
    'durability: { fsync: never }',
    'log: { level: warn }',
    '',
  ].join('\n');

  const cases: { name: string; value: string; read: (config: Config) => unknown; fromFile: unknown; expected: unknown }[] = [
    { name: 'USAGE_TRACKER_NODE_ID', value: 'env-node', read: (c) => c.node.id, fromFile: 'file-node', expected: 'env-node' },
    { name: 'USAGE_TRACKER_DATA_DIR', value: '/env/data', read: (c) => c.node.data_dir, fromFile: '/file/data', expected: '/env/data' },
    { name: 'USAGE_TRACKER_CLUSTER_ID', value: 'env-cluster', read: (c) => c.cluster.id, fromFile: 'file-cluster', expected: 'env-cluster' },
    { name: 'USAGE_TRACKER_SHARDS', value: '32', read: (c) => c.cluster.shards, fromFile: 8, expected: 32 },
    { name: 'USAGE_TRACKER_TRANSPORT', value: 'embedded', read: (c) => c.transport.kind, fromFile: 'nats', expected: 'embedded' },
    { name: 'USAGE_TRACKER_SUBJECT_PREFIX', value: 'env.prefix', read: (c) => c.transport.subject_prefix, fromFile: 'file.prefix', expected: 'env.prefix' },
    {
      name: 'USAGE_TRACKER_NATS_URL',
      value: 'nats://a.example:4222, nats://b.example:4223',
      read: (c) => c.transport.nats.servers,
      fromFile: ['nats://file:4222'],
      expected: ['nats://a.example:4222', 'nats://b.example:4223'],
    },
    { name: 'USAGE_TRACKER_NATS_USER', value: 'env-user', read: (c) => c.transport.nats.user, fromFile: 'file-user', expected: 'env-user' },
    { name: 'USAGE_TRACKER_NATS_PASS', value: 'env-pass', read: (c) => c.transport.nats.pass, fromFile: 'file-pass', expected: 'env-pass' },
    { name: 'USAGE_TRACKER_NATS_TOKEN', value: 'env-token', read: (c) => c.transport.nats.token, fromFile: 'file-token', expected: 'env-token' },
    {
      name: 'USAGE_TRACKER_POSTGRES_URL',
      value: 'postgresql://127.0.0.1:5432/env',
      read: (c) => c.backends.postgres,
      fromFile: { url: 'postgres://file:5432/db', pool_max: 4, schema: 'public', batch_records_max: 5000, window_ms: 50, retry_base_ms: 200, retry_max_ms: 30000, statement_timeout_ms: 60000, conflict_strategy: 'latest_wins', source_priority: ['local', 'mirror'] },
      expected: { url: 'postgresql://127.0.0.1:5432/env', pool_max: 4, schema: 'public', batch_records_max: 5000, window_ms: 50, retry_base_ms: 200, retry_max_ms: 30000, statement_timeout_ms: 60000, conflict_strategy: 'latest_wins', source_priority: ['local', 'mirror'] },
    },
    { name: 'USAGE_TRACKER_CHROMA_URL', value: 'https://env:8443', read: (c) => c.backends.chroma?.url, fromFile: 'http://file:8000', expected: 'https://env:8443' },
    { name: 'USAGE_TRACKER_BACKUP_DIR', value: '/env/backups', read: (c) => c.backup.target_dir, fromFile: '/file/backups', expected: '/env/backups' },
    { name: 'USAGE_TRACKER_FSYNC', value: 'always', read: (c) => c.durability.fsync, fromFile: 'never', expected: 'always' },
    { name: 'USAGE_TRACKER_LOG_LEVEL', value: 'debug', read: (c) => c.log.level, fromFile: 'warn', expected: 'debug' },
  ];

  t.test('every variable of ENV_OVERRIDES has a case here', async (t) => {
    t.same(cases.map((c) => c.name).sort(), Object.keys(ENV_OVERRIDES).sort());
  });

  for (const { name, value, read, fromFile, expected } of cases) {
    t.test(`${name} wins over the file`, async (t) => {
      t.same(read(loadConfig({ text: file, env: {} })), fromFile, 'the file alone');
      t.same(read(loadConfig({ text: file, env: { [name]: value } })), expected, 'with the variable');
    });
  }

  t.test('a variable also sets a key the file leaves out', async (t) => {
    const config = loadConfig({ text: '', env: { USAGE_TRACKER_POSTGRES_URL: 'postgres://127.0.0.1:5432/usage', USAGE_TRACKER_SHARDS: ' 64 ' } });
    t.same(config.backends.postgres, { url: 'postgres://127.0.0.1:5432/usage', pool_max: 4, schema: 'public', batch_records_max: 5000, window_ms: 50, retry_base_ms: 200, retry_max_ms: 30000, statement_timeout_ms: 60000, conflict_strategy: 'latest_wins', source_priority: ['local', 'mirror'] });
    t.equal(config.cluster.shards, 64);
  });

  t.test('an empty variable counts as unset', async (t) => {
    t.same(loadConfig({ text: file, env: { USAGE_TRACKER_NODE_ID: '', USAGE_TRACKER_SHARDS: '' } }).node.id, 'file-node');
    t.equal(loadConfig({ text: file, env: { USAGE_TRACKER_SHARDS: '' } }).cluster.shards, 8);
  });
});

t.test('bad files: the lines a user reads', async (t) => {
  const cases: { name: string; text: string; problems: string[] }[] = [
    { name: 'unknown top-level key', text: 'nodes:\n  id: x\n', problems: ['nodes: unknown key'] },
    { name: 'unknown nested key', text: 'node:\n  name: x\n', problems: ['node.name: unknown key'] },
    { name: 'two unknown keys in one section', text: 'node:\n  extra: 1\n  other: 2\n', problems: ['node.extra: unknown key; node.other: unknown key'] },
    { name: 'a string where a number belongs', text: 'cluster:\n  shards: "16"\n', problems: ['cluster.shards: expected number, got string "16"'] },
    { name: 'a number where a string belongs', text: 'node:\n  id: 7\n', problems: ['node.id: expected string, got number 7'] },
    {
      name: 'a map where a list belongs',
      text: 'transport:\n  nats:\n    servers:\n      a: nats://127.0.0.1:4222\n',
      problems: ['transport.nats.servers: expected a list, got object'],
    },
    { name: 'a string where a list belongs', text: 'transport:\n  nats:\n    servers: nats://127.0.0.1:4222\n', problems: ['transport.nats.servers: expected a list, got string "nats://127.0.0.1:4222"'] },
    { name: 'an empty server list', text: 'transport:\n  nats:\n    servers: []\n', problems: ['transport.nats.servers: must list at least one server'] },
    { name: 'shards 0', text: 'cluster:\n  shards: 0\n', problems: ['cluster.shards: must be at least 1 (got 0)'] },
    { name: 'shards 5000', text: 'cluster:\n  shards: 5000\n', problems: ['cluster.shards: must be at most 4096 (got 5000)'] },
    {
      name: 'negative timeouts',
      text: 'transport:\n  nats:\n    connect_timeout_ms: -1\nlimits:\n  ask_timeout_ms: -5\nsupervision:\n  shutdown_ms: -100\n',
      problems: [
        'transport.nats.connect_timeout_ms: must be at least 1 (got -1)',
        'limits.ask_timeout_ms: must be at least 1 (got -5)',
        'supervision.shutdown_ms: must be at least 1 (got -100)',
      ],
    },
    { name: 'a negative backoff', text: 'supervision:\n  backoff_base_ms: -1\n', problems: ['supervision.backoff_base_ms: must not be negative (got -1)'] },
    { name: 'backoff_max_ms < backoff_base_ms', text: 'supervision:\n  backoff_base_ms: 1000\n  backoff_max_ms: 500\n', problems: ['supervision.backoff_max_ms: must be >= backoff_base_ms'] },
    { name: 'payload limit under 1 KiB', text: 'limits:\n  payload_bytes_max: 512\n', problems: ['limits.payload_bytes_max: must be at least 1024 (got 512)'] },
    { name: 'transport.kind tcp', text: 'transport:\n  kind: tcp\n', problems: ['transport.kind: must be embedded or nats (got "tcp")'] },
    { name: 'log.level loud', text: 'log:\n  level: loud\n', problems: ['log.level: must be one of trace, debug, info, warn, error, fatal, silent (got "loud")'] },
    {
      name: 'durability.fsync sometimes',
      text: 'durability:\n  fsync: sometimes\n',
      problems: [`durability.fsync: must be 'always' (acknowledge after fdatasync) or 'never' (got "sometimes")`],
    },
    {
      name: 'subject prefix with a wildcard',
      text: 'transport:\n  subject_prefix: usage.>\n',
      problems: [`transport.subject_prefix: must be dot-separated tokens of letters, digits, '_' or '-' (no wildcards) (got "usage.>")`],
    },
    {
      name: 'subject prefix with a space',
      text: 'transport:\n  subject_prefix: has space\n',
      problems: [`transport.subject_prefix: must be dot-separated tokens of letters, digits, '_' or '-' (no wildcards) (got "has space")`],
    },
    { name: 'invalid node id', text: 'node:\n  id: bad/id\n', problems: [`node.id: must be 1-64 letters, digits, '_' or '-' (got "bad/id")`] },
    { name: 'empty node id', text: 'node:\n  id: ""\n', problems: [`node.id: must be 1-64 letters, digits, '_' or '-' (got "")`] },
    {
      name: 'bad NATS URL',
      text: 'transport:\n  nats:\n    servers: [nats://127.0.0.1:4222, http://127.0.0.1:4222]\n',
      problems: ['transport.nats.servers.1: must be a NATS URL such as nats://127.0.0.1:4222 (got "http://127.0.0.1:4222")'],
    },
    {
      name: 'bad postgres URL scheme',
      text: 'backends:\n  postgres:\n    url: mysql://127.0.0.1/usage\n',
      problems: ['backends.postgres.url: must be a URL with scheme postgres or postgresql (got "mysql://127.0.0.1/usage")'],
    },
    {
      name: 'a PostgreSQL schema name that is not a plain identifier',
      text: 'backends:\n  postgres:\n    url: postgres://127.0.0.1/usage\n    schema: "x; DROP TABLE t"\n',
      problems: ['backends.postgres.schema: must be a lower-case SQL identifier (letters, digits, _; at most 63) (got "x; DROP TABLE t")'],
    },
    {
      name: 'a sync batch of zero records',
      text: 'backends:\n  postgres:\n    url: postgres://127.0.0.1/usage\n    batch_records_max: 0\n',
      problems: ['backends.postgres.batch_records_max: must be at least 1 (got 0)'],
    },
    { name: 'bad chroma URL scheme', text: 'backends:\n  chroma:\n    url: ftp://127.0.0.1\n', problems: ['backends.chroma.url: must be a URL with scheme http or https (got "ftp://127.0.0.1")'] },
    { name: 'duplicate keys', text: 'cluster:\n  shards: 16\n  shards: 8\n', problems: ['YAML: Map keys must be unique (line 3, column 3)'] },
    { name: 'duplicate sections', text: 'node:\n  id: a\nnode:\n  id: b\n', problems: ['YAML: Map keys must be unique (line 3, column 1)'] },
    {
      name: 'YAML syntax error with line and column',
      text: 'node:\n  id: a\n  data_dir: b: c\n',
      problems: ['YAML: Nested mappings are not allowed in compact mappings (line 3, column 13)'],
    },
    { name: 'a tab used for indentation', text: 'node:\n\tid: a\n', problems: ['YAML: Tabs are not allowed as indentation (line 2, column 1)'] },
    { name: 'a section with no keys (YAML null)', text: 'backends:\n  # postgres:\n  #   url: postgres://127.0.0.1/usage\n', problems: ['backends: expected object, got null'] },
    { name: 'a top-level list', text: '- node\n- cluster\n', problems: ['the top level must be a map of sections (node, cluster, transport, ...)'] },
    { name: 'a top-level scalar', text: 'hello\n', problems: ['the top level must be a map of sections (node, cluster, transport, ...)'] },
  ];

  for (const { name, text, problems } of cases) {
    t.test(name, async (t) => {
      const error = fileError(text);
      t.equal(error.name, 'ConfigError');
      t.equal(error.source, 'cluster.yml');
      t.same(error.problems, problems);
      t.equal(error.message, `invalid configuration in cluster.yml:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    });
  }

  t.test('several problems at once are all reported', async (t) => {
    const error = fileError('node:\n  id: "x y"\ncluster:\n  shards: 0\nbogus: 1\nlog:\n  level: loud\ntransport:\n  nats:\n    colour: red\n');
    t.equal(
      error.message,
      [
        'invalid configuration in cluster.yml:',
        `  - node.id: must be 1-64 letters, digits, '_' or '-' (got "x y")`,
        '  - cluster.shards: must be at least 1 (got 0)',
        '  - transport.nats.colour: unknown key',
        '  - log.level: must be one of trace, debug, info, warn, error, fatal, silent (got "loud")',
        '  - bogus: unknown key',
      ].join('\n'),
    );
  });

  t.test('a fraction where a whole number belongs says so', async (t) => {
    // The schema asks for 'must be a whole number'; describe() replaces it with zod's 'expected int'.
    t.same(fileError('cluster:\n  shards: 1.5\n').problems, ['cluster.shards: must be a whole number (got 1.5)']);
  });

  t.test('a file that does not exist', async (t) => {
    const missing = join(t.testdir(), 'missing.yml');
    const error = configError({ file: missing, env: {} });
    t.equal(error.message, `invalid configuration in ${missing}:\n  - file not found`);
    t.same(error.problems, ['file not found']);
  });
});

t.test('an environment variable with a bad value is named in the message', async (t) => {
  const cases: { env: NodeJS.ProcessEnv; problems: string[] }[] = [
    { env: { USAGE_TRACKER_SHARDS: 'many' }, problems: ['cluster.shards (from USAGE_TRACKER_SHARDS): expected number, got string "many"'] },
    { env: { USAGE_TRACKER_SHARDS: '0' }, problems: ['cluster.shards (from USAGE_TRACKER_SHARDS): must be at least 1 (got 0)'] },
    { env: { USAGE_TRACKER_TRANSPORT: 'tcp' }, problems: ['transport.kind (from USAGE_TRACKER_TRANSPORT): must be embedded or nats (got "tcp")'] },
    {
      env: { USAGE_TRACKER_NATS_URL: 'nats://127.0.0.1:4222,not a url' },
      problems: ['transport.nats.servers.1 (from USAGE_TRACKER_NATS_URL): must be a NATS URL such as nats://127.0.0.1:4222 (got "not a url")'],
    },
    { env: { USAGE_TRACKER_NATS_URL: ' , ' }, problems: ['transport.nats.servers (from USAGE_TRACKER_NATS_URL): must list at least one server'] },
    {
      env: { USAGE_TRACKER_POSTGRES_URL: 'http://127.0.0.1:5432/usage' },
      problems: ['backends.postgres.url (from USAGE_TRACKER_POSTGRES_URL): must be a URL with scheme postgres or postgresql (got "http://127.0.0.1:5432/usage")'],
    },
    { env: { USAGE_TRACKER_NODE_ID: 'a b' }, problems: [`node.id (from USAGE_TRACKER_NODE_ID): must be 1-64 letters, digits, '_' or '-' (got "a b")`] },
    { env: { USAGE_TRACKER_LOG_LEVEL: 'loud' }, problems: ['log.level (from USAGE_TRACKER_LOG_LEVEL): must be one of trace, debug, info, warn, error, fatal, silent (got "loud")'] },
  ];
  for (const { env, problems } of cases) {
    const error = fileError('cluster:\n  shards: 8\n', env);
    t.same(error.problems, problems, Object.keys(env).join());
  }
  t.equal(
    configError({ env: { USAGE_TRACKER_SHARDS: 'many' } }).message,
    'invalid configuration in defaults:\n  - cluster.shards (from USAGE_TRACKER_SHARDS): expected number, got string "many"',
    'with no file the source is the defaults',
  );
});
