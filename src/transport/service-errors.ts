// Error replies in `$SRV.STATS`. The NATS services framework counts an
// endpoint's error only when its handler throws synchronously; ours answer
// later, with the error in the reply body, so `$SRV.STATS` would say
// `num_errors: 0` whatever the node answered. This module counts each error
// reply on the framework's own per-endpoint stats, the object `$SRV.STATS`
// reads, so `num_errors` and `last_error` (`E_VALIDATION: ...`) are true.
//
// That object is not the framework's public API: `handlers[].stats` with
// `countError(err)` in @nats-io/services 3.0.0-25, the version package.json
// pins. A version without it leaves `$SRV.STATS` counting nothing and the
// node says so once in its log; `admin.status` (`api.errors`) counts every
// error reply either way.

import type { Service } from '@nats-io/services';
import type { ProtocolError } from '../../protocols/errors.js';
import type { Logger } from '../log.js';

interface EndpointStats {
  countError(error: Error): void;
}

interface ServiceInternals {
  handlers?: Array<{ name?: unknown; stats?: Partial<EndpointStats> }>;
}

/** Counts error replies of a service's endpoints, by endpoint name. */
export class ServiceErrorCounter {
  private warned = false;

  constructor(
    private readonly service: Service,
    private readonly log: Logger,
  ) {}

  /** Records one error reply of endpoint `name` as `$SRV.STATS` shows it. */
  count(name: string, error: ProtocolError): void {
    const handlers = (this.service as unknown as ServiceInternals).handlers;
    const stats = Array.isArray(handlers) ? handlers.find((handler) => handler.name === name)?.stats : undefined;
    if (typeof stats?.countError === 'function') {
      stats.countError(new Error(`${error.code}: ${error.message}`));
      return;
    }
    if (this.warned) return;
    this.warned = true;
    this.log.warn({ endpoint: name }, '$SRV.STATS cannot count error replies with this version of @nats-io/services; admin.status counts them');
  }
}
