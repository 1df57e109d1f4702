// Loads cluster.yml, applies USAGE_TRACKER_* environment overrides,
// validates the result and makes every path in it absolute. Every problem
// is reported at once, each naming the key (or the variable) and what is
// expected; see docs/configuration.md.

import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { applyEnv } from './env.js';
import { ConfigError } from './error.js';
import { describeIssues, issueMessage, type KnownKeys } from './issues.js';
import { resolvePaths } from './paths.js';
import { configSchema, type Config } from './schema.js';
import { parseYaml } from './yaml.js';

export { ConfigError } from './error.js';
export { ENV_OVERRIDES } from './env.js';
export { PATH_KEYS } from './paths.js';

export interface LoadOptions {
  /** Path of cluster.yml; when absent the defaults stand alone. Relative paths in it are resolved against its directory. */
  file?: string;
  /** The file's text, when already read (tests). */
  text?: string;
  env?: NodeJS.ProcessEnv;
  /** The working directory, against which relative paths resolve when there is no file or they come from a variable (default: the process's). */
  cwd?: string;
}

export function loadConfig(options: LoadOptions = {}): Config {
  const source = options.file ?? 'defaults';
  const cwd = options.cwd ?? process.cwd();
  const raw = options.text ?? (options.file ? readText(options.file, resolve(cwd, options.file)) : '');
  const document = parseYaml(raw, source);
  const origins = applyEnv(document, options.env ?? process.env);
  const known: KnownKeys = new WeakMap();
  const result = configSchema.safeParse(document, { reportInput: true, error: issueMessage(known) });
  if (!result.success) throw new ConfigError(source, describeIssues(result.error.issues, origins, known));
  return resolvePaths(result.data, { file: options.file, cwd }, origins);
}

function readText(file: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new ConfigError(file, ['file not found']);
    if (code === 'EISDIR') throw new ConfigError(file, ['is a directory, not a file']);
    if (code === 'EACCES') throw new ConfigError(file, ['cannot be read (permission denied)']);
    throw new ConfigError(file, [`cannot be read (${code ?? String(error)})`]);
  }
}
