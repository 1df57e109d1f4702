// The in-process transport: the same envelope bytes as over NATS, delivered
// within one process. Semantics follow NATS core: wildcards, queue groups
// (one member per message, round robin), fan-out to plain subscribers,
// "no responders" when nothing listens, and delivery always asynchronous
// (on the next turn of the event loop, never a microtask chain).
// Bytes are copied on delivery so neither side can see the other mutate them.

import { ProtocolError } from '../../protocols/errors.js';
import {
  checkPayload,
  DEFAULT_PAYLOAD_BYTES_MAX,
  subjectMatches,
  type Headers,
  type MessageHandler,
  type RequestOptions,
  type SubscribeOptions,
  type Transport,
  type TransportReply,
  type TransportSubscription,
} from './transport.js';

interface Subscriber {
  subject: string;
  queue: string | undefined;
  handler: MessageHandler;
}

export class EmbeddedTransport implements Transport {
  readonly kind = 'embedded' as const;
  private readonly subscribers = new Set<Subscriber>();
  private readonly roundRobin = new Map<string, number>();
  /** Subscribers matching a subject, grouped; cleared whenever a subscription comes or goes. */
  private readonly matchCache = new Map<string, { plain: Subscriber[]; groups: [string, Subscriber[]][] }>();
  private readonly inFlight = new Set<Promise<void>>();
  private state: 'open' | 'draining' | 'closed' = 'open';

  constructor(readonly payloadBytesMax: number = DEFAULT_PAYLOAD_BYTES_MAX) {}

  get closed(): boolean {
    return this.state === 'closed';
  }

  subscribe(subject: string, handler: MessageHandler, options: SubscribeOptions = {}): TransportSubscription {
    if (this.state !== 'open') throw new ProtocolError('E_UNAVAILABLE', 'embedded transport is closed');
    const subscriber: Subscriber = { subject, queue: options.queue, handler };
    this.subscribers.add(subscriber);
    this.matchCache.clear();
    return {
      subject,
      unsubscribe: () => {
        this.subscribers.delete(subscriber);
        this.matchCache.clear();
      },
    };
  }

  publish(subject: string, data: Uint8Array, headers?: Headers): void {
    if (this.state !== 'open') throw new ProtocolError('E_UNAVAILABLE', 'embedded transport is closed');
    checkPayload(subject, data, this.payloadBytesMax);
    for (const target of this.targets(subject)) this.deliver(target, subject, data, headers, undefined);
  }

  request(subject: string, data: Uint8Array, options: RequestOptions): Promise<TransportReply> {
    if (this.state !== 'open') return Promise.reject(new ProtocolError('E_UNAVAILABLE', 'embedded transport is closed'));
    try {
      checkPayload(subject, data, this.payloadBytesMax);
    } catch (error) {
      return Promise.reject(error);
    }
    const targets = this.targets(subject);
    if (targets.length === 0) return Promise.reject(new ProtocolError('E_UNAVAILABLE', `no responders on ${subject}`));
    return new Promise<TransportReply>((resolve, reject) => {
      let answered = false;
      const timer = setTimeout(() => {
        answered = true;
        reject(new ProtocolError('E_TIMEOUT', `request on ${subject} timed out after ${options.timeoutMs} ms`));
      }, options.timeoutMs);
      const respond = (reply: Uint8Array, replyHeaders?: Headers): boolean => {
        if (answered) return false;
        checkPayload(`the reply on ${subject}`, reply, this.payloadBytesMax);
        answered = true;
        clearTimeout(timer);
        const copy = reply.slice();
        queueMicrotask(() => resolve({ data: copy, headers: replyHeaders }));
        return true;
      };
      for (const target of targets) this.deliver(target, subject, data, options.headers, respond);
    });
  }

  private targets(subject: string): Subscriber[] {
    let match = this.matchCache.get(subject);
    if (!match) {
      const plain: Subscriber[] = [];
      const groups = new Map<string, Subscriber[]>();
      for (const subscriber of this.subscribers) {
        if (!subjectMatches(subscriber.subject, subject)) continue;
        if (subscriber.queue === undefined) {
          plain.push(subscriber);
          continue;
        }
        const key = `${subscriber.subject}\u0000${subscriber.queue}`;
        const members = groups.get(key);
        if (members) members.push(subscriber);
        else groups.set(key, [subscriber]);
      }
      match = { plain, groups: [...groups] };
      if (this.matchCache.size > 10_000) this.matchCache.clear();
      this.matchCache.set(subject, match);
    }
    const targets = match.plain.slice();
    for (const [key, members] of match.groups) {
      const turn = this.roundRobin.get(key) ?? 0;
      this.roundRobin.set(key, turn + 1);
      targets.push(members[turn % members.length]!);
    }
    return targets;
  }

  private deliver(
    target: Subscriber,
    subject: string,
    data: Uint8Array,
    headers: Headers | undefined,
    respond: ((data: Uint8Array, headers?: Headers) => boolean) | undefined,
  ): void {
    const copy = data.slice();
    const frozenHeaders = headers ? Object.freeze({ ...headers }) : undefined;
    // A macrotask, as a socket read would be: in-process traffic must not starve timers and I/O.
    setImmediate(() => {
      if (!this.subscribers.has(target)) return;
      let result: void | Promise<void>;
      try {
        result = target.handler({
          subject,
          data: copy,
          headers: frozenHeaders,
          canRespond: respond !== undefined,
          respond: respond ?? (() => false),
        });
      } catch {
        return;
      }
      if (result instanceof Promise) {
        const tracked = result.catch(() => undefined).finally(() => this.inFlight.delete(tracked));
        this.inFlight.add(tracked);
      }
    });
  }

  /** Subscriptions are active as soon as they are made; this only lets queued deliveries run. */
  flush(): Promise<void> {
    return new Promise((resolve) => setImmediate(resolve));
  }

  async drain(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'draining';
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (this.inFlight.size > 0) await Promise.all(this.inFlight);
    this.subscribers.clear();
    this.state = 'closed';
  }
}
