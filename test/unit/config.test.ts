// cluster.yml loading: the defaults, the environment overrides, the paths
// made absolute, and the exact lines a user reads when the file is wrong.
// Every case passes `text`, `env` and `cwd` so nothing depends on the
// machine's environment or working directory.

import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { z } from 'zod';
import { ConfigError, ENV_OVERRIDES, loadConfig, PATH_KEYS, type LoadOptions } from '../../src/config/load.js';
import { issueMessage } from '../../src/config/issues.js';
import type { Config } from '../../src/config/schema.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const REPOSITORY_CLUSTER_YML = join(ROOT, 'cluster.yml');
const DOCS = readFileSync(join(ROOT, 'docs/configuration.md'), 'utf8');
/** The working directory every case loads in, unless it says otherwise. */
const CWD = '/srv/usage-tracker';

/** The defaults, with the relative paths resolved against `dir`. */
function defaultsIn(dir: string): Config {
  return {
    node: { id: 'node-1', data_dir: join(dir, 'data') },
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
      archive_dir: join(dir, 'archive'),
      export_dir: join(dir, 'exports'),
    },
    backup: { target_dir: join(dir, 'backups'), full_interval_hours: 168, incremental_interval_hours: 24, schedule: true, wal_archive: true, wal_archive_interval_s: 30 },
    storage: { memtable_records_max: 20_000, seal_interval_s: 600, cache_bytes_max: 268_435_456 },
    ingest: { pool_size: 2, price_file: join(dir, 'prices.yml') },
    durability: { fsync: 'always' },
    limits: { payload_bytes_max: 1_048_576, batch_records_max: 1000, mailbox_capacity: 4096, ask_timeout_ms: 5000, query_timeout_ms: 5000 },
    supervision: { intensity: 5, period_ms: 10_000, backoff_base_ms: 100, backoff_max_ms: 5000, shutdown_ms: 5000 },
    log: { level: 'info', format: 'auto' },
  };
}

const DEFAULTS = defaultsIn(CWD);
const POSTGRES_DEFAULTS = { pool_max: 4, schema: 'public', batch_records_max: 5000, window_ms: 50, retry_base_ms: 200, retry_max_ms: 30000, statement_timeout_ms: 60000, conflict_strategy: 'latest_wins', source_priority: ['local', 'mirror'] };
const CHROMA_DEFAULTS = { collection_prefix: '', batch_records_max: 1000, window_ms: 200, retry_base_ms: 200, retry_max_ms: 30000, request_timeout_ms: 30000 };

/** The ConfigError that loading must raise; a configuration that loads fails the test. */
function configError(options: LoadOptions): ConfigError {
  try {
    loadConfig({ cwd: CWD, ...options });
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('expected a ConfigError, but the configuration loaded');
}

/** Loads `text` as if it were ./cluster.yml. */
const fileError = (text: string, env: NodeJS.ProcessEnv = {}) => configError({ file: 'cluster.yml', text, env });
const load = (text: string, env: NodeJS.ProcessEnv = {}) => loadConfig({ text, env, cwd: CWD });

t.test('defaults', async (t) => {
  t.test('no file and no environment give the defaults', async (t) => {
    t.same(loadConfig({ env: {}, cwd: CWD }), DEFAULTS);
  });

  t.test('an empty file, or one holding only comments, gives the defaults', async (t) => {
    t.same(load(''), DEFAULTS);
    t.same(load('# nothing here\n\n'), DEFAULTS);
  });

  t.test("the repository's cluster.yml loads and equals the defaults", async (t) => {
    t.same(loadConfig({ file: REPOSITORY_CLUSTER_YML, env: {}, cwd: CWD }), defaultsIn(ROOT));
  });

  t.test('an empty section written as {} gives the defaults', async (t) => {
    t.same(load('backends: {}\nnode: {}\n'), DEFAULTS);
  });

  t.test('a file that sets some keys keeps the defaults of the others', async (t) => {
    const config = load('cluster:\n  shards: 4\nbackends:\n  postgres:\n    url: postgres://127.0.0.1:5432/usage\n');
    t.equal(config.cluster.shards, 4);
    t.equal(config.cluster.id, 'default');
    t.same(config.backends, { postgres: { url: 'postgres://127.0.0.1:5432/usage', ...POSTGRES_DEFAULTS } });
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
    '  postgres: { url: postgres://file:5432/db, schema: file_schema }',
    '  chroma: { url: http://file:8000, collection_prefix: file-, batch_records_max: 10, window_ms: 11, retry_base_ms: 12, retry_max_ms: 13, request_timeout_ms: 14 }',
    'backup: { target_dir: /file/backups }',
    'durability: { fsync: never }',
    'log: { level: warn, format: json }',
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
    { name: 'USAGE_TRACKER_POSTGRES_URL', value: 'postgresql://127.0.0.1:5432/env', read: (c) => c.backends.postgres?.url, fromFile: 'postgres://file:5432/db', expected: 'postgresql://127.0.0.1:5432/env' },
    { name: 'USAGE_TRACKER_POSTGRES_SCHEMA', value: 'env_schema', read: (c) => c.backends.postgres?.schema, fromFile: 'file_schema', expected: 'env_schema' },
    { name: 'USAGE_TRACKER_CHROMA_URL', value: 'https://env:8443', read: (c) => c.backends.chroma?.url, fromFile: 'http://file:8000', expected: 'https://env:8443' },
    { name: 'USAGE_TRACKER_CHROMA_COLLECTION_PREFIX', value: 'env-', read: (c) => c.backends.chroma?.collection_prefix, fromFile: 'file-', expected: 'env-' },
    { name: 'USAGE_TRACKER_CHROMA_BATCH_RECORDS_MAX', value: '20', read: (c) => c.backends.chroma?.batch_records_max, fromFile: 10, expected: 20 },
    { name: 'USAGE_TRACKER_CHROMA_WINDOW_MS', value: '21', read: (c) => c.backends.chroma?.window_ms, fromFile: 11, expected: 21 },
    { name: 'USAGE_TRACKER_CHROMA_RETRY_BASE_MS', value: '22', read: (c) => c.backends.chroma?.retry_base_ms, fromFile: 12, expected: 22 },
    { name: 'USAGE_TRACKER_CHROMA_RETRY_MAX_MS', value: '23', read: (c) => c.backends.chroma?.retry_max_ms, fromFile: 13, expected: 23 },
    { name: 'USAGE_TRACKER_CHROMA_REQUEST_TIMEOUT_MS', value: '24', read: (c) => c.backends.chroma?.request_timeout_ms, fromFile: 14, expected: 24 },
    { name: 'USAGE_TRACKER_BACKUP_DIR', value: '/env/backups', read: (c) => c.backup.target_dir, fromFile: '/file/backups', expected: '/env/backups' },
    { name: 'USAGE_TRACKER_FSYNC', value: 'always', read: (c) => c.durability.fsync, fromFile: 'never', expected: 'always' },
    { name: 'USAGE_TRACKER_LOG_LEVEL', value: 'debug', read: (c) => c.log.level, fromFile: 'warn', expected: 'debug' },
    { name: 'USAGE_TRACKER_LOG_FORMAT', value: 'pretty', read: (c) => c.log.format, fromFile: 'json', expected: 'pretty' },
  ];

  t.test('every variable of ENV_OVERRIDES has a case here', async (t) => {
    t.same(cases.map((c) => c.name).sort(), Object.keys(ENV_OVERRIDES).sort());
  });

  t.test('every key of backends.chroma, and backends.postgres.schema, has its variable, named after the key', async (t) => {
    const chroma = load('backends:\n  chroma:\n    url: http://127.0.0.1:8000\n').backends.chroma!;
    for (const key of Object.keys(chroma)) {
      t.same(ENV_OVERRIDES[`USAGE_TRACKER_CHROMA_${key.toUpperCase()}`]?.path, ['backends', 'chroma', key], `backends.chroma.${key}`);
    }
    t.same(ENV_OVERRIDES.USAGE_TRACKER_POSTGRES_SCHEMA?.path, ['backends', 'postgres', 'schema']);
  });

  t.test('every variable is documented in the table of docs/configuration.md, beside its key', async (t) => {
    for (const [name, { path }] of Object.entries(ENV_OVERRIDES)) {
      t.ok(DOCS.includes(`| \`${name}\` | \`${path.join('.')}\` |`), name);
    }
  });

  for (const { name, value, read, fromFile, expected } of cases) {
    t.test(`${name} wins over the file`, async (t) => {
      t.same(read(load(file)), fromFile, 'the file alone');
      t.same(read(load(file, { [name]: value })), expected, 'with the variable');
    });
  }

  t.test('a variable also sets a key the file leaves out', async (t) => {
    const config = load('', { USAGE_TRACKER_POSTGRES_URL: 'postgres://127.0.0.1:5432/usage', USAGE_TRACKER_SHARDS: ' 64 ' });
    t.same(config.backends.postgres, { url: 'postgres://127.0.0.1:5432/usage', ...POSTGRES_DEFAULTS });
    t.equal(config.cluster.shards, 64);
    const chroma = load('', { USAGE_TRACKER_CHROMA_URL: 'http://127.0.0.1:8000', USAGE_TRACKER_CHROMA_WINDOW_MS: '500', USAGE_TRACKER_POSTGRES_URL: 'postgres://h/db', USAGE_TRACKER_POSTGRES_SCHEMA: 'usage' });
    t.same(chroma.backends.chroma, { url: 'http://127.0.0.1:8000', ...CHROMA_DEFAULTS, window_ms: 500 });
    t.equal(chroma.backends.postgres?.schema, 'usage');
  });

  t.test('an empty variable counts as unset', async (t) => {
    t.same(load(file, { USAGE_TRACKER_NODE_ID: '', USAGE_TRACKER_SHARDS: '' }).node.id, 'file-node');
    t.equal(load(file, { USAGE_TRACKER_SHARDS: '' }).cluster.shards, 8);
    t.equal(load(file, { USAGE_TRACKER_CHROMA_COLLECTION_PREFIX: '' }).backends.chroma?.collection_prefix, 'file-');
  });

  t.test('a variable for a key of a mirror the file does not configure asks for its url, naming both variables', async (t) => {
    t.same(fileError('', { USAGE_TRACKER_CHROMA_WINDOW_MS: '100' }).problems, [
      'backends.chroma.url: is required, because USAGE_TRACKER_CHROMA_WINDOW_MS turns backends.chroma on; set backends.chroma.url in the file or USAGE_TRACKER_CHROMA_URL',
    ]);
    t.same(fileError('', { USAGE_TRACKER_POSTGRES_SCHEMA: 'usage' }).problems, [
      'backends.postgres.url: is required, because USAGE_TRACKER_POSTGRES_SCHEMA turns backends.postgres on; set backends.postgres.url in the file or USAGE_TRACKER_POSTGRES_URL',
    ]);
    t.same(fileError('backends:\n  postgres: {}\n').problems, ['backends.postgres.url: is required'], 'a section the file opens says only that');
  });
});

/** Checks each case's problems and the message built from them. */
function expectProblems(t: Test, cases: { name: string; text: string; env?: NodeJS.ProcessEnv; problems: string[] }[]): void {
  for (const { name, text, env, problems } of cases) {
    t.test(name, async (t) => {
      const error = fileError(text, env);
      t.equal(error.name, 'ConfigError');
      t.equal(error.source, 'cluster.yml');
      t.same(error.problems, problems);
      t.equal(error.message, `invalid configuration in cluster.yml:\n${problems.map((p) => `  - ${p.replace(/\n/g, '\n    ')}`).join('\n')}`);
    });
  }
}

const POSTGRES = 'backends:\n  postgres:\n    url: postgres://127.0.0.1/usage\n';

t.test('bad values: one sentence per problem, naming the key, what is allowed and what was given', async (t) => {
  t.test('a value of the wrong type (zod invalid_type)', async (t) => {
    expectProblems(t, [
      { name: 'a quoted number', text: 'cluster:\n  shards: "16"\n', problems: ['cluster.shards: must be a whole number from 1 to 4096 (got the string "16"; write numbers without quotes)'] },
      { name: 'a word where a number belongs', text: 'cluster:\n  shards: many\n', problems: ['cluster.shards: must be a whole number from 1 to 4096 (got the string "many")'] },
      { name: 'YAML .nan', text: 'cluster:\n  shards: .nan\n', problems: ['cluster.shards: must be a whole number from 1 to 4096 (got .nan)'] },
      { name: 'YAML .inf', text: 'limits:\n  ask_timeout_ms: .inf\n', problems: ['limits.ask_timeout_ms: must be a whole number from 1 to 600000 (got .inf)'] },
      { name: 'a fraction', text: 'cluster:\n  shards: 1.5\n', problems: ['cluster.shards: must be a whole number from 1 to 4096 (got 1.5)'] },
      { name: 'a number beyond safe integers says it once', text: 'cluster:\n  shards: 99999999999999999999\n', problems: ['cluster.shards: must be a whole number from 1 to 4096 (got 100000000000000000000)'] },
      { name: 'a word where a number belongs: its bounds come from the schema', text: 'retention:\n  schedule_interval_hours: daily\n', problems: ['retention.schedule_interval_hours: must be a number from 0 to 8760 (got the string "daily")'] },
      { name: 'a number where a string belongs', text: 'node:\n  id: 7\n', problems: ['node.id: must be a string (got 7)'] },
      { name: 'a quoted boolean', text: 'backup:\n  schedule: "true"\n', problems: ['backup.schedule: must be true or false (got the string "true"; write true or false without quotes)'] },
      { name: 'yes is not a boolean in YAML 1.2', text: 'backup:\n  wal_archive: yes\n', problems: ['backup.wal_archive: must be true or false (got the string "yes")'] },
      { name: 'a map where a list belongs', text: 'transport:\n  nats:\n    servers:\n      a: nats://127.0.0.1:4222\n', problems: ['transport.nats.servers: must be a list (got a map)'] },
      { name: 'a string where a list belongs', text: 'transport:\n  nats:\n    servers: nats://127.0.0.1:4222\n', problems: ['transport.nats.servers: must be a list (got the string "nats://127.0.0.1:4222")'] },
      { name: 'a list where a section belongs', text: 'node: [a, b]\n', problems: ['node: must be a map (key: value lines) (got a list)'] },
      { name: 'a number in a list of strings', text: 'transport:\n  nats:\n    servers: [1]\n', problems: ['transport.nats.servers.0: must be a string (got 1)'] },
      { name: 'a list item that is not a map', text: 'retention:\n  policies:\n    - 5\n', problems: ['retention.policies.0: must be a map (key: value lines) (got 5)'] },
      {
        name: 'a section with no keys (YAML null)',
        text: 'backends:\n  # postgres:\n  #   url: postgres://127.0.0.1/usage\n',
        problems: ['backends: is empty (nothing under it but comments, which YAML reads as null); delete the line or write backends: {}'],
      },
      { name: 'a required key left out', text: 'backends:\n  postgres:\n    schema: usage\n', problems: ['backends.postgres.url: is required'] },
      { name: 'a required key of a list item left out', text: 'retention:\n  legal_holds:\n    - {id: h1}\n', problems: ['retention.legal_holds.0.reason: is required'] },
    ]);
  });

  t.test('a value outside its allowed set (zod invalid_value)', async (t) => {
    expectProblems(t, [
      { name: 'transport.kind tcp', text: 'transport:\n  kind: tcp\n', problems: ['transport.kind: must be embedded or nats (got "tcp")'] },
      { name: 'transport.kind a number', text: 'transport:\n  kind: 5\n', problems: ['transport.kind: must be embedded or nats (got 5)'] },
      { name: 'log.level loud', text: 'log:\n  level: loud\n', problems: ['log.level: must be one of trace, debug, info, warn, error, fatal, silent (got "loud")'] },
      { name: 'log.format colour', text: 'log:\n  format: colour\n', problems: ['log.format: must be auto, json or pretty (got "colour")'] },
      { name: 'durability.fsync sometimes', text: 'durability:\n  fsync: sometimes\n', problems: [`durability.fsync: must be 'always' (acknowledge after fdatasync) or 'never' (got "sometimes")`] },
      { name: 'a conflict strategy', text: `${POSTGRES}    conflict_strategy: wins\n`, problems: ['backends.postgres.conflict_strategy: must be latest_wins, merge, manual or source_priority (got "wins")'] },
      { name: 'a source in source_priority', text: `${POSTGRES}    source_priority: [local, remote]\n`, problems: [`backends.postgres.source_priority.1: must be 'local' or 'mirror' (got "remote")`] },
      { name: 'a retention policy type', text: 'retention:\n  policies:\n    - {name: p, category: raw_usage, type: weekly, action: delete}\n', problems: ['retention.policies.0.type: must be one of time, size, count, conditional (got "weekly")'] },
    ]);
  });

  t.test('a number, string or list out of range (zod too_small, too_big)', async (t) => {
    expectProblems(t, [
      { name: 'shards 0', text: 'cluster:\n  shards: 0\n', problems: ['cluster.shards: must be a whole number from 1 to 4096 (got 0)'] },
      { name: 'shards 5000', text: 'cluster:\n  shards: 5000\n', problems: ['cluster.shards: must be a whole number from 1 to 4096 (got 5000)'] },
      {
        name: 'negative timeouts',
        text: 'transport:\n  nats:\n    connect_timeout_ms: -1\nlimits:\n  ask_timeout_ms: -5\nsupervision:\n  shutdown_ms: -100\n',
        problems: [
          'transport.nats.connect_timeout_ms: must be a whole number from 1 to 600000 (got -1)',
          'limits.ask_timeout_ms: must be a whole number from 1 to 600000 (got -5)',
          'supervision.shutdown_ms: must be a whole number from 1 to 600000 (got -100)',
        ],
      },
      { name: 'a negative backoff', text: 'supervision:\n  backoff_base_ms: -1\n', problems: ['supervision.backoff_base_ms: must be a whole number from 0 to 60000 (got -1)'] },
      { name: 'payload limit under 1 KiB', text: 'limits:\n  payload_bytes_max: 512\n', problems: ['limits.payload_bytes_max: must be a whole number from 1024 to 67108864 (got 512)'] },
      { name: 'a cache of 5 bytes', text: 'storage:\n  cache_bytes_max: 5\n', problems: ['storage.cache_bytes_max: must be a whole number from 1048576 to 68719476736 (got 5)'] },
      { name: 'a sync batch of zero records', text: `${POSTGRES}    batch_records_max: 0\n`, problems: ['backends.postgres.batch_records_max: must be a whole number from 1 to 100000 (got 0)'] },
      { name: 'a negative retention interval', text: 'retention:\n  schedule_interval_hours: -1\n', problems: ['retention.schedule_interval_hours: must not be negative (got -1)'] },
      { name: 'an empty data directory', text: 'node:\n  data_dir: ""\n', problems: ['node.data_dir: must not be empty (got "")'] },
      { name: 'an empty NATS user', text: 'transport:\n  nats:\n    user: ""\n', problems: ['transport.nats.user: must not be empty (got "")'] },
      { name: 'an empty server list', text: 'transport:\n  nats:\n    servers: []\n', problems: ['transport.nats.servers: must list at least one server'] },
      { name: 'one source in source_priority', text: `${POSTGRES}    source_priority: [local]\n`, problems: ['backends.postgres.source_priority: must list local and mirror, once each, in order of priority'] },
      { name: 'a compress level of 12', text: 'retention:\n  policies:\n    - {name: p, category: raw_usage, type: time, action: compress, max_age_days: 3, compress_level: 12}\n', problems: ['retention.policies.0.compress_level: must be at most 9 (got 12)'] },
    ]);
  });

  t.test('a string of the wrong form (zod invalid_format, custom refinements)', async (t) => {
    expectProblems(t, [
      { name: 'subject prefix with a wildcard', text: 'transport:\n  subject_prefix: usage.>\n', problems: [`transport.subject_prefix: must be dot-separated tokens of letters, digits, '_' or '-' (no wildcards) (got "usage.>")`] },
      { name: 'invalid node id', text: 'node:\n  id: bad/id\n', problems: [`node.id: must be 1-64 letters, digits, '_' or '-' (got "bad/id")`] },
      { name: 'empty node id', text: 'node:\n  id: ""\n', problems: [`node.id: must be 1-64 letters, digits, '_' or '-' (got "")`] },
      { name: 'a queue group with a space', text: 'transport:\n  nats:\n    queue_group: "a b"\n', problems: ['transport.nats.queue_group: must be 1-64 letters, digits, _, . or - (got "a b")'] },
      {
        name: 'bad NATS URL',
        text: 'transport:\n  nats:\n    servers: [nats://127.0.0.1:4222, http://127.0.0.1:4222]\n',
        problems: ['transport.nats.servers.1: must be a NATS URL such as nats://127.0.0.1:4222 (got "http://127.0.0.1:4222")'],
      },
      { name: 'bad postgres URL scheme', text: 'backends:\n  postgres:\n    url: mysql://127.0.0.1/usage\n', problems: ['backends.postgres.url: must be a URL with scheme postgres or postgresql (got "mysql://127.0.0.1/usage")'] },
      { name: 'an empty postgres URL says it once', text: 'backends:\n  postgres:\n    url: ""\n', problems: ['backends.postgres.url: must be a URL with scheme postgres or postgresql (got "")'] },
      {
        name: 'a PostgreSQL schema name that is not a plain identifier',
        text: `${POSTGRES}    schema: "x; DROP TABLE t"\n`,
        problems: ['backends.postgres.schema: must be a lower-case SQL identifier (letters, digits, _; at most 63) (got "x; DROP TABLE t")'],
      },
      { name: 'bad chroma URL scheme', text: 'backends:\n  chroma:\n    url: ftp://127.0.0.1\n', problems: ['backends.chroma.url: must be a URL with scheme http or https (got "ftp://127.0.0.1")'] },
      { name: 'backoff_max_ms < backoff_base_ms', text: 'supervision:\n  backoff_base_ms: 1000\n  backoff_max_ms: 500\n', problems: ['supervision.backoff_max_ms: must be at least backoff_base_ms, which is 1000 (got 500)'] },
      { name: 'a time policy without its age', text: 'retention:\n  policies:\n    - {name: p, category: raw_usage, type: time, action: delete}\n', problems: ['retention.policies.0.max_age_days: is required for a time policy'] },
      {
        name: 'two policies of one name',
        text: 'retention:\n  policies:\n    - {name: p, category: raw_usage, type: time, action: delete, max_age_days: 3}\n    - {name: p, category: raw_usage, type: time, action: delete, max_age_days: 4}\n',
        problems: ['retention.policies.1: policy name p appears twice'],
      },
      { name: 'a hold that ends before it starts', text: 'retention:\n  legal_holds:\n    - {id: h1, reason: r, from: 10, to: 5}\n', problems: ['retention.legal_holds.0.from: must be before to'] },
    ]);
  });

  t.test('a value that fits no alternative (zod invalid_union)', async (t) => {
    expectProblems(t, [
      { name: 'a hold time that is neither a number nor a string', text: 'retention:\n  legal_holds:\n    - {id: h1, reason: r, from: true}\n', problems: ['retention.legal_holds.0.from: must be epoch milliseconds or an ISO 8601 string (got true)'] },
      { name: 'a hold time that is not a date', text: 'retention:\n  legal_holds:\n    - {id: h1, reason: r, from: "soon"}\n', problems: ['retention.legal_holds.0.from: must be epoch milliseconds or an ISO 8601 string (got "soon")'] },
    ]);
  });

  t.test('a key the schema does not know (zod unrecognized_keys), with the key it likely meant', async (t) => {
    expectProblems(t, [
      { name: 'a misspelt section', text: 'nodes:\n  id: x\n', problems: ['nodes: unknown key; did you mean node?'] },
      { name: 'camelCase for snake_case', text: 'node:\n  dataDir: x\n', problems: ['node.dataDir: unknown key; did you mean node.data_dir?'] },
      { name: 'a dash for an underscore', text: 'node:\n  data-dir: x\n', problems: ['node.data-dir: unknown key; did you mean node.data_dir?'] },
      { name: 'an unknown section', text: 'colour: red\n', problems: ['colour: unknown key (the sections are node, cluster, transport, backends, retention, backup, storage, ingest, durability, limits, supervision, log)'] },
      { name: 'an unknown nested key', text: 'node:\n  name: x\n', problems: ['node.name: unknown key (node takes id, data_dir)'] },
      { name: 'two unknown keys in one section, one line each', text: 'node:\n  extra: 1\n  other: 2\n', problems: ['node.extra: unknown key (node takes id, data_dir)', 'node.other: unknown key (node takes id, data_dir)'] },
      { name: 'an unknown key in a list item', text: 'retention:\n  legal_holds:\n    - {id: h1, reason: r, until: 5}\n', problems: ['retention.legal_holds.0.until: unknown key (retention.legal_holds.0 takes id, user_id, from, to, reason)'] },
    ]);
  });

  t.test('no problem line carries zod wording', async (t) => {
    // A file that trips every kind of issue the schema can raise, at once.
    const text = [
      'node: { id: 7, data_dir: "", extra: 1 }',
      'cluster: { shards: .nan }',
      'transport: { kind: 5, nats: { servers: [], user: "", queue_group: "a b" } }',
      'backends: { postgres: { schema: "X", source_priority: [local] }, chroma: { url: 1 } }',
      'retention:',
      '  schedule_interval_hours: x',
      '  policies: [{name: p, category: c, type: t, action: a, where: {}}]',
      '  legal_holds: [{id: "", reason: "", from: true, to: [1]}]',
      'backup: { schedule: "yes", wal_archive_interval_s: 61 }',
      'storage: { cache_bytes_max: 1.5 }',
      'supervision: { backoff_base_ms: 10, backoff_max_ms: 1 }',
      'log: { level: 3, format: null }',
    ].join('\n');
    const problems = fileError(text).problems;
    t.ok(problems.length >= 20, `${problems.length} problems`);
    for (const problem of problems) t.notMatch(problem, /Invalid (input|option|string|element|key)|Too (small|big)|expected \w+, received|received NaN|Unrecognized key|Required/, problem);
  });

  t.test('the error map words the issues this schema happens not to raise', async (t) => {
    const schema = z.object({
      pattern: z.string().regex(/^[a-z]+$/),
      step: z.number().multipleOf(5),
      either: z.union([z.number(), z.string()]),
      more: z.number().gt(3),
      tags: z.array(z.string()).max(1),
      mode: z.literal('x'),
    });
    const result = schema.safeParse({ pattern: 'A', step: 7, either: true, more: 3, tags: ['a', 'b'], mode: 'y' }, { error: issueMessage(new WeakMap()) });
    t.same(
      result.error?.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`),
      ['pattern: must match the pattern /^[a-z]+$/', 'step: must be a multiple of 5', 'either: must be a number or a string', 'more: must be more than 3', 'tags: must list at most 1 item', 'mode: must be x'],
    );
  });

  t.test('several problems at once are all reported, in the order of the schema', async (t) => {
    const error = fileError('node:\n  id: "x y"\ncluster:\n  shards: 0\nbogus: 1\nlog:\n  level: loud\ntransport:\n  nats:\n    colour: red\n');
    t.equal(
      error.message,
      [
        'invalid configuration in cluster.yml:',
        `  - node.id: must be 1-64 letters, digits, '_' or '-' (got "x y")`,
        '  - cluster.shards: must be a whole number from 1 to 4096 (got 0)',
        '  - transport.nats.colour: unknown key (transport.nats takes servers, user, pass, token, connect_timeout_ms, reconnect_base_ms, reconnect_max_ms, queue_group)',
        '  - log.level: must be one of trace, debug, info, warn, error, fatal, silent (got "loud")',
        '  - bogus: unknown key (the sections are node, cluster, transport, backends, retention, backup, storage, ingest, durability, limits, supervision, log)',
      ].join('\n'),
    );
  });

  t.test('a top-level list or scalar', async (t) => {
    expectProblems(t, [
      { name: 'a top-level list', text: '- node\n- cluster\n', problems: ['the top level must be a map of sections (node, cluster, transport, ...)'] },
      { name: 'a top-level scalar', text: 'hello\n', problems: ['the top level must be a map of sections (node, cluster, transport, ...)'] },
    ]);
  });

  t.test('a file that does not exist, or is a directory', async (t) => {
    const dir = t.testdir();
    const missing = join(dir, 'missing.yml');
    const error = configError({ file: missing, env: {} });
    t.equal(error.message, `invalid configuration in ${missing}:\n  - file not found`);
    t.same(error.problems, ['file not found']);
    t.same(configError({ file: dir, env: {} }).problems, ['is a directory, not a file']);
  });
});

t.test('YAML errors point at the line and column they are on, with the file name and the line itself', async (t) => {
  expectProblems(t, [
    {
      name: 'a nested mapping on one line',
      text: 'node:\n  id: a\n  data_dir: b: c\n',
      problems: ['cluster.yml:3:13: YAML syntax error: Nested mappings are not allowed in compact mappings\n3 |   data_dir: b: c\n  |             ^'],
    },
    { name: 'duplicate keys', text: 'cluster:\n  shards: 16\n  shards: 8\n', problems: ['cluster.yml:3:3: YAML syntax error: the key shards appears twice in the same map\n3 |   shards: 8\n  |   ^'] },
    { name: 'duplicate sections', text: 'node:\n  id: a\nnode:\n  id: b\n', problems: ['cluster.yml:3:1: YAML syntax error: the key node appears twice in the same map\n3 | node:\n  | ^'] },
    { name: 'a tab used for indentation', text: 'node:\n\tid: a\n', problems: ['cluster.yml:2:1: YAML syntax error: Tabs are not allowed as indentation\n2 | →id: a\n  | ^'] },
    {
      name: 'an unclosed quote is reported where it opens, not where the file ends',
      text: 'node:\n  id: "abc\ncluster:\n  shards: 2\n',
      problems: ['cluster.yml:2:7: YAML syntax error: Missing closing "quote (the quoted value that starts here is not closed)\n2 |   id: "abc\n  |       ^'],
    },
    {
      name: 'an unclosed flow map is reported where it opens',
      text: 'log: {level: info\ncluster:\n  shards: 2\n',
      problems: ['cluster.yml:1:6: YAML syntax error: Flow map in block collection must be sufficiently indented and end with a } (the { here is not closed)\n1 | log: {level: info\n  |      ^'],
    },
    {
      name: 'one mistake is one problem, not the errors the parser derives from it',
      text: 'key: value\n- item\n',
      problems: ['cluster.yml:2:1: YAML syntax error: Implicit keys need to be on a single line\n2 | - item\n  | ^'],
    },
    { name: 'an alias without its anchor', text: 'node:\n  id: &a x\n  data_dir: *b\n', problems: ['cluster.yml:3:13: YAML error: the alias *b refers to no anchor &b set before it\n3 |   data_dir: *b\n  |             ^'] },
    {
      name: 'two documents in one file',
      text: 'node:\n  id: a\n---\nnode: {}\n',
      problems: ['cluster.yml:3:1: YAML syntax error: Source contains multiple documents; please use YAML.parseAllDocuments()\n3 | ---\n  | ^'],
    },
  ]);

  t.test('the line numbers are those of the file on disk', async (t) => {
    const file = join(t.testdir(), 'syn.yml');
    writeFileSync(file, '# comment\nnode:\n  id: a\n  data_dir: b: c\n');
    t.equal(configError({ file, env: {} }).message, `invalid configuration in ${file}:\n  - ${file}:4:13: YAML syntax error: Nested mappings are not allowed in compact mappings\n    4 |   data_dir: b: c\n      |             ^`);
  });
});

t.test('an environment variable with a bad value is named in the message', async (t) => {
  const cases: { env: NodeJS.ProcessEnv; problems: string[] }[] = [
    { env: { USAGE_TRACKER_SHARDS: 'many' }, problems: ['cluster.shards (from USAGE_TRACKER_SHARDS): must be a whole number from 1 to 4096 (got the string "many")'] },
    { env: { USAGE_TRACKER_SHARDS: '1.5' }, problems: ['cluster.shards (from USAGE_TRACKER_SHARDS): must be a whole number from 1 to 4096 (got 1.5)'] },
    { env: { USAGE_TRACKER_SHARDS: '0' }, problems: ['cluster.shards (from USAGE_TRACKER_SHARDS): must be a whole number from 1 to 4096 (got 0)'] },
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
    {
      env: { USAGE_TRACKER_POSTGRES_URL: 'postgres://h/db', USAGE_TRACKER_POSTGRES_SCHEMA: 'Usage' },
      problems: ['backends.postgres.schema (from USAGE_TRACKER_POSTGRES_SCHEMA): must be a lower-case SQL identifier (letters, digits, _; at most 63) (got "Usage")'],
    },
    {
      env: { USAGE_TRACKER_CHROMA_URL: 'http://h:8000', USAGE_TRACKER_CHROMA_WINDOW_MS: 'soon' },
      problems: ['backends.chroma.window_ms (from USAGE_TRACKER_CHROMA_WINDOW_MS): must be a whole number from 1 to 60000 (got the string "soon")'],
    },
    { env: { USAGE_TRACKER_NODE_ID: 'a b' }, problems: [`node.id (from USAGE_TRACKER_NODE_ID): must be 1-64 letters, digits, '_' or '-' (got "a b")`] },
    { env: { USAGE_TRACKER_LOG_LEVEL: 'loud' }, problems: ['log.level (from USAGE_TRACKER_LOG_LEVEL): must be one of trace, debug, info, warn, error, fatal, silent (got "loud")'] },
    { env: { USAGE_TRACKER_LOG_FORMAT: 'text' }, problems: ['log.format (from USAGE_TRACKER_LOG_FORMAT): must be auto, json or pretty (got "text")'] },
  ];
  for (const { env, problems } of cases) {
    const error = fileError('cluster:\n  shards: 8\n', env);
    t.same(error.problems, problems, Object.keys(env).join());
  }
  t.equal(
    configError({ env: { USAGE_TRACKER_SHARDS: 'many' } }).message,
    'invalid configuration in defaults:\n  - cluster.shards (from USAGE_TRACKER_SHARDS): must be a whole number from 1 to 4096 (got the string "many")',
    'with no file the source is the defaults',
  );
});

t.test('relative paths', async (t) => {
  const relative = [
    'node: { data_dir: ./d }',
    'ingest: { price_file: conf/prices.yml }',
    'backup: { target_dir: ../b }',
    'retention: { archive_dir: a, export_dir: ./x/e }',
    '',
  ].join('\n');

  t.test("resolve against the config file's directory, not the working directory", async (t) => {
    const dir = join(t.testdir(), 'etc');
    mkdirSync(dir);
    const file = join(dir, 'cluster.yml');
    writeFileSync(file, relative);
    const config = loadConfig({ file, env: {}, cwd: CWD });
    t.equal(config.node.data_dir, join(dir, 'd'));
    t.equal(config.ingest.price_file, join(dir, 'conf/prices.yml'));
    t.equal(config.backup.target_dir, join(dir, '../b'));
    t.equal(config.retention.archive_dir, join(dir, 'a'));
    t.equal(config.retention.export_dir, join(dir, 'x/e'));
  });

  t.test('a file named relative to the working directory: its directory, under that', async (t) => {
    const config = loadConfig({ file: 'conf/cluster.yml', text: relative, env: {}, cwd: CWD });
    t.equal(config.node.data_dir, join(CWD, 'conf/d'));
    t.equal(config.ingest.price_file, join(CWD, 'conf/conf/prices.yml'));
  });

  t.test("the defaults a file leaves in place resolve against the file's directory too", async (t) => {
    t.same(loadConfig({ file: '/etc/usage-tracker/cluster.yml', text: '', env: {}, cwd: CWD }), defaultsIn('/etc/usage-tracker'));
  });

  t.test('with no file, against the working directory', async (t) => {
    t.same(loadConfig({ env: {}, cwd: '/var/lib/ut' }), defaultsIn('/var/lib/ut'));
    t.equal(loadConfig({ text: relative, env: {}, cwd: '/var/lib/ut' }).backup.target_dir, '/var/lib/b');
  });

  t.test('a relative path from a variable resolves against the working directory, as a shell path does', async (t) => {
    const config = loadConfig({ file: '/etc/usage-tracker/cluster.yml', text: relative, env: { USAGE_TRACKER_DATA_DIR: 'here', USAGE_TRACKER_BACKUP_DIR: '../there' }, cwd: CWD });
    t.equal(config.node.data_dir, join(CWD, 'here'));
    t.equal(config.backup.target_dir, join(CWD, '../there'));
    t.equal(config.ingest.price_file, '/etc/usage-tracker/conf/prices.yml', 'the keys from the file still resolve against it');
  });

  t.test('absolute paths are kept as they are', async (t) => {
    const config = loadConfig({ file: '/etc/ut/cluster.yml', text: 'node: { data_dir: /data/ut }\n', env: {}, cwd: CWD });
    t.equal(config.node.data_dir, '/data/ut');
  });

  t.test('PATH_KEYS lists every key that names a file or directory, and each comes out absolute', async (t) => {
    const leaves = (value: unknown, prefix: string): [string, unknown][] =>
      value !== null && typeof value === 'object' && !Array.isArray(value)
        ? Object.entries(value).flatMap(([key, inner]) => leaves(inner, prefix ? `${prefix}.${key}` : key))
        : [[prefix, value]];
    const config = load('');
    const pathLike = leaves(config, '').filter(([key]) => /(_dir|_file|_path)$/.test(key));
    t.same(pathLike.map(([key]) => key).sort(), [...PATH_KEYS].sort());
    for (const [key, value] of pathLike) t.ok(typeof value === 'string' && isAbsolute(value), `${key} is absolute`);
  });
});

t.test('docs/configuration.md documents every key', async (t) => {
  const keys = (value: unknown, prefix: string): string[] =>
    value !== null && typeof value === 'object' && !Array.isArray(value) ? Object.entries(value).flatMap(([key, inner]) => keys(inner, prefix ? `${prefix}.${key}` : key)) : [prefix];
  const full = load(`${POSTGRES}  chroma:\n    url: http://127.0.0.1:8000\ntransport:\n  nats: { user: u, pass: p, token: t }\nretention:\n  policies: []\n`);
  for (const key of keys(full, '')) t.ok(DOCS.includes(`| \`${key}\` |`), `${key} has a row`);
});

const IN_GIT = (() => {
  try {
    execFileSync('git', ['rev-parse', '--git-dir'], { cwd: ROOT, stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

t.test('.gitignore covers the default data, backup, archive and export directories', { skip: IN_GIT ? false : 'not a git checkout' }, async (t) => {
  const defaults = load('') as unknown as Record<string, Record<string, string>>;
  for (const key of PATH_KEYS.filter((key) => key.endsWith('_dir'))) {
    const [section, name] = key.split('.') as [string, string];
    const dir = defaults[section]![name]!.slice(CWD.length + 1);
    let ignored = true;
    try {
      execFileSync('git', ['check-ignore', '-q', '--no-index', `${dir}/some-file`], { cwd: ROOT, stdio: 'ignore' });
    } catch {
      ignored = false;
    }
    t.ok(ignored, `${key} (./${dir}) is ignored by git`);
  }
});
