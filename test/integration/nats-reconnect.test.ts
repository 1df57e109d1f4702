// The NATS transport survives its server going away: requests fail with
// clear codes while it is down, and work again once it is back, without the
// caller reconnecting by hand; the transport says which state its link is
// in (what admin.status reports as transport.nats). Uses a nats-server of
// its own on a free port, so the shared server on 4222 is never disturbed.

import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProtocolError } from '../../protocols/errors.js';
import { connectNats, reconnectDelayMs } from '../../src/transport/nats.js';
import { WAIT_DEADLINE_MS, waitFor } from '../helpers/wait.js';

const NATS_SERVER = ['/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server'].find((path) => existsSync(path)) ?? 'nats-server';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

async function startServer(port: number, storeDir: string): Promise<ChildProcess> {
  const child = spawn(NATS_SERVER, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', storeDir], { stdio: ['ignore', 'ignore', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`nats-server did not say it was ready within ${WAIT_DEADLINE_MS} ms`)), WAIT_DEADLINE_MS);
    child.stderr!.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('Server is ready')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`nats-server exited with ${code}`)));
  });
  return child;
}

async function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

t.test('reconnect delays grow exponentially with jitter, up to the cap', async (t) => {
  const low = () => 0;
  const high = () => 0.999999;
  t.same([0, 1, 2, 3, 4, 5, 6].map((attempt) => reconnectDelayMs(attempt, 100, 1000, high)), [100, 200, 400, 800, 1000, 1000, 1000]);
  t.same([0, 1, 2, 3, 4].map((attempt) => reconnectDelayMs(attempt, 100, 1000, low)), [50, 100, 200, 400, 500], 'never below half the ceiling');
  t.equal(reconnectDelayMs(1000, 100, 1000, high), 1000, 'huge attempt counts stay capped');
});

t.test('requests work again after the server restarts', async (t) => {
  const port = await freePort();
  const storeDir = mkdtempSync(join(tmpdir(), 'usage-tracker-nats-'));
  let server = await startServer(port, storeDir);
  const url = `nats://127.0.0.1:${port}`;
  const responder = await connectNats({ servers: url, reconnectBaseMs: 50, reconnectMaxMs: 200 });
  const requester = await connectNats({ servers: url, reconnectBaseMs: 50, reconnectMaxMs: 200 });
  t.teardown(async () => {
    await Promise.allSettled([responder.drain(), requester.drain()]);
    await stopServer(server);
    rmSync(storeDir, { recursive: true, force: true });
  });
  responder.subscribe('echo', (msg) => void msg.respond(msg.data));
  await responder.flush();
  const ping = async (timeoutMs: number) => new TextDecoder().decode((await requester.request('echo', new TextEncoder().encode('hi'), { timeoutMs })).data);
  t.equal(await ping(WAIT_DEADLINE_MS), 'hi', 'before the outage');
  t.equal(responder.link, 'connected', 'the link is up before the outage');

  await stopServer(server);
  await waitFor('the responder to notice the lost link', () => responder.link === 'reconnecting', { describe: () => responder.link });
  // Expected to fail: a short timeout only keeps the wait for that short.
  const duringOutage = await ping(500).catch((error: unknown) => error);
  t.ok(duringOutage instanceof ProtocolError, 'a request during the outage fails with a ProtocolError');
  t.ok(['E_TIMEOUT', 'E_UNAVAILABLE'].includes((duringOutage as ProtocolError).code), `code ${(duringOutage as ProtocolError).code}`);

  server = await startServer(port, storeDir);
  let answer: unknown;
  await waitFor(
    'an echo through the restarted server, without reconnecting by hand',
    async () => {
      answer = await ping(5000).catch((error: unknown) => error);
      return answer === 'hi';
    },
    { pollMs: 100, describe: () => String(answer) },
  );
  t.equal(answer, 'hi', 'after the restart, without reconnecting by hand');
  await waitFor('the responder to say its link is up again', () => responder.link === 'connected', { describe: () => responder.link });
  t.notOk(requester.closed, 'the transport stayed open');
});
