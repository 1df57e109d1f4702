// The NATS transport: request/reply and queue groups over NATS core, reconnect
// forever with capped exponential backoff and jitter, and drain on shutdown
// (subscriptions first, then handlers in flight, then the connection).

import {
  headers as natsHeaders,
  type ConnectionOptions,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  type Subscription,
} from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import { ProtocolError } from '../../protocols/errors.js';
import type { Logger } from '../log.js';
import {
  checkPayload,
  DEFAULT_PAYLOAD_BYTES_MAX,
  type Headers,
  type MessageHandler,
  type RequestOptions,
  type SubscribeOptions,
  type Transport,
  type TransportReply,
  type TransportSubscription,
} from './transport.js';

export interface NatsTransportOptions {
  servers: string | string[];
  name?: string;
  user?: string;
  pass?: string;
  token?: string;
  /** How long the first connection may take before start fails. */
  connectTimeoutMs?: number;
  reconnectBaseMs?: number;
  reconnectMaxMs?: number;
  log?: Logger;
}

/** Capped exponential backoff with full jitter: the delay before reconnect attempt n (from 0). */
export function reconnectDelayMs(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

export async function connectNats(options: NatsTransportOptions): Promise<NatsTransport> {
  const baseMs = options.reconnectBaseMs ?? 250;
  const maxMs = options.reconnectMaxMs ?? 10_000;
  let attempt = 0;
  const connectOptions: ConnectionOptions = {
    servers: options.servers,
    name: options.name ?? 'usage-tracker',
    timeout: options.connectTimeoutMs ?? 5000,
    reconnect: true,
    maxReconnectAttempts: -1,
    reconnectDelayHandler: () => reconnectDelayMs(attempt++, baseMs, maxMs),
    // The kernel records the asker's stack itself, more cheaply; nats.js would capture two more per request.
    noAsyncTraces: true,
    ...(options.user !== undefined ? { user: options.user } : {}),
    ...(options.pass !== undefined ? { pass: options.pass } : {}),
    ...(options.token !== undefined ? { token: options.token } : {}),
  };
  let connection: NatsConnection;
  try {
    connection = await connect(connectOptions);
  } catch (error) {
    const servers = Array.isArray(options.servers) ? options.servers.join(', ') : options.servers;
    throw new ProtocolError('E_UNAVAILABLE', `cannot connect to NATS at ${servers}: ${(error as Error).message}`, { cause: error });
  }
  const transport = new NatsTransport(connection, options.log);
  transport.watchStatus(() => (attempt = 0));
  return transport;
}

export class NatsTransport implements Transport {
  readonly kind = 'nats' as const;
  private readonly subscriptions = new Set<Subscription>();
  private readonly inFlight = new Set<Promise<void>>();
  private draining = false;
  /** What the last connection event said: lost (reconnecting) until the next `reconnect`. */
  private lost = false;

  constructor(
    readonly connection: NatsConnection,
    private readonly log?: Logger,
  ) {}

  get closed(): boolean {
    return this.connection.isClosed();
  }

  /** The link to the server as this client knows it: up, lost and being retried, or closed for good. */
  get link(): 'connected' | 'reconnecting' | 'closed' {
    if (this.closed) return 'closed';
    return this.lost ? 'reconnecting' : 'connected';
  }

  /** The server's max_payload, as it announced it. */
  get payloadBytesMax(): number {
    return this.connection.info?.max_payload ?? DEFAULT_PAYLOAD_BYTES_MAX;
  }

  /** Logs connection changes, follows the link's state and resets the backoff once reconnected. */
  watchStatus(onReconnect: () => void): void {
    void (async () => {
      for await (const status of this.connection.status()) {
        if (status.type === 'disconnect' || status.type === 'reconnecting') this.lost = true;
        if (status.type === 'reconnect') {
          this.lost = false;
          onReconnect();
        }
        if (status.type === 'disconnect' || status.type === 'reconnect' || status.type === 'error') {
          this.log?.warn({ nats: status.type, server: 'server' in status ? status.server : undefined }, `nats ${status.type}`);
        }
      }
    })().catch(() => undefined);
  }

  subscribe(subject: string, handler: MessageHandler, options: SubscribeOptions = {}): TransportSubscription {
    if (this.draining || this.closed) throw new ProtocolError('E_UNAVAILABLE', 'nats transport is closed');
    const subscription = this.connection.subscribe(subject, {
      ...(options.queue !== undefined ? { queue: options.queue } : {}),
      callback: (error, msg) => {
        if (error) {
          this.log?.error({ err: error, subject }, 'nats subscription failed');
          return;
        }
        this.dispatch(handler, msg);
      },
    });
    this.subscriptions.add(subscription);
    return {
      subject,
      unsubscribe: () => {
        this.subscriptions.delete(subscription);
        subscription.unsubscribe();
      },
    };
  }

  private dispatch(handler: MessageHandler, msg: Msg): void {
    let result: void | Promise<void>;
    try {
      result = handler({
        subject: msg.subject,
        data: msg.data,
        headers: msg.headers ? toHeaders(msg.headers) : undefined,
        canRespond: Boolean(msg.reply),
        respond: (data, replyHeaders) => {
          checkPayload(`the reply on ${msg.subject}`, data, this.payloadBytesMax);
          return msg.respond(data, replyHeaders ? { headers: toMsgHdrs(replyHeaders) } : undefined);
        },
      });
    } catch (error) {
      this.log?.error({ err: error, subject: msg.subject }, 'message handler threw');
      return;
    }
    if (result instanceof Promise) {
      const tracked = result
        .catch((error: unknown) => this.log?.error({ err: error, subject: msg.subject }, 'message handler failed'))
        .finally(() => this.inFlight.delete(tracked));
      this.inFlight.add(tracked);
    }
  }

  publish(subject: string, data: Uint8Array, headers?: Headers): void {
    if (this.draining || this.closed) throw new ProtocolError('E_UNAVAILABLE', 'nats transport is closed');
    checkPayload(subject, data, this.payloadBytesMax);
    this.connection.publish(subject, data, headers ? { headers: toMsgHdrs(headers) } : undefined);
  }

  async request(subject: string, data: Uint8Array, options: RequestOptions): Promise<TransportReply> {
    if (this.draining || this.closed) throw new ProtocolError('E_UNAVAILABLE', 'nats transport is closed');
    checkPayload(subject, data, this.payloadBytesMax);
    try {
      const msg = await this.connection.request(subject, data, {
        timeout: options.timeoutMs,
        ...(options.headers ? { headers: toMsgHdrs(options.headers) } : {}),
      });
      return { data: msg.data, headers: msg.headers ? toHeaders(msg.headers) : undefined };
    } catch (error) {
      throw requestError(error, subject, options.timeoutMs);
    }
  }

  async flush(): Promise<void> {
    await this.connection.flush();
  }

  async drain(): Promise<void> {
    if (this.draining || this.closed) return;
    this.draining = true;
    await Promise.all([...this.subscriptions].map((subscription) => subscription.drain().catch(() => undefined)));
    this.subscriptions.clear();
    while (this.inFlight.size > 0) await Promise.all(this.inFlight);
    await this.connection.drain().catch(() => this.connection.close());
  }
}

function requestError(error: unknown, subject: string, timeoutMs: number): ProtocolError {
  const name = (error as Error)?.name;
  const cause = (error as { cause?: Error })?.cause;
  if (name === 'TimeoutError' || cause?.name === 'TimeoutError') {
    return new ProtocolError('E_TIMEOUT', `request on ${subject} timed out after ${timeoutMs} ms`, { cause: error });
  }
  if (cause?.name === 'NoRespondersError' || (error as { isNoResponders?: () => boolean }).isNoResponders?.()) {
    return new ProtocolError('E_UNAVAILABLE', `no responders on ${subject}`, { cause: error });
  }
  return new ProtocolError('E_UNAVAILABLE', `request on ${subject} failed: ${(error as Error)?.message}`, { cause: error });
}

function toHeaders(msgHeaders: MsgHdrs): Headers {
  const result: Record<string, string> = {};
  for (const [key, values] of msgHeaders) result[key] = values[0] ?? '';
  return result;
}

export function toMsgHdrs(headers: Headers): MsgHdrs {
  const result = natsHeaders();
  for (const [key, value] of Object.entries(headers)) result.set(key, value);
  return result;
}
