// One node per data directory: a second writer of the same shards would
// corrupt them. `<data_dir>/LOCK` names its holder as `<pid> <start>`,
// where <start> is the process's start time in clock ticks since boot
// (field 22 of /proc/<pid>/stat), so that a pid reused by another process
// is not taken for the holder.
//
// A lock whose holder is gone is taken over. Gone means: no such process,
// a process that is a zombie (killed but not yet reaped by its parent:
// it holds no file and writes nothing, so a start right after SIGKILL is
// not refused), or another process under the same pid. Where /proc is not
// there (not Linux), a signal 0 probe is all there is, and a zombie counts
// as alive.

import { open as openFile, readFile, unlink } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DataDirError } from './node-meta.js';

/** Held while a node runs on a data directory; `release` gives it up. */
export interface DataDirLock {
  path: string;
  release(): Promise<void>;
}

interface ProcessState {
  /** The one-letter state of /proc/<pid>/stat: R, S, D, Z, X, ... */
  state: string;
  /** Start time in clock ticks after boot. */
  start: string;
}

/** A process's state from /proc; null when there is no such process, undefined when /proc cannot tell. */
export function procState(pid: number): ProcessState | null | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ESRCH') return readable() ? null : undefined;
    return undefined;
  }
  // The command name (field 2) is in parentheses and may hold spaces and parentheses: fields follow the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const state = fields[0];
  const start = fields[19];
  return state && start ? { state, start } : undefined;
}

let procReadable: boolean | undefined;
/** Whether this system has /proc/<pid>/stat at all (so that a missing entry means a missing process). */
function readable(): boolean {
  procReadable ??= (() => {
    try {
      readFileSync('/proc/self/stat', 'utf8');
      return true;
    } catch {
      return false;
    }
  })();
  return procReadable;
}

/** What this process writes into LOCK. */
export function holderLine(pid = process.pid): string {
  const own = procState(pid);
  return own ? `${pid} ${own.start}\n` : `${pid}\n`;
}

/** Whether the process a LOCK line names still holds the lock. */
export function holderAlive(line: string): boolean {
  const [pidText = '', start] = line.trim().split(/\s+/);
  const pid = /^\d{1,10}$/.test(pidText) ? Number(pidText) : 0;
  if (pid <= 0) return false;
  const state = procState(pid);
  if (state === null) return false;
  if (state) return state.state !== 'Z' && state.state !== 'X' && (start === undefined || start === state.start);
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Lock files held by nodes of this process. */
const heldHere = new Set<string>();

export async function lockDataDir(dataDir: string): Promise<DataDirLock> {
  const path = join(dataDir, 'LOCK');
  if (heldHere.has(path)) throw new DataDirError(`${dataDir} is already in use by another node in this process; one node per data directory`);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await openFile(path, 'wx');
      await handle.writeFile(holderLine());
      await handle.close();
      heldHere.add(path);
      return {
        path,
        release: async () => {
          heldHere.delete(path);
          await unlink(path).catch(() => undefined);
        },
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const line = await readFile(path, 'utf8').catch(() => '');
      const owner = Number.parseInt(line, 10);
      // Our own pid and not held here: a lock left by this process's earlier run of a node.
      if (owner !== process.pid && holderAlive(line)) {
        throw new DataDirError(`${dataDir} is in use by another usage-tracker process (pid ${owner}); one node per data directory`);
      }
      await unlink(path).catch(() => undefined);
    }
  }
  throw new DataDirError(`${dataDir}: cannot take the lock file ${path}`);
}
