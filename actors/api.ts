// The ApiActor: the node's front door. It serves every endpoint of protocol
// v1 on the embedded transport and, when the node has NATS, as the NATS
// micro-service `usage-tracker` (so `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS`
// find it), in a queue group shared by all nodes, plus a per-node copy of each
// endpoint. It holds no state; stopping it stops new requests and waits for
// the ones in flight.

import { Svcm, type Service } from '@nats-io/services';
import { ENDPOINTS, type EndpointName, type Subjects } from '../protocols/subjects.js';
import type { Logger } from '../src/log.js';
import { ServiceErrorCounter } from '../src/transport/service-errors.js';
import { toMsgHdrs, type NatsTransport } from '../src/transport/nats.js';
import type { Transport, TransportMessage, TransportSubscription } from '../src/transport/transport.js';
import type { ProtocolError } from '../protocols/errors.js';
import type { Gateway } from './gateway.js';

export const SERVICE_NAME = 'usage-tracker';

export interface ApiOptions {
  gateway: Gateway;
  subjects: Subjects;
  nodeId: string;
  version: string;
  queueGroup: string;
  embedded: Transport;
  nats: NatsTransport | undefined;
  log: Logger;
}

const endpointNames = Object.keys(ENDPOINTS) as EndpointName[];

/** Endpoint names of the services framework allow only letters, digits, `-` and `_`. */
const serviceEndpointName = (name: EndpointName, perNode: boolean) => `${perNode ? 'node-' : ''}${name.replace(/\./g, '-')}`;

export class ApiActor {
  private readonly subscriptions: TransportSubscription[] = [];
  private readonly inFlight = new Set<Promise<unknown>>();
  private service: Service | undefined;
  private stopped = false;

  constructor(private readonly options: ApiOptions) {}

  async start(): Promise<void> {
    const { subjects, nodeId, queueGroup, embedded } = this.options;
    for (const name of endpointNames) {
      const handler = async (msg: TransportMessage) => { await this.track(name, msg); };
      this.subscriptions.push(embedded.subscribe(subjects.endpoint(name), handler, { queue: queueGroup }));
      this.subscriptions.push(embedded.subscribe(subjects.nodeEndpoint(nodeId, name), handler));
    }
    if (this.options.nats) {
      await this.registerService(this.options.nats);
      // Started means reachable: the server has every endpoint subscription before we say so.
      await this.options.nats.flush();
    }
  }

  private async registerService(nats: NatsTransport): Promise<void> {
    const { subjects, nodeId, queueGroup, version } = this.options;
    this.service = await new Svcm(nats.connection).add({
      name: SERVICE_NAME,
      version,
      description: 'LLM usage records: ingest, query, admin (protocol v1)',
      queue: queueGroup,
      metadata: { node_id: nodeId, protocol: '1', subject_prefix: subjects.prefix },
    });
    const errors = new ServiceErrorCounter(this.service, this.options.log);
    for (const name of endpointNames) {
      for (const perNode of [false, true]) {
        const endpointName = serviceEndpointName(name, perNode);
        this.service.addEndpoint(endpointName, {
          subject: perNode ? subjects.nodeEndpoint(nodeId, name) : subjects.endpoint(name),
          metadata: { endpoint: name, scope: perNode ? 'node' : 'cluster' },
          handler: (error, msg) => {
            if (error) {
              this.options.log.error({ err: error, endpoint: name }, 'service endpoint failed');
              return;
            }
            void this.track(name, {
              subject: msg.subject,
              data: msg.data,
              headers: msg.headers ? Object.fromEntries([...msg.headers].map(([key, values]) => [key, values[0] ?? ''])) : undefined,
              canRespond: Boolean(msg.reply),
              respond: (data, headers) => msg.respond(data, headers ? { headers: toMsgHdrs(headers) } : undefined),
            }).then((failure) => failure && errors.count(endpointName, failure));
          },
        });
      }
    }
  }

  private track(name: EndpointName, msg: TransportMessage): Promise<ProtocolError | undefined> {
    const handled = this.options.gateway.handle(name, msg).finally(() => this.inFlight.delete(handled));
    this.inFlight.add(handled);
    return handled;
  }

  /** Stops taking requests, then waits for those in flight. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const subscription of this.subscriptions.splice(0)) subscription.unsubscribe();
    await this.service?.stop().catch(() => undefined);
    while (this.inFlight.size > 0) await Promise.all(this.inFlight);
  }

  kill(): void {
    this.stopped = true;
    for (const subscription of this.subscriptions.splice(0)) subscription.unsubscribe();
    void this.service?.stop().catch(() => undefined);
  }

  status(): Record<string, unknown> {
    return {
      endpoints: endpointNames.length,
      nats_service: this.service ? (this.service.isStopped ? 'stopped' : 'registered') : 'off',
      in_flight: this.inFlight.size,
      requests: this.options.gateway.stats.requests,
    };
  }
}
