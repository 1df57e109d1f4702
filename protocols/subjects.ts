// Subject names of protocol v1. The prefix (default `usage`) is configurable;
// everything after it is fixed by the protocol.

export const PROTOCOL_VERSION = 1;
export const PROTOCOL_HEADER = 'Usage-Protocol';
export const CONTENT_TYPE_HEADER = 'Content-Type';
export const JSON_CONTENT_TYPE = 'application/json';
export const MSGPACK_CONTENT_TYPE = 'application/msgpack';
export const DEFAULT_SUBJECT_PREFIX = 'usage';

/** One or more dot-separated tokens of letters, digits, `_` and `-`: no wildcards, no spaces. */
const PREFIX_PATTERN = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;
const NODE_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

export function isValidSubjectPrefix(prefix: string): boolean {
  return prefix.length <= 128 && PREFIX_PATTERN.test(prefix);
}

export function isValidNodeId(nodeId: string): boolean {
  return NODE_ID_PATTERN.test(nodeId);
}

/** The public endpoints, as name (used by `$SRV.INFO`) to subject suffix after `<prefix>.v1.`. */
export const ENDPOINTS = {
  ingest: 'ingest',
  'record.get': 'record.get',
  'record.update': 'record.update',
  'query.records': 'query.records',
  'query.aggregate': 'query.aggregate',
  'query.similar': 'query.similar',
  'query.anomalies': 'query.anomalies',
  'admin.status': 'admin.status',
  'admin.sync.status': 'admin.sync.status',
  'admin.sync.resync': 'admin.sync.resync',
  'admin.sync.verify': 'admin.sync.verify',
  'admin.sync.conflicts': 'admin.sync.conflicts',
  'admin.sync.resolve': 'admin.sync.resolve',
  'admin.backup.create': 'admin.backup.create',
  'admin.backup.list': 'admin.backup.list',
  'admin.backup.verify': 'admin.backup.verify',
  'admin.backup.restore': 'admin.backup.restore',
  'admin.migration.status': 'admin.migration.status',
  'admin.migration.plan': 'admin.migration.plan',
  'admin.migration.apply': 'admin.migration.apply',
  'admin.migration.rollback': 'admin.migration.rollback',
  'admin.retention.run': 'admin.retention.run',
  'admin.retention.status': 'admin.retention.status',
} as const;

export type EndpointName = keyof typeof ENDPOINTS;

export interface Subjects {
  readonly prefix: string;
  endpoint(name: EndpointName): string;
  /** Where a node receives actor envelopes addressed to its actors. */
  nodeActors(nodeId: string): string;
  /** A node's own copy of an endpoint, to address one node among many. */
  nodeEndpoint(nodeId: string, name: EndpointName): string;
}

export function subjects(prefix: string = DEFAULT_SUBJECT_PREFIX): Subjects {
  if (!isValidSubjectPrefix(prefix)) {
    throw new TypeError(`subject prefix ${JSON.stringify(prefix)} must be dot-separated tokens of letters, digits, '_' or '-'`);
  }
  const base = `${prefix}.v${PROTOCOL_VERSION}`;
  return {
    prefix,
    endpoint: (name) => `${base}.${ENDPOINTS[name]}`,
    nodeActors: (nodeId) => `${base}.node.${checkedNodeId(nodeId)}.actor`,
    nodeEndpoint: (nodeId, name) => `${base}.node.${checkedNodeId(nodeId)}.${ENDPOINTS[name]}`,
  };
}

function checkedNodeId(nodeId: string): string {
  if (!isValidNodeId(nodeId)) {
    throw new TypeError(`node id ${JSON.stringify(nodeId)} must be 1-64 letters, digits, '_' or '-'`);
  }
  return nodeId;
}
