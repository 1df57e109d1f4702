// The CLI's connection to a running node: NATS request/reply on the
// protocol v1 subjects. Failures become CliErrors with one line to print.

import { existsSync } from 'node:fs';
import { decode, encode } from '../protocols/codec.js';
import { ProtocolError } from '../protocols/errors.js';
import { subjects, type EndpointName, type Subjects } from '../protocols/subjects.js';
import { loadConfig } from '../src/config/load.js';
import type { Config } from '../src/config/schema.js';
import { connectNats, type NatsTransport } from '../src/transport/nats.js';

export class CliError extends Error {
  override readonly name = 'CliError';
}

/** cluster.yml from --config, USAGE_TRACKER_CONFIG, or ./cluster.yml when present; otherwise the defaults. */
export function configFrom(file: string | undefined): Config {
  const explicit = file ?? (process.env.USAGE_TRACKER_CONFIG || undefined);
  const path = explicit ?? (existsSync('cluster.yml') ? 'cluster.yml' : undefined);
  return loadConfig(path === undefined ? {} : { file: path });
}

export interface ConnectionOptions {
  config?: string;
  natsUrl?: string;
  prefix?: string;
  node?: string;
}

export function parseTimeout(text: string): number {
  const timeoutMs = Number(text);
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1) throw new CliError(`--timeout must be a whole number of milliseconds, got ${text}`);
  return timeoutMs;
}

export class NodeClient {
  private constructor(
    private readonly transport: NatsTransport,
    readonly subjects: Subjects,
    readonly servers: string[],
    private readonly node: string | undefined,
    /** Largest request body that both the NATS server and the node accept. */
    readonly payloadBytesMax: number,
  ) {}

  static async connect(options: ConnectionOptions, timeoutMs = 5000): Promise<NodeClient> {
    const config = configFrom(options.config);
    const servers = options.natsUrl ? options.natsUrl.split(',') : config.transport.nats.servers;
    const transport = await connectNats({ servers, connectTimeoutMs: Math.min(timeoutMs, 5000), name: 'usage-tracker-cli' });
    const payloadBytesMax = Math.min(transport.payloadBytesMax, config.limits.payload_bytes_max);
    return new NodeClient(transport, subjects(options.prefix ?? config.transport.subject_prefix), servers, options.node, payloadBytesMax);
  }

  subjectOf(endpoint: EndpointName): string {
    return this.node ? this.subjects.nodeEndpoint(this.node, endpoint) : this.subjects.endpoint(endpoint);
  }

  /** Sends one request; returns the reply body (ok or not). */
  async call<T = Record<string, unknown>>(endpoint: EndpointName, body: unknown, timeoutMs: number): Promise<T & { ok: boolean; error?: { code: string; message: string } }> {
    const subject = this.subjectOf(endpoint);
    let reply;
    try {
      reply = await this.transport.request(subject, encode(body), { timeoutMs });
    } catch (error) {
      if (error instanceof ProtocolError && error.code === 'E_UNAVAILABLE') {
        throw new CliError(`no node answers on ${subject} at ${this.servers.join(', ')} (is a node running with NATS and this subject prefix?)`);
      }
      if (error instanceof ProtocolError && error.code === 'E_TIMEOUT') throw new CliError(`no answer on ${subject} within ${timeoutMs} ms`);
      throw error;
    }
    return decode(reply.data, 'msgpack', { payloadBytesMax: 64 * 1024 * 1024, nestingDepthMax: 64 }) as T & { ok: boolean; error?: { code: string; message: string } };
  }

  /** Like call, but an error reply becomes a CliError. */
  async expect<T = Record<string, unknown>>(endpoint: EndpointName, body: unknown, timeoutMs: number): Promise<T> {
    const reply = await this.call<T>(endpoint, body, timeoutMs);
    if (!reply.ok) throw new CliError(`${reply.error?.code ?? 'error'}: ${reply.error?.message ?? 'the node refused'}`);
    return reply;
  }

  /** Drains the connection: every request still in flight gets its answer first. */
  async close(): Promise<void> {
    await this.transport.drain().catch(() => undefined);
  }

  /** Closes the connection at once: requests still in flight fail instead of waiting out their timeouts. */
  async abandon(): Promise<void> {
    await this.transport.connection.close().catch(() => undefined);
  }
}

export async function withClient<T>(options: ConnectionOptions, timeoutMs: number, work: (client: NodeClient) => Promise<T>): Promise<T> {
  const client = await NodeClient.connect(options, timeoutMs);
  let result: T;
  try {
    result = await work(client);
  } catch (error) {
    // The node is gone or the work failed: nothing still in flight is worth waiting for.
    await client.abandon();
    throw error;
  }
  await client.close();
  return result;
}
