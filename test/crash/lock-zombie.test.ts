// The data directory lock does not outlive its holder (issue 10): a node
// SIGKILLed whose parent has not reaped it yet is a zombie, whose pid still
// answers a signal-0 probe; a start right after it must not be refused.
// The holder here is a fixture whose parent is `sleep` (the shell execs
// it), which never reaps, so the zombie stays until the test ends it.
// Also: a live holder refuses, and a pid now used by another process (its
// start time differs from the one LOCK records) does not.

import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { holderAlive, holderLine, lockDataDir, procState } from '../../src/storage/data-dir-lock.js';
import { startTestNode } from '../helpers/node.js';

const FIXTURE = join(dirname(fileURLToPath(import.meta.url)), 'fixture-lock.ts');
const DEADLINE_MS = 60_000;

async function until(what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + DEADLINE_MS;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${DEADLINE_MS} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A lock holder whose parent never reaps it: gives its pid once it holds the lock. */
async function holder(t: Test, dataDir: string): Promise<number> {
  const shell = spawn('sh', ['-c', `"${process.execPath}" --import tsx "${FIXTURE}" "${dataDir}" & echo "pid $!"; exec sleep 600`], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => shell.kill('SIGKILL'));
  let out = '';
  shell.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  await until('the fixture to take the lock', () => out.includes('locked'));
  return Number(/pid (\d+)/.exec(out)![1]);
}

t.test('a start right after SIGKILL is not refused while the killed process is an unreaped zombie', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'usage-tracker-lock-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const pid = await holder(t, dataDir);
  await t.rejects(lockDataDir(dataDir), { name: 'DataDirError', message: new RegExp(`in use by another usage-tracker process \\(pid ${pid}\\)`) }, 'a live holder keeps the lock');

  process.kill(pid, 'SIGKILL');
  await until(`pid ${pid} to become a zombie`, () => procState(pid)?.state === 'Z');
  t.equal(holderAlive(readFileSync(join(dataDir, 'LOCK'), 'utf8')), false, 'a zombie holds nothing');
  const node = await startTestNode('', {}, { dataDir, keepData: true });
  t.equal((await node.call('admin.status', {})).ok, true, 'the node starts and serves on the directory');
  await node.stop();
});

t.test('a pid that another process uses now does not hold the lock', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'usage-tracker-lock-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const sleeper = spawn('sleep', ['600'], { stdio: 'ignore' });
  t.teardown(() => sleeper.kill('SIGKILL'));
  const pid = sleeper.pid!;
  await until('sleep to start', () => procState(pid) !== null);
  const [, start] = holderLine(pid).trim().split(' ');
  t.ok(start, 'LOCK records a start time');
  t.equal(holderAlive(`${pid} ${start}\n`), true, 'the process that wrote it');
  t.equal(holderAlive(`${pid} ${Number(start) + 1}\n`), false, 'another process under the same pid');
  t.equal(holderAlive(`${pid}\n`), true, 'a LOCK of an earlier build (pid only) of a live process still holds');
  for (const bad of ['', 'x', '-1', '0 1', '99999999999999999999', '1e3']) t.equal(holderAlive(bad), false, `${JSON.stringify(bad)} names no holder`);
  writeFileSync(join(dataDir, 'LOCK'), `${pid} ${Number(start) + 1}\n`);
  const lock = await lockDataDir(dataDir);
  t.equal(readFileSync(join(dataDir, 'LOCK'), 'utf8'), holderLine(), 'the stale lock is taken over');
  await lock.release();
});
