// The actor system of one node: where actors live, how they are addressed,
// and how an envelope reaches an actor on another node. A path is
// `<nodeId>/<segment>/...`; `ref(path)` gives the same ActorRef interface
// whether the path is local (a mailbox push) or remote (an envelope over the
// transport, answered by the owning node's system). A body that arrives from
// the network reaches an actor only through the schema it was spawned with
// (message-schema.ts); an actor spawned without one takes nothing from the
// network.

import { decode, encodeInternal as encode } from '../../protocols/codec.js';
import { actorEnvelope, checkActorEnvelope, errorEnvelope, okReply, openReply } from '../../protocols/envelope.js';
import { ProtocolError, toProtocolError } from '../../protocols/errors.js';
import { isValidNodeId, subjects as subjectsOf, type Subjects } from '../../protocols/subjects.js';
import { actorLogger, type Logger } from '../log.js';
import { systemClock, type Clock } from '../ports/clock.js';
import type { Transport, TransportMessage, TransportSubscription } from '../transport/transport.js';
import { ActorCell, type Behavior, type ExitReason } from './actor.js';
import type { RemoteSchema } from './message-schema.js';
import { ASK_TIMEOUT_MS_MAX, captureCaller, namedCaller, DEFAULT_ASK_TIMEOUT_MS, PendingAsk, timeoutError, type AskOptions } from './ask.js';

export interface ActorRef<M = unknown, R = unknown> {
  readonly path: string;
  /** Fire and forget. Locally throws E_UNAVAILABLE when the mailbox is full; remotely is best effort. */
  tell(message: M): void;
  ask(message: M, options?: AskOptions): Promise<R>;
}

export interface SpawnOptions<M = unknown> {
  mailboxCapacity?: number;
  onExit?: (reason: ExitReason) => void;
  /** What the actor accepts over the internal actor subject; without it, every envelope from the network is refused. */
  remote?: RemoteSchema<M>;
}

export interface ActorSystemOptions {
  nodeId: string;
  log: Logger;
  clock?: Clock;
  /** Carries envelopes to and from other nodes; without one, remote paths are E_UNAVAILABLE. */
  transport?: Transport;
  subjectPrefix?: string;
  mailboxCapacity?: number;
  askTimeoutMs?: number;
}

/** Where a path is bound; a restarted actor rebinds the same slot so refs survive restarts. */
interface Slot {
  cell: ActorCell<any, any> | undefined;
  remote: RemoteSchema | undefined;
}

/** Bound on an inbound envelope: one protocol payload plus envelope overhead. */
const ENVELOPE_LIMITS = { payloadBytesMax: 2 * 1024 * 1024, nestingDepthMax: 32 };

/** Replies with an envelope; an answer too large for the transport becomes its E_TOO_LARGE error. */
function respondSafely(msg: TransportMessage, reply: ReturnType<typeof okReply>): void {
  try {
    msg.respond(encode(reply));
  } catch (error) {
    msg.respond(encode(errorEnvelope(toProtocolError(error))));
  }
}

/** A body from the network, checked against the schema of the actor at `path`; throws E_BAD_REQUEST. */
function checkedBody(slot: Slot, path: string, body: unknown): unknown {
  if (!slot.remote) throw new ProtocolError('E_BAD_REQUEST', `${path} takes no messages from the network`, { field: 'to' });
  return slot.remote.parse(body);
}

export function nodeOfPath(path: string): string {
  const slash = path.indexOf('/');
  return slash === -1 ? path : path.slice(0, slash);
}

export class ActorSystem {
  readonly nodeId: string;
  readonly log: Logger;
  readonly clock: Clock;
  readonly subjects: Subjects;
  readonly mailboxCapacity: number;
  readonly askTimeoutMs: number;
  private readonly slots = new Map<string, Slot>();
  private transport: Transport | undefined;
  private subscription: TransportSubscription | undefined;

  constructor(options: ActorSystemOptions) {
    if (!isValidNodeId(options.nodeId)) throw new TypeError(`node id ${JSON.stringify(options.nodeId)} must be 1-64 letters, digits, '_' or '-'`);
    this.nodeId = options.nodeId;
    this.log = options.log;
    this.clock = options.clock ?? systemClock;
    this.subjects = subjectsOf(options.subjectPrefix);
    this.mailboxCapacity = options.mailboxCapacity ?? 1024;
    this.askTimeoutMs = options.askTimeoutMs ?? DEFAULT_ASK_TIMEOUT_MS;
    this.transport = options.transport;
  }

  /** Starts an actor at `path` (which must be on this node) and binds it there. */
  spawn<M, R>(path: string, behavior: Behavior<M, R>, options: SpawnOptions<M> = {}): ActorCell<M, R> {
    if (nodeOfPath(path) !== this.nodeId) throw new TypeError(`cannot spawn ${path} on node ${this.nodeId}`);
    const slot = this.slotOf(path);
    if (slot.cell && (slot.cell.lifecycle === 'running' || slot.cell.lifecycle === 'stopping')) {
      throw new Error(`an actor is already running at ${path}`);
    }
    const cell: ActorCell<M, R> = new ActorCell(behavior, {
      path,
      mailboxCapacity: options.mailboxCapacity ?? this.mailboxCapacity,
      clock: this.clock,
      log: actorLogger(this.log, path),
      onExit: (reason) => {
        if (slot.cell === cell) slot.cell = undefined;
        options.onExit?.(reason);
      },
    });
    slot.cell = cell;
    slot.remote = options.remote;
    return cell;
  }

  /** A reference to the actor at `path`, local or remote. Valid across restarts. */
  ref<M = unknown, R = unknown>(path: string): ActorRef<M, R> {
    return nodeOfPath(path) === this.nodeId ? this.localRef<M, R>(path) : this.remoteRef<M, R>(path);
  }

  /** The running cell at a path, if any (for status and tests). */
  cellAt(path: string): ActorCell | undefined {
    return this.slots.get(path)?.cell;
  }

  private slotOf(path: string): Slot {
    let slot = this.slots.get(path);
    if (!slot) {
      slot = { cell: undefined, remote: undefined };
      this.slots.set(path, slot);
    }
    return slot;
  }

  private localRef<M, R>(path: string): ActorRef<M, R> {
    const slot = this.slotOf(path);
    const system = this;
    function ask(message: M, options: AskOptions = {}): Promise<R> {
      const caller = options.caller === undefined ? captureCaller(ask) : namedCaller(options.caller);
      return system.askSlot<R>(slot, path, message, options.timeoutMs ?? system.askTimeoutMs, caller);
    }
    return {
      path,
      tell(message) {
        if (!slot.cell) throw new ProtocolError('E_UNAVAILABLE', `no actor is running at ${path}`);
        slot.cell.tell(message);
      },
      ask,
    };
  }

  private askSlot<R>(slot: Slot, path: string, message: unknown, timeoutMs: number, caller: { stack?: string }): Promise<R> {
    const pending = new PendingAsk<R>(this.clock, path, timeoutMs, caller);
    try {
      if (!slot.cell) throw new ProtocolError('E_UNAVAILABLE', `no actor is running at ${path}`);
      slot.cell.ask(message, pending as PendingAsk<unknown>);
    } catch (error) {
      pending.reject(error);
    }
    return pending.promise;
  }

  private remoteRef<M, R>(path: string): ActorRef<M, R> {
    const system = this;
    const node = nodeOfPath(path);
    const subject = this.subjects.nodeActors(node);
    async function ask(message: M, options: AskOptions = {}): Promise<R> {
      const timeoutMs = options.timeoutMs ?? system.askTimeoutMs;
      const caller = options.caller === undefined ? captureCaller(ask) : namedCaller(options.caller);
      const transport = system.requireTransport(path);
      let reply;
      try {
        reply = await transport.request(subject, encode(actorEnvelope(path, 'ask', message, timeoutMs)), { timeoutMs });
      } catch (error) {
        if (error instanceof ProtocolError && error.code === 'E_TIMEOUT') throw timeoutError(path, timeoutMs, caller);
        if (error instanceof ProtocolError && error.code === 'E_UNAVAILABLE') {
          throw new ProtocolError('E_UNAVAILABLE', `node ${node} does not answer for ${path}`, { cause: error });
        }
        throw error;
      }
      return openReply(decode(reply.data, 'msgpack', ENVELOPE_LIMITS)) as R;
    }
    return {
      path,
      tell(message) {
        system.requireTransport(path).publish(subject, encode(actorEnvelope(path, 'tell', message)));
      },
      ask,
    };
  }

  private requireTransport(path: string): Transport {
    if (!this.transport) throw new ProtocolError('E_UNAVAILABLE', `${path} is on another node and this node has no transport`);
    return this.transport;
  }

  /** Starts answering envelopes addressed to this node's actors; resolves once the transport has the subscription. */
  listen(transport: Transport | undefined = this.transport): Promise<void> {
    if (!transport) throw new Error('listen needs a transport');
    this.transport = transport;
    this.subscription?.unsubscribe();
    this.subscription = transport.subscribe(this.subjects.nodeActors(this.nodeId), (msg) => this.deliver(msg));
    return transport.flush();
  }

  private deliver(msg: TransportMessage): void | Promise<void> {
    let envelope;
    try {
      envelope = checkActorEnvelope(decode(msg.data, 'msgpack', ENVELOPE_LIMITS));
    } catch (error) {
      if (msg.canRespond) msg.respond(encode(errorEnvelope(toProtocolError(error))));
      return;
    }
    // Only existing slots: a peer naming arbitrary paths must not grow the registry.
    const slot = nodeOfPath(envelope.to) === this.nodeId ? this.slots.get(envelope.to) : undefined;
    if (envelope.kind === 'tell') {
      try {
        if (!slot?.cell) throw new ProtocolError('E_UNAVAILABLE', `no actor is running at ${envelope.to}`);
        slot.cell.tell(checkedBody(slot, envelope.to, envelope.body));
      } catch (error) {
        this.log.debug({ err: error, to: envelope.to }, 'remote tell dropped');
      }
      return;
    }
    if (nodeOfPath(envelope.to) !== this.nodeId) {
      msg.respond(encode(errorEnvelope(new ProtocolError('E_NOT_FOUND', `${envelope.to} is not on node ${this.nodeId}`))));
      return;
    }
    if (!slot) {
      msg.respond(encode(errorEnvelope(new ProtocolError('E_UNAVAILABLE', `no actor is running at ${envelope.to}`))));
      return;
    }
    let body;
    try {
      body = checkedBody(slot, envelope.to, envelope.body);
    } catch (error) {
      msg.respond(encode(errorEnvelope(toProtocolError(error))));
      return;
    }
    const timeoutMs = Math.min(envelope.timeout_ms ?? this.askTimeoutMs, ASK_TIMEOUT_MS_MAX);
    return this.askSlot(slot, envelope.to, body, timeoutMs, {}).then(
      (reply) => respondSafely(msg, okReply(reply)),
      (error) => respondSafely(msg, errorEnvelope(toProtocolError(error))),
    );
  }

  /** Stops answering remote envelopes. Actors themselves are stopped by their supervisors. */
  unlisten(): void {
    this.subscription?.unsubscribe();
    this.subscription = undefined;
  }
}
