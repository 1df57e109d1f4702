// The endpoint handlers of protocol v1 on this node. Each validates its
// request fully before anything is asked of an actor. Endpoints whose actors
// this node does not run answer E_UNAVAILABLE and say which component is
// missing; they never pretend to have stored or found anything.

import { ProtocolError } from '../protocols/errors.js';
import type { ProtocolLimits } from '../protocols/limits.js';
import { recordValidator } from '../protocols/record.js';
import { parseIngest, requestSchemas, validateRequest } from '../protocols/requests.js';
import type { EndpointHandlers, EndpointReply } from './gateway.js';
import type { StorageApi } from './storage-api.js';

export interface EndpointDependencies {
  limits: ProtocolLimits;
  now: () => number;
  /** The node's status reply (tree and facts). */
  status: () => Record<string, unknown>;
  /** Hands a decoded ingest body to an IngestActor; absent when this node runs none. */
  ingest?: (body: unknown) => Promise<EndpointReply>;
  /** Reads and updates over the shards; absent when this node has no storage. */
  storage?: StorageApi;
}

function unavailable(component: string): ProtocolError {
  return new ProtocolError('E_UNAVAILABLE', `${component} is not running on this node`);
}

export function endpointHandlers(deps: EndpointDependencies): EndpointHandlers {
  const validator = recordValidator(deps.limits, deps.now);
  const schemas = requestSchemas(deps.limits, deps.now);
  const check = <T>(schema: Parameters<typeof validateRequest<T>>[0], body: unknown): T => {
    const result = validateRequest(schema, body);
    if (!result.ok) throw result.error;
    return result.value;
  };
  return {
    ingest(body) {
      if (deps.ingest) return deps.ingest(body);
      const items = parseIngest(body, validator, deps.limits);
      const results = items.map((item) => {
        const error = item.ok ? unavailable('shard storage') : item.error;
        const id = item.ok ? item.record.id : item.id;
        return { index: item.index, ...(id !== undefined ? { id } : {}), status: 'rejected', error: error.toBody() };
      });
      return { ok: true, results } satisfies EndpointReply;
    },
    'record.get'(body) {
      const request = check(schemas.recordGet, body);
      if (deps.storage) return deps.storage.get(request.id, request.user_id);
      throw unavailable('shard storage');
    },
    'record.update'(body) {
      const request = check(schemas.recordUpdate, body);
      const patch = validator.validatePatch(request.patch);
      if (!patch.ok) {
        const { field } = patch.error;
        throw field ? new ProtocolError('E_VALIDATION', `patch.${patch.error.message}`, { field: `patch.${field}` }) : patch.error;
      }
      if (deps.storage) return deps.storage.update(request.id, request.user_id, request.expected_version, patch.value);
      throw unavailable('shard storage');
    },
    'query.records'(body) {
      const query = check(schemas.queryRecords, body);
      if (deps.storage) return deps.storage.records(query);
      throw unavailable('shard storage');
    },
    'query.aggregate'(body) {
      const query = check(schemas.queryAggregate, body);
      if (deps.storage) return deps.storage.aggregate(query);
      throw unavailable('shard storage');
    },
    'admin.status'(body) {
      check(schemas.adminStatus, body);
      return { ok: true, ...deps.status() };
    },
  };
}
