// Loads cluster.yml, applies USAGE_TRACKER_* environment overrides, and
// validates the result. Every problem is reported, one line each, naming the
// key (or the variable) and what is expected.

import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { configSchema, type Config } from './schema.js';

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly source: string,
    readonly problems: string[],
  ) {
    super(`invalid configuration in ${source}:\n${problems.map((problem) => `  - ${problem}`).join('\n')}`);
  }
}

/** Environment variable to config key path; a value that must be a number or a list is converted. */
export const ENV_OVERRIDES: Record<string, { path: string[]; type: 'string' | 'int' | 'list' }> = {
  USAGE_TRACKER_NODE_ID: { path: ['node', 'id'], type: 'string' },
  USAGE_TRACKER_DATA_DIR: { path: ['node', 'data_dir'], type: 'string' },
  USAGE_TRACKER_CLUSTER_ID: { path: ['cluster', 'id'], type: 'string' },
  USAGE_TRACKER_SHARDS: { path: ['cluster', 'shards'], type: 'int' },
  USAGE_TRACKER_TRANSPORT: { path: ['transport', 'kind'], type: 'string' },
  USAGE_TRACKER_SUBJECT_PREFIX: { path: ['transport', 'subject_prefix'], type: 'string' },
  USAGE_TRACKER_NATS_URL: { path: ['transport', 'nats', 'servers'], type: 'list' },
  USAGE_TRACKER_NATS_USER: { path: ['transport', 'nats', 'user'], type: 'string' },
  USAGE_TRACKER_NATS_PASS: { path: ['transport', 'nats', 'pass'], type: 'string' },
  USAGE_TRACKER_NATS_TOKEN: { path: ['transport', 'nats', 'token'], type: 'string' },
  USAGE_TRACKER_POSTGRES_URL: { path: ['backends', 'postgres', 'url'], type: 'string' },
  USAGE_TRACKER_CHROMA_URL: { path: ['backends', 'chroma', 'url'], type: 'string' },
  USAGE_TRACKER_BACKUP_DIR: { path: ['backup', 'target_dir'], type: 'string' },
  USAGE_TRACKER_FSYNC: { path: ['durability', 'fsync'], type: 'string' },
  USAGE_TRACKER_LOG_LEVEL: { path: ['log', 'level'], type: 'string' },
};

export interface LoadOptions {
  /** Path of cluster.yml; when absent the defaults stand alone. */
  file?: string;
  /** The file's text, when already read (tests). */
  text?: string;
  env?: NodeJS.ProcessEnv;
}

export function loadConfig(options: LoadOptions = {}): Config {
  const source = options.file ?? 'defaults';
  const raw = options.text ?? (options.file ? readText(options.file) : '');
  const document = parseYaml(raw, source);
  const envKeys = applyEnv(document, options.env ?? process.env);
  const result = configSchema.safeParse(document, { reportInput: true });
  if (!result.success) throw new ConfigError(source, describeIssues(result.error, envKeys));
  return result.data;
}

function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new ConfigError(file, [code === 'ENOENT' ? 'file not found' : `cannot read the file (${code ?? String(error)})`]);
  }
}

function parseYaml(text: string, source: string): Record<string, unknown> {
  const document = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  if (document.errors.length > 0) {
    throw new ConfigError(
      source,
      document.errors.map((error) => {
        const message = error.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
        return `YAML: ${message}${error.linePos ? ` (line ${error.linePos[0].line}, column ${error.linePos[0].col})` : ''}`;
      }),
    );
  }
  const value: unknown = document.toJS();
  if (value === null || value === undefined) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw new ConfigError(source, ['the top level must be a map of sections (node, cluster, transport, ...)']);
  return value as Record<string, unknown>;
}

/** Writes env overrides into the document; returns which key paths came from which variable. */
function applyEnv(document: Record<string, unknown>, env: NodeJS.ProcessEnv): Map<string, string> {
  const origins = new Map<string, string>();
  for (const [name, { path, type }] of Object.entries(ENV_OVERRIDES)) {
    const text = env[name];
    if (text === undefined || text === '') continue;
    let value: unknown = text;
    if (type === 'int') value = /^-?\d+$/.test(text.trim()) ? Number(text.trim()) : text;
    if (type === 'list') value = text.split(',').map((part) => part.trim()).filter((part) => part.length > 0);
    let target = document;
    for (const key of path.slice(0, -1)) {
      const next = target[key];
      if (next === null || typeof next !== 'object' || Array.isArray(next)) target[key] = {};
      target = target[key] as Record<string, unknown>;
    }
    target[path[path.length - 1]!] = value;
    origins.set(path.join('.'), name);
  }
  return origins;
}

function describeIssues(error: z.ZodError, envKeys: Map<string, string>): string[] {
  return error.issues.map((issue) => {
    const key = issue.path.map(String).join('.');
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((unknown) => `${key ? `${key}.` : ''}${unknown}: unknown key`).join('; ');
    }
    const origin = envKeys.get(key) ?? [...envKeys].find(([path]) => key.startsWith(`${path}.`))?.[1];
    const label = origin ? `${key} (from ${origin})` : key || '(top level)';
    return `${label}: ${describe(issue)}`;
  });
}

function describe(issue: z.core.$ZodIssue): string {
  if (issue.code === 'invalid_type' && issue.expected === 'int') return `${issue.message}${shown(issue.input)}`;
  if (issue.code === 'invalid_type') {
    const got = issue.input === null ? 'null' : Array.isArray(issue.input) ? 'a list' : typeof issue.input;
    const value = issue.input === undefined || typeof issue.input === 'object' ? '' : ` ${JSON.stringify(issue.input)}`;
    return `expected ${issue.expected === 'array' ? 'a list' : issue.expected}, got ${got}${value}`;
  }
  return `${issue.message}${shown(issue.input)}`;
}

function shown(input: unknown): string {
  if (input === undefined || typeof input === 'object' || typeof input === 'function') return '';
  const text = JSON.stringify(input);
  return ` (got ${text.length > 60 ? `${text.slice(0, 57)}...` : text})`;
}
