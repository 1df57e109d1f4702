// Test helpers: a real node on a real NATS server, under a subject prefix and
// node id of its own so that concurrent runs never see each other.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decode, encode } from '../../protocols/codec.js';
import { subjects, type EndpointName, type Subjects } from '../../protocols/subjects.js';
import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { silentLogger } from '../../src/log.js';
import type { Clock } from '../../src/ports/clock.js';
import { connectNats, type NatsTransport } from '../../src/transport/nats.js';
import type { Headers } from '../../src/transport/transport.js';
import { startNode, type NodeOptions, type UsageNode } from '../../supervisors/node.js';

export const NATS_URL = process.env.USAGE_TRACKER_NATS_URL ?? 'nats://127.0.0.1:4222';
/** How long a test's request waits for its reply unless the caller says otherwise. */
const REQUEST_TIMEOUT_MS = 10_000;

let counter = 0;
export function uniqueName(stem: string): string {
  return `${stem}${process.pid}x${Date.now().toString(36)}x${counter++}`;
}

export interface TestNode {
  node: UsageNode;
  client: NatsTransport;
  subjects: Subjects;
  config: Config;
  /** Sends a request to an endpoint and decodes the reply (msgpack unless json); the request times out after `timeoutMs` (default 10 s). */
  call(endpoint: EndpointName, body: unknown, options?: { json?: boolean; headers?: Headers; timeoutMs?: number }): Promise<any>;
  callRaw(endpoint: EndpointName, data: Uint8Array, headers?: Headers, timeoutMs?: number): Promise<{ body: any; headers: Headers | undefined }>;
  stop(): Promise<void>;
}

export interface TestNodeOptions {
  /** Reuse a data directory (and node id and prefix) to restart a node on it. */
  dataDir?: string;
  prefix?: string;
  nodeId?: string;
  /** Leave the data directory in place on stop. */
  keepData?: boolean;
  /** The node's migration test seams (e.g. `onStage` to hold a run at a stage). */
  migrations?: NodeOptions['migrations'];
  /** The node's clock (default: the system's). */
  clock?: Clock;
}

export async function startTestNode(yaml = '', env: Record<string, string> = {}, options: TestNodeOptions = {}): Promise<TestNode> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'usage-tracker-test-'));
  const prefix = options.prefix ?? uniqueName('t');
  const config = loadConfig({
    text: yaml,
    env: {
      USAGE_TRACKER_NODE_ID: options.nodeId ?? uniqueName('n'),
      USAGE_TRACKER_SUBJECT_PREFIX: prefix,
      USAGE_TRACKER_TRANSPORT: 'nats',
      USAGE_TRACKER_NATS_URL: NATS_URL,
      USAGE_TRACKER_DATA_DIR: dataDir,
      // Backups and the WAL archive beside the data directory, never in the working directory.
      USAGE_TRACKER_BACKUP_DIR: `${dataDir}-backups`,
      ...env,
    },
  });
  const node = await startNode(config, {
    log: silentLogger,
    ...(options.migrations ? { migrations: options.migrations } : {}),
    ...(options.clock ? { clock: options.clock } : {}),
  });
  const client = await connectNats({ servers: NATS_URL, name: 'usage-tracker-test-client' });
  const names = subjects(prefix);
  const callRaw = async (endpoint: EndpointName, data: Uint8Array, headers?: Headers, timeoutMs = REQUEST_TIMEOUT_MS) => {
    const reply = await client.request(names.endpoint(endpoint), data, { timeoutMs, ...(headers ? { headers } : {}) });
    const json = reply.headers?.['Content-Type'] === 'application/json';
    return { body: decode(reply.data, json ? 'json' : 'msgpack', { payloadBytesMax: 64 << 20, nestingDepthMax: 64 }) as any, headers: reply.headers };
  };
  return {
    node,
    client,
    subjects: names,
    config,
    callRaw,
    async call(endpoint, body, options = {}) {
      const json = options.json ?? false;
      const headers = { ...(json ? { 'Content-Type': 'application/json' } : {}), ...options.headers };
      return (await callRaw(endpoint, encode(body, json ? 'json' : 'msgpack'), Object.keys(headers).length > 0 ? headers : undefined, options.timeoutMs)).body;
    },
    async stop() {
      await node.stop();
      await client.drain();
      if (!options.keepData) {
        rmSync(dataDir, { recursive: true, force: true });
        rmSync(`${dataDir}-backups`, { recursive: true, force: true });
      }
    },
  };
}
