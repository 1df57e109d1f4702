// The transport port: what carries envelope bytes between a requester and a
// responder. `embedded` (in-process) and `nats` implement the same contract,
// checked by one conformance suite; errors are ProtocolErrors with codes:
// E_UNAVAILABLE (no responder, not connected, closed), E_TIMEOUT, E_TOO_LARGE.

import { ProtocolError } from '../../protocols/errors.js';

export type Headers = Readonly<Record<string, string>>;

export interface TransportMessage {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers: Headers | undefined;
  /** True when the sender waits for a reply. */
  readonly canRespond: boolean;
  respond(data: Uint8Array, headers?: Headers): boolean;
}

export type MessageHandler = (msg: TransportMessage) => void | Promise<void>;

export interface TransportReply {
  readonly data: Uint8Array;
  readonly headers: Headers | undefined;
}

export interface RequestOptions {
  timeoutMs: number;
  headers?: Headers;
}

export interface SubscribeOptions {
  /** Members of one queue group share the messages: each goes to exactly one of them. */
  queue?: string;
}

export interface TransportSubscription {
  readonly subject: string;
  unsubscribe(): void;
}

/** NATS' default max_payload; the embedded transport enforces the same bound. */
export const DEFAULT_PAYLOAD_BYTES_MAX = 1024 * 1024;

export interface Transport {
  readonly kind: 'embedded' | 'nats';
  /** Largest payload this transport carries; more is E_TOO_LARGE, never truncated. */
  readonly payloadBytesMax: number;
  subscribe(subject: string, handler: MessageHandler, options?: SubscribeOptions): TransportSubscription;
  request(subject: string, data: Uint8Array, options: RequestOptions): Promise<TransportReply>;
  publish(subject: string, data: Uint8Array, headers?: Headers): void;
  /** Resolves once every subscription made so far is active (on NATS: the server has it). */
  flush(): Promise<void>;
  /** Stops delivering new messages, waits for handlers in flight, then closes. */
  drain(): Promise<void>;
  readonly closed: boolean;
}

/** Subject matching with NATS wildcards: `*` one token, `>` one or more trailing tokens. */
export function subjectMatches(pattern: string, subject: string): boolean {
  if (pattern === subject) return true;
  const want = pattern.split('.');
  const have = subject.split('.');
  for (let i = 0; i < want.length; i++) {
    const token = want[i];
    if (token === '>') return have.length > i;
    if (i >= have.length) return false;
    if (token !== '*' && token !== have[i]) return false;
  }
  return want.length === have.length;
}

export function checkPayload(subject: string, data: Uint8Array, payloadBytesMax: number): void {
  if (data.byteLength > payloadBytesMax) {
    throw new ProtocolError('E_TOO_LARGE', `payload for ${subject} is ${data.byteLength} bytes; the transport carries at most ${payloadBytesMax}`, {
      details: { limit_bytes: payloadBytesMax },
    });
  }
}
