// A real Chroma server for tests: the one USAGE_TRACKER_TEST_CHROMA_URL
// names, or else one of our own, started from the `chromadb` package's
// `chroma run` on a free port and a temporary directory, and stopped (its
// directory removed) at `stop()`. Tests that kill and restart the server ask
// for one of their own (`own: true`): on a shared server that would hurt
// every other run, so `kill` and `restart` refuse there.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface ChromaServer {
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** Whether this run started the server (and so may kill and restart it). */
  controlled: boolean;
  /** SIGTERM, then SIGKILL after 5 s; removes the data directory. A no-op on a shared server. */
  stop(): Promise<void>;
  /** SIGKILL, keeping the data directory, as a crash would. */
  kill(): Promise<void>;
  /** Starts the server again on the same port and directory, and waits until it answers. */
  restart(): Promise<void>;
}

export interface StartChromaOptions {
  /** Start a server of our own even when USAGE_TRACKER_TEST_CHROMA_URL names one. */
  own?: boolean;
}

const CHROMA_BIN = fileURLToPath(new URL('../../node_modules/.bin/chroma', import.meta.url));
const READY_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 5_000;
const OUTPUT_TAIL_BYTES = 4096;

/** Servers still running, killed if the test process exits without stopping them. */
const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export async function startChroma(options: StartChromaOptions = {}): Promise<ChromaServer> {
  const shared = process.env.USAGE_TRACKER_TEST_CHROMA_URL;
  if (shared && !options.own) {
    const refuse = (what: string) => () =>
      Promise.reject(new Error(`cannot ${what} the shared Chroma server at ${shared} (USAGE_TRACKER_TEST_CHROMA_URL): this test needs a server it controls; start it with startChroma({ own: true })`));
    return { url: shared.replace(/\/+$/, ''), controlled: false, stop: async () => undefined, kill: refuse('kill'), restart: refuse('restart') };
  }

  const dir = await mkdtemp(join(tmpdir(), 'usage-tracker-chroma-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  let child: ChildProcess | undefined;
  let output = '';

  const launch = async () => {
    output = '';
    const started = spawn(CHROMA_BIN, ['run', '--path', dir, '--host', '127.0.0.1', '--port', String(port)], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ANONYMIZED_TELEMETRY: 'False' },
    });
    child = started;
    running.add(started);
    const keep = (chunk: Buffer) => {
      output = (output + chunk.toString('utf8')).slice(-OUTPUT_TAIL_BYTES);
    };
    started.stdout?.on('data', keep);
    started.stderr?.on('data', keep);
    started.once('exit', () => running.delete(started));
    await waitReady(url, started, () => output);
  };

  const end = async (signal: NodeJS.Signals) => {
    const current = child;
    child = undefined;
    if (current === undefined || current.exitCode !== null || current.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => current.once('exit', () => resolve()));
    current.kill(signal);
    if (signal === 'SIGTERM') {
      const timer = setTimeout(() => current.kill('SIGKILL'), STOP_GRACE_MS);
      await exited;
      clearTimeout(timer);
    } else {
      await exited;
    }
  };

  try {
    await launch();
  } catch (error) {
    await end('SIGKILL');
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    url,
    controlled: true,
    async stop() {
      await end('SIGTERM');
      await rm(dir, { recursive: true, force: true });
    },
    kill: () => end('SIGKILL'),
    async restart() {
      await end('SIGTERM');
      try {
        await launch();
      } catch (error) {
        await end('SIGKILL');
        throw error;
      }
    },
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('no free port'))));
    });
  });
}

/** Polls the heartbeat until it answers; fails early, with the server's output, if the server exits. */
async function waitReady(url: string, child: ChildProcess, tail: () => string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let exit: string | undefined;
  child.once('exit', (code, signal) => (exit = signal ? `was killed by ${signal}` : `exited with code ${code}`));
  child.once('error', (error) => (exit = `could not start (${error.message})`));
  for (;;) {
    if (exit !== undefined) throw new Error(`chroma run on ${url} ${exit} before it was ready; its output ends:\n${tail()}`);
    try {
      const response = await fetch(`${url}/api/v2/heartbeat`, { signal: AbortSignal.timeout(1000) });
      if (response.ok) return;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) throw new Error(`chroma run on ${url} did not answer its heartbeat within ${READY_TIMEOUT_MS} ms; its output ends:\n${tail()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
