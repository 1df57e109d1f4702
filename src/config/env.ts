// The USAGE_TRACKER_* environment variables: which key each one overrides and
// how its text becomes a value. applyEnv writes them into the parsed YAML
// before validation and records where every value came from, so a problem
// names the variable, not only the key.

/** How a variable's text becomes a value: as is, a number (when it reads as one), or a comma-separated list. */
export type EnvValueType = 'string' | 'number' | 'list';

/** Environment variable to config key path. */
export const ENV_OVERRIDES: Record<string, { path: string[]; type: EnvValueType }> = {
  USAGE_TRACKER_NODE_ID: { path: ['node', 'id'], type: 'string' },
  USAGE_TRACKER_DATA_DIR: { path: ['node', 'data_dir'], type: 'string' },
  USAGE_TRACKER_CLUSTER_ID: { path: ['cluster', 'id'], type: 'string' },
  USAGE_TRACKER_SHARDS: { path: ['cluster', 'shards'], type: 'number' },
  USAGE_TRACKER_TRANSPORT: { path: ['transport', 'kind'], type: 'string' },
  USAGE_TRACKER_SUBJECT_PREFIX: { path: ['transport', 'subject_prefix'], type: 'string' },
  USAGE_TRACKER_NATS_URL: { path: ['transport', 'nats', 'servers'], type: 'list' },
  USAGE_TRACKER_NATS_USER: { path: ['transport', 'nats', 'user'], type: 'string' },
  USAGE_TRACKER_NATS_PASS: { path: ['transport', 'nats', 'pass'], type: 'string' },
  USAGE_TRACKER_NATS_TOKEN: { path: ['transport', 'nats', 'token'], type: 'string' },
  USAGE_TRACKER_POSTGRES_URL: { path: ['backends', 'postgres', 'url'], type: 'string' },
  USAGE_TRACKER_POSTGRES_SCHEMA: { path: ['backends', 'postgres', 'schema'], type: 'string' },
  USAGE_TRACKER_CHROMA_URL: { path: ['backends', 'chroma', 'url'], type: 'string' },
  USAGE_TRACKER_CHROMA_COLLECTION_PREFIX: { path: ['backends', 'chroma', 'collection_prefix'], type: 'string' },
  USAGE_TRACKER_CHROMA_BATCH_RECORDS_MAX: { path: ['backends', 'chroma', 'batch_records_max'], type: 'number' },
  USAGE_TRACKER_CHROMA_WINDOW_MS: { path: ['backends', 'chroma', 'window_ms'], type: 'number' },
  USAGE_TRACKER_CHROMA_RETRY_BASE_MS: { path: ['backends', 'chroma', 'retry_base_ms'], type: 'number' },
  USAGE_TRACKER_CHROMA_RETRY_MAX_MS: { path: ['backends', 'chroma', 'retry_max_ms'], type: 'number' },
  USAGE_TRACKER_CHROMA_REQUEST_TIMEOUT_MS: { path: ['backends', 'chroma', 'request_timeout_ms'], type: 'number' },
  USAGE_TRACKER_BACKUP_DIR: { path: ['backup', 'target_dir'], type: 'string' },
  USAGE_TRACKER_FSYNC: { path: ['durability', 'fsync'], type: 'string' },
  USAGE_TRACKER_LOG_LEVEL: { path: ['log', 'level'], type: 'string' },
  USAGE_TRACKER_LOG_FORMAT: { path: ['log', 'format'], type: 'string' },
};

/** Where values came from: key path (dotted) to variable, and the sections a variable created. */
export interface EnvOrigins {
  /** `cluster.shards` -> `USAGE_TRACKER_SHARDS`. */
  keys: Map<string, string>;
  /** A section absent from the file that a variable brought into being, e.g. `backends.chroma` -> `USAGE_TRACKER_CHROMA_WINDOW_MS`. */
  sections: Map<string, string>;
}

const NUMBER = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?$/i;

/** Writes the set variables into the document (an empty one counts as unset); returns where each value came from. */
export function applyEnv(document: Record<string, unknown>, env: NodeJS.ProcessEnv): EnvOrigins {
  const origins: EnvOrigins = { keys: new Map(), sections: new Map() };
  for (const [name, { path, type }] of Object.entries(ENV_OVERRIDES)) {
    const text = env[name];
    if (text === undefined || text === '') continue;
    const target = sectionFor(document, path.slice(0, -1), name, origins);
    if (target === undefined) continue;
    target[path[path.length - 1]!] = valueOf(text, type);
    origins.keys.set(path.join('.'), name);
  }
  return origins;
}

/**
 * The map a variable's key goes into, created when absent or empty (YAML null), and then recorded as created by `name`.
 * A section the file set to a scalar or a list is left alone, so the schema reports the file's mistake.
 */
function sectionFor(document: Record<string, unknown>, sections: string[], name: string, origins: EnvOrigins): Record<string, unknown> | undefined {
  let target = document;
  for (const [depth, key] of sections.entries()) {
    const next = target[key];
    if (next === undefined || next === null) {
      target[key] = {};
      const section = sections.slice(0, depth + 1).join('.');
      if (!origins.sections.has(section)) origins.sections.set(section, name);
    } else if (typeof next !== 'object' || Array.isArray(next)) {
      return undefined;
    }
    target = target[key] as Record<string, unknown>;
  }
  return target;
}

function valueOf(text: string, type: EnvValueType): unknown {
  if (type === 'list') return text.split(',').map((part) => part.trim()).filter((part) => part.length > 0);
  if (type === 'number') return NUMBER.test(text.trim()) ? Number(text.trim()) : text;
  return text;
}
