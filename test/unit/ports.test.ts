// The ports: a manual clock that fires timers in order, a filesystem whose
// faults are injected per operation, and loggers bound to actor paths.

import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { ActorSystem } from '../../src/kernel/system.js';
import { createLogger } from '../../src/log.js';
import { ManualClock } from '../../src/ports/clock.js';
import { faultyFileSystem, InjectedFault, nodeFileSystem } from '../../src/ports/fs.js';

t.test('ManualClock fires timers in due order, only when advanced', async (t) => {
  const clock = new ManualClock(1_000_000);
  const fired: string[] = [];
  clock.setTimer(30, () => fired.push('c'));
  clock.setTimer(10, () => fired.push('a'));
  const cancelled = clock.setTimer(20, () => fired.push('never'));
  clock.setTimer(10, () => fired.push('b'));
  cancelled.cancel();
  await clock.advance(9);
  t.same(fired, [], 'nothing before its time');
  await clock.advance(1);
  t.same(fired, ['a', 'b'], 'equal due times fire in the order they were set');
  await clock.advance(100);
  t.same(fired, ['a', 'b', 'c']);
  t.equal(clock.now(), 1_000_110, 'wall time moved by what was advanced');
  t.equal(clock.pendingTimers, 0);
});

t.test('the faulty filesystem fails exactly the planned operations', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'usage-tracker-fs-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  let failSync = false;
  const fs = faultyFileSystem(nodeFileSystem, (operation, path) => {
    if (operation === 'datasync' && failSync) return 'EIO';
    if (operation === 'write' && path.endsWith('full.log')) return 'ENOSPC';
    return undefined;
  });
  const file = join(dir, 'a.log');
  const handle = await fs.open(file, 'append');
  await handle.write(new TextEncoder().encode('one\n'));
  await handle.datasync();
  failSync = true;
  await handle.write(new TextEncoder().encode('two\n'));
  await t.rejects(handle.datasync(), { name: 'InjectedFault', code: 'EIO' }, 'fsync fails as planned');
  await handle.close();
  t.equal(readFileSync(file, 'utf8'), 'one\ntwo\n', 'the writes themselves went through');

  const full = await fs.open(join(dir, 'full.log'), 'append');
  const error = await full.write(new TextEncoder().encode('x')).catch((e: unknown) => e);
  t.ok(error instanceof InjectedFault && error.code === 'ENOSPC', 'a full disk is ENOSPC');
  await full.close();
  t.equal(readFileSync(join(dir, 'full.log'), 'utf8'), '', 'nothing was written to the full disk');

  await fs.writeFile(join(dir, 'tmp'), new Uint8Array([1]));
  await fs.rename(join(dir, 'tmp'), join(dir, 'final'));
  await fs.syncDir(dir);
  t.same([...(await fs.readFile(join(dir, 'final')))], [1], 'the other operations pass through');
  t.same((await fs.readdir(dir)).sort(), ['a.log', 'final', 'full.log']);
});

t.test('each actor logs through a child logger bound to its path', async (t) => {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  const system = new ActorSystem({ nodeId: 'n1', log: createLogger({ level: 'info', destination: sink }) });
  system.spawn('n1/shards/partition-3', {
    receive(message: string, ctx) {
      ctx.log.info({ message }, 'handled');
      return 'ok';
    },
  });
  await system.ref('n1/shards/partition-3').ask('hello');
  const line = lines.find((entry) => entry.msg === 'handled');
  t.equal(line?.actor, 'n1/shards/partition-3');
  t.equal(line?.message, 'hello');
});
