// The keys of cluster.yml that name a file or directory, and where a
// relative one points: against the directory of the config file (a value
// the file gives or a default it leaves in place), against the working
// directory when there is no file or the value came from an environment
// variable (a path typed in a shell means what the shell means). The loader
// resolves them once, so every consumer sees absolute paths.

import { dirname, isAbsolute, resolve } from 'node:path';
import type { EnvOrigins } from './env.js';
import type { Config } from './schema.js';

/** Every path key of the schema; a new one must be listed here (test/unit/config.test.ts checks that none is missed). */
export const PATH_KEYS = ['node.data_dir', 'ingest.price_file', 'backup.target_dir', 'retention.archive_dir', 'retention.export_dir'] as const;

export interface PathBase {
  /** The config file, when there is one. */
  file?: string | undefined;
  /** The working directory (default: the process's). */
  cwd: string;
}

/** Makes every path key absolute, in place. */
export function resolvePaths(config: Config, base: PathBase, origins: EnvOrigins): Config {
  const fileDir = base.file === undefined ? undefined : dirname(resolve(base.cwd, base.file));
  for (const key of PATH_KEYS) {
    const [section, name] = key.split('.') as [keyof Config, string];
    const holder = config[section] as Record<string, unknown>;
    const value = holder[name];
    if (typeof value !== 'string' || isAbsolute(value)) continue;
    const from = origins.keys.has(key) || fileDir === undefined ? base.cwd : fileDir;
    holder[name] = resolve(from, value);
  }
  return config;
}
