// The endpoint handlers of protocol v1 on this node. Each validates its
// request fully before anything is asked of an actor; ingest bodies are
// validated by the IngestActor itself, record by record.

import { ProtocolError } from '../protocols/errors.js';
import type { ProtocolLimits } from '../protocols/limits.js';
import { recordValidator } from '../protocols/record.js';
import { requestSchemas, validateRequest } from '../protocols/requests.js';
import type { EndpointHandlers, EndpointReply } from './gateway.js';
import type { StorageApi } from './storage-api.js';

export interface EndpointDependencies {
  limits: ProtocolLimits;
  now: () => number;
  /** The node's status reply (tree and facts). */
  status: () => Record<string, unknown>;
  /** Hands a decoded ingest body to an IngestActor. */
  ingest: (body: unknown) => Promise<EndpointReply>;
  /** Reads and updates over the shards. */
  storage: StorageApi;
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
    ingest: (body) => deps.ingest(body),
    'record.get'(body) {
      const request = check(schemas.recordGet, body);
      return deps.storage.get(request.id, request.user_id);
    },
    'record.update'(body) {
      const request = check(schemas.recordUpdate, body);
      const patch = validator.validatePatch(request.patch);
      if (!patch.ok) {
        const { field } = patch.error;
        throw field ? new ProtocolError('E_VALIDATION', `patch.${patch.error.message}`, { field: `patch.${field}` }) : patch.error;
      }
      return deps.storage.update(request.id, request.user_id, request.expected_version, patch.value);
    },
    'query.records'(body) {
      const query = check(schemas.queryRecords, body);
      return deps.storage.records(query);
    },
    'query.aggregate'(body) {
      const query = check(schemas.queryAggregate, body);
      return deps.storage.aggregate(query);
    },
    'admin.status'(body) {
      check(schemas.adminStatus, body);
      return { ok: true, ...deps.status() };
    },
  };
}
