// What an actor accepts from the network. Anything that can publish to the
// node's internal actor subject can address any of its actors, so a body
// that arrives there is checked once, where it enters (ActorSystem.deliver),
// against the target actor's schema: one zod schema per message type the
// actor takes from other nodes. Types that only the node itself sends (an
// actor's own timer ticks) are named as local-only and refused; a type the
// actor does not know is refused with the list it does know. Every refusal
// is E_BAD_REQUEST naming the actor, the type and the offending field, and
// the actor never sees the body. Prototype keys (`__proto__`, `constructor`,
// `prototype`) and nesting deeper than BODY_DEPTH_MAX are refused in any
// body, before its schema runs. Local tells and asks are not re-checked:
// the compiler has typed them.

import type { z } from 'zod';
import { ProtocolError } from '../../protocols/errors.js';
import { describeIssue, problemLine, PROTOCOL_WORDING, sentenceMap, type KnownKeys } from '../../protocols/issues.js';

/** Checks a body from the network; returns the message the actor may be given, or throws E_BAD_REQUEST. */
export interface RemoteSchema<M = unknown> {
  parse(body: unknown): M;
}

export interface MessageSchema<M> extends RemoteSchema<M> {
  /** The actor's name in errors (`PartitionActor`). */
  readonly actor: string;
  /** Types accepted from the network, each with its schema. */
  readonly remoteTypes: readonly string[];
  /** Types refused from the network: only the node itself sends them. */
  readonly localTypes: readonly string[];
}

/** Keys that would reach an object's prototype: refused wherever they appear in a body. */
const PROTO_KEYS = ['__proto__', 'constructor', 'prototype'];

function bad(message: string, field: string, details?: Record<string, unknown>): ProtocolError {
  return new ProtocolError('E_BAD_REQUEST', message, details ? { field, details } : { field });
}

/** A type as it may appear in an error: bounded and quoted, whatever the sender put there. */
function shown(value: unknown): string {
  const text = JSON.stringify(typeof value === 'string' ? value.slice(0, 64) : value);
  return text === undefined ? String(value) : text.slice(0, 80);
}

/** How deep a body may nest: the envelope decoder's own bound, kept here so the walk below is bounded whoever calls it. */
export const BODY_DEPTH_MAX = 32;

/**
 * The first prototype key in a decoded body, or the first place it nests
 * deeper than BODY_DEPTH_MAX, as a dotted path and what is wrong there.
 */
function hostileKeyIn(value: unknown, path: string, depth: number): { field: string; problem: string } | undefined {
  if (value === null || typeof value !== 'object' || value instanceof Uint8Array) return undefined;
  if (depth >= BODY_DEPTH_MAX) return { field: path, problem: `nests deeper than ${BODY_DEPTH_MAX} levels` };
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = hostileKeyIn(value[i], path ? `${path}.${i}` : String(i), depth + 1);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  for (const key of PROTO_KEYS) if (Object.hasOwn(value, key)) return { field: path ? `${path}.${key}` : key, problem: 'reserved key' };
  for (const [key, child] of Object.entries(value)) {
    const found = hostileKeyIn(child, path ? `${path}.${key}` : key, depth + 1);
    if (found !== undefined) return found;
  }
  return undefined;
}

/** The first zod issue as E_BAD_REQUEST naming actor, type and field, in the sentences of protocols/issues.ts. */
function refusal(actor: string, type: string, error: z.ZodError, known: KnownKeys): ProtocolError {
  const issue = error.issues[0];
  const where = `${actor} message ${type}`;
  if (issue === undefined) return bad(`${where}: invalid`, 'type');
  const problems = describeIssue(issue, known, PROTOCOL_WORDING, 'the message');
  return bad(`${where}: ${problems.map(problemLine).join('; ')}`, problems[0]?.field || 'type');
}

/**
 * The remote schema of an actor whose messages are `{type, ...}`. Every type
 * of `M` is either given a schema in `remote` or listed in `localOnly`, so a
 * new message type cannot be added without deciding whether the network may send it.
 */
export function messageSchema<M extends { type: string }, L extends M['type'] = never>(
  actor: string,
  remote: Record<Exclude<M['type'], L>, z.ZodType>,
  localOnly: readonly L[] = [],
): MessageSchema<M> {
  const schemas = new Map<string, z.ZodType>(Object.entries(remote) as [string, z.ZodType][]);
  const remoteTypes = [...schemas.keys()];
  const localTypes: readonly string[] = localOnly;
  const allowed = remoteTypes.join(', ');
  return {
    actor,
    remoteTypes,
    localTypes,
    parse(body) {
      if (body === null || typeof body !== 'object' || Array.isArray(body) || body instanceof Uint8Array) {
        throw bad(`${actor}: a message must be a map with a type (one of ${allowed})`, 'type', { allowed_types: remoteTypes });
      }
      const type: unknown = Object.hasOwn(body, 'type') ? (body as { type: unknown }).type : undefined;
      const schema = typeof type === 'string' ? schemas.get(type) : undefined;
      if (typeof type !== 'string' || schema === undefined) {
        if (typeof type === 'string' && localTypes.includes(type)) {
          throw bad(`${actor}: message type ${shown(type)} is local-only and never accepted from the network`, 'type');
        }
        const what = type === undefined ? 'a message needs a type' : `unknown message type ${shown(type)}`;
        throw bad(`${actor}: ${what}; allowed types: ${allowed}`, 'type', { allowed_types: remoteTypes });
      }
      const hostile = hostileKeyIn(body, '', 0);
      if (hostile !== undefined) throw bad(`${actor} message ${type}: ${hostile.field}: ${hostile.problem}`, hostile.field);
      const known: KnownKeys = new WeakMap();
      const result = schema.safeParse(body, { reportInput: true, error: sentenceMap(known) });
      if (!result.success) throw refusal(actor, type, result.error, known);
      return result.data as M;
    },
  };
}
