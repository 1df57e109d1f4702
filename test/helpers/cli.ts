// Runs the usage-tracker CLI as a user does (a child process, tsx, the
// repository's bin), against a node on this run's subject prefix.

import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { WAIT_DEADLINE_MS } from './wait.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = fileURLToPath(new URL('../../bin/usage-tracker.ts', import.meta.url));
// Absolute, so that the CLI can run from any working directory.
const TSX = import.meta.resolve('tsx');
const execFileAsync = promisify(execFile);

export interface CliRunOptions {
  /** The CLI's working directory (default: the repository). */
  cwd?: string;
  /** Extra environment variables (USAGE_TRACKER_* of the caller are never passed on). */
  env?: Record<string, string>;
}

/**
 * Runs the CLI as a user does; resolves with its exit code and output. A
 * CLI still running after the generous wait deadline is killed; its stderr
 * then ends with a line saying so.
 */
export async function cli(args: string[], prefix: string, options: CliRunOptions = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('USAGE_TRACKER_')) env[name] = value;
  Object.assign(env, options.env);
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, ['--import', TSX, BIN, ...args, '--prefix', prefix], { cwd: options.cwd ?? ROOT, env, timeout: WAIT_DEADLINE_MS });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; killed?: boolean; signal?: string; stdout?: string; stderr?: string };
    const killed = failed.killed ? `\n(test helper: usage-tracker ${args.join(' ')} was still running after ${WAIT_DEADLINE_MS} ms and was killed with ${failed.signal})` : '';
    return { code: failed.code ?? -1, stdout: failed.stdout ?? '', stderr: (failed.stderr ?? '') + killed };
  }
}
