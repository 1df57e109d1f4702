// Runs the usage-tracker CLI as a user does (a child process, tsx, the
// repository's bin), against a node on this run's subject prefix; and
// starts a node as a user does (`usage-tracker start` in a child process).

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { waitFor, WAIT_DEADLINE_MS } from './wait.js';

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
  const env = cliEnvironment(options.env);
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, ['--import', TSX, BIN, ...args, '--prefix', prefix], { cwd: options.cwd ?? ROOT, env, timeout: WAIT_DEADLINE_MS });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; killed?: boolean; signal?: string; stdout?: string; stderr?: string };
    const killed = failed.killed ? `\n(test helper: usage-tracker ${args.join(' ')} was still running after ${WAIT_DEADLINE_MS} ms and was killed with ${failed.signal})` : '';
    return { code: failed.code ?? -1, stdout: failed.stdout ?? '', stderr: (failed.stderr ?? '') + killed };
  }
}

/** This process's environment without any USAGE_TRACKER_* of its own, plus `extra`. */
export function cliEnvironment(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('USAGE_TRACKER_')) env[name] = value;
  return Object.assign(env, extra);
}

export interface CliNodeExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliNode {
  child: ChildProcess;
  /** Everything it has written so far. */
  output: { stdout: string; stderr: string };
  /** Resolves once it has exited and its pipes are drained. */
  exit: Promise<CliNodeExit>;
}

/**
 * Starts `usage-tracker start` with exactly `env` and waits until its stderr
 * says it is running; a node still up at teardown is killed with SIGKILL.
 */
export async function startCliNode(t: { teardown(fn: () => unknown): void }, env: NodeJS.ProcessEnv, options: { cwd?: string; deadlineMs?: number } = {}): Promise<CliNode> {
  const child = spawn(process.execPath, ['--import', TSX, BIN, 'start'], { cwd: options.cwd ?? ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = { stdout: '', stderr: '' };
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output.stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output.stderr += chunk));
  let exited: CliNodeExit | undefined;
  const exit = new Promise<CliNodeExit>((resolve, reject) => {
    child.on('error', reject);
    // 'exit' may come before the pipes are drained; 'close' follows once they are.
    child.on('close', (code, signal) => resolve((exited = { code, signal, ...output })));
  });
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exit.catch(() => undefined);
  });
  await waitFor(
    "the node to say it is running",
    () => {
      if (exited) throw new Error(`the node exited (${exited.code ?? exited.signal}) before running; stderr: ${exited.stderr}`);
      return / running \(/.test(output.stderr);
    },
    { deadlineMs: options.deadlineMs ?? WAIT_DEADLINE_MS, describe: () => output.stderr },
  );
  return { child, output, exit };
}
