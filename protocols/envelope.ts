// The envelope that carries an actor message between nodes (and through the
// embedded transport, byte for byte the same). `v` is the protocol version; a
// node refuses an envelope of a version it does not speak.

import { ProtocolError, type ErrorBody } from './errors.js';
import { PROTOCOL_VERSION } from './subjects.js';

export interface ActorEnvelope {
  v: number;
  /** Path of the target actor, `<nodeId>/<segment>/...`. */
  to: string;
  /** `ask` expects a reply envelope; `tell` does not. */
  kind: 'ask' | 'tell';
  body: unknown;
  /** For an ask: how long the asker waits, so the receiving node gives up no later. */
  timeout_ms?: number;
}

export type ReplyEnvelope = { v: number; ok: true; body: unknown } | { v: number; ok: false; error: ErrorBody };

export function actorEnvelope(to: string, kind: ActorEnvelope['kind'], body: unknown, timeoutMs?: number): ActorEnvelope {
  return timeoutMs === undefined ? { v: PROTOCOL_VERSION, to, kind, body } : { v: PROTOCOL_VERSION, to, kind, body, timeout_ms: timeoutMs };
}

export function checkActorEnvelope(value: unknown): ActorEnvelope {
  if (value === null || typeof value !== 'object' || Array.isArray(value) || value instanceof Uint8Array) throw new ProtocolError('E_BAD_REQUEST', 'actor envelope must be a map');
  const envelope = value as Partial<ActorEnvelope>;
  if (envelope.v !== PROTOCOL_VERSION) {
    const v = envelope.v as unknown;
    const given = v === undefined ? 'no protocol version v' : typeof v === 'number' ? `unsupported protocol version ${v}` : `a protocol version v of type ${v === null ? 'null' : typeof v}`;
    throw new ProtocolError('E_BAD_REQUEST', `actor envelope has ${given}; this node speaks ${PROTOCOL_VERSION}`, { field: 'v' });
  }
  if (typeof envelope.to !== 'string' || envelope.to.length === 0 || envelope.to.length > 512) {
    throw new ProtocolError('E_BAD_REQUEST', 'actor envelope needs a target path `to`', { field: 'to' });
  }
  if (envelope.kind !== 'ask' && envelope.kind !== 'tell') {
    throw new ProtocolError('E_BAD_REQUEST', 'actor envelope kind must be ask or tell', { field: 'kind' });
  }
  const timeout = envelope.timeout_ms;
  if (timeout !== undefined && (!Number.isInteger(timeout) || timeout < 1)) {
    throw new ProtocolError('E_BAD_REQUEST', 'actor envelope timeout_ms must be a whole number of milliseconds >= 1', { field: 'timeout_ms' });
  }
  return envelope as ActorEnvelope;
}

export function okReply(body: unknown): ReplyEnvelope {
  return { v: PROTOCOL_VERSION, ok: true, body };
}

export function errorEnvelope(error: ProtocolError): ReplyEnvelope {
  return { v: PROTOCOL_VERSION, ok: false, error: error.toBody() };
}

/** Unwraps a reply envelope: the body, or the ProtocolError it carries. */
export function openReply(value: unknown): unknown {
  if (value === null || typeof value !== 'object') throw new ProtocolError('E_INTERNAL', 'reply envelope must be a map');
  const reply = value as Partial<ReplyEnvelope> & { body?: unknown; error?: ErrorBody };
  if (reply.ok === true) return reply.body;
  if (reply.ok === false && reply.error && typeof reply.error === 'object') throw ProtocolError.fromBody(reply.error);
  throw new ProtocolError('E_INTERNAL', 'malformed reply envelope');
}
