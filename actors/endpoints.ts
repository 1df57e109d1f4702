// The endpoint handlers of protocol v1 on this node. Each validates its
// request fully before anything is asked of an actor; ingest bodies are
// validated by the IngestActor itself, record by record.

import { ProtocolError } from '../protocols/errors.js';
import type { ProtocolLimits } from '../protocols/limits.js';
import { recordValidator } from '../protocols/record.js';
import { requestSchemas, validateRequest, type BackupKind, type BackupRestoreRequest, type SyncBackend } from '../protocols/requests.js';
import type { MigrationApplyRequest, MigrationRollbackRequest } from '../protocols/requests.js';
import type { EndpointHandlers, EndpointReply } from './gateway.js';
import type { PatternApi } from './pattern-api.js';
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
  /** The sync actors of the configured backends. */
  sync: SyncApi;
  /** query.similar and query.anomalies. */
  patterns: PatternApi;
  /** The BackupActor. */
  backup: BackupApi;
  /** The MigrationActor: where each target stands. */
  migration: MigrationApi;
  /** The RetentionActor: run (or dry-run) the policies now; where it stands. */
  retention: { run(dryRun: boolean): Promise<Record<string, unknown>>; status(): Promise<Record<string, unknown>> };
}

export interface MigrationApi {
  status(): Promise<Record<string, unknown>>;
  plan(): Promise<Record<string, unknown>>;
  apply(request: MigrationApplyRequest): Promise<Record<string, unknown>>;
  rollback(request: MigrationRollbackRequest): Promise<Record<string, unknown>>;
}

export interface BackupApi {
  create(kind: BackupKind): Promise<Record<string, unknown>>;
  list(): Promise<Record<string, unknown>>;
  verify(backupId: string): Promise<Record<string, unknown>>;
  restore(request: BackupRestoreRequest): Promise<Record<string, unknown>>;
}

export interface SyncApi {
  configured(): SyncBackend[];
  status(backend: SyncBackend): Promise<Record<string, unknown>>;
  resync(backend: SyncBackend, fromSeq: number, shards: number[] | undefined): Promise<Record<string, unknown>>;
  verify(backend: SyncBackend, repair: boolean, shards: number[] | undefined): Promise<Record<string, unknown>>;
  conflicts(backend: SyncBackend, open: boolean, limit: number): Promise<Record<string, unknown>>;
  resolve(backend: SyncBackend, conflictId: number, take: 'local' | 'remote'): Promise<Record<string, unknown>>;
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
      const patch = validator.validatePatch(request.patch, 'patch');
      if (!patch.ok) throw patch.error;
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
    'query.similar'(body) {
      return deps.patterns.similar(check(schemas.querySimilar, body));
    },
    'query.anomalies'(body) {
      return deps.patterns.anomalies(check(schemas.queryAnomalies, body));
    },
    'admin.status'(body) {
      check(schemas.adminStatus, body);
      return { ok: true, ...deps.status() };
    },
    async 'admin.sync.status'(body) {
      const request = check(schemas.syncStatus, body);
      const configured = deps.sync.configured();
      if (request.backend !== undefined && !configured.includes(request.backend)) throw notConfigured(request.backend);
      const backends = request.backend !== undefined ? [request.backend] : configured;
      return { ok: true, backends: await Promise.all(backends.map((backend) => deps.sync.status(backend))) };
    },
    async 'admin.sync.resync'(body) {
      const request = check(schemas.syncResync, body);
      if (!deps.sync.configured().includes(request.backend)) throw notConfigured(request.backend);
      return { ok: true, ...(await deps.sync.resync(request.backend, request.from_seq, request.shards)) };
    },
    async 'admin.sync.conflicts'(body) {
      const request = check(schemas.syncConflicts, body);
      if (!deps.sync.configured().includes(request.backend)) throw notConfigured(request.backend);
      return { ok: true, ...(await deps.sync.conflicts(request.backend, request.open, request.limit)) };
    },
    async 'admin.sync.resolve'(body) {
      const request = check(schemas.syncResolve, body);
      if (!deps.sync.configured().includes(request.backend)) throw notConfigured(request.backend);
      return { ok: true, ...(await deps.sync.resolve(request.backend, request.conflict_id, request.take)) };
    },
    async 'admin.backup.create'(body) {
      return { ok: true, ...(await deps.backup.create(check(schemas.backupCreate, body).kind)) };
    },
    async 'admin.backup.list'(body) {
      check(schemas.backupList, body);
      return { ok: true, ...(await deps.backup.list()) };
    },
    async 'admin.backup.verify'(body) {
      return { ok: true, ...(await deps.backup.verify(check(schemas.backupVerify, body).backup_id)) };
    },
    async 'admin.backup.restore'(body) {
      return { ok: true, ...(await deps.backup.restore(check(schemas.backupRestore, body))) };
    },
    async 'admin.migration.status'(body) {
      check(schemas.adminStatus, body);
      return { ok: true, ...(await deps.migration.status()) };
    },
    async 'admin.retention.run'(body) {
      return { ok: true, ...(await deps.retention.run(check(schemas.retentionRun, body).dry_run)) };
    },
    async 'admin.retention.status'(body) {
      check(schemas.retentionStatus, body);
      return { ok: true, ...(await deps.retention.status()) };
    },
    async 'admin.migration.plan'(body) {
      check(schemas.adminStatus, body);
      return { ok: true, ...(await deps.migration.plan()) };
    },
    async 'admin.migration.apply'(body) {
      return { ok: true, ...(await deps.migration.apply(check(schemas.migrationApply, body))) };
    },
    async 'admin.migration.rollback'(body) {
      return { ok: true, ...(await deps.migration.rollback(check(schemas.migrationRollback, body))) };
    },
    async 'admin.sync.verify'(body) {
      const request = check(schemas.syncVerify, body);
      if (!deps.sync.configured().includes(request.backend)) throw notConfigured(request.backend);
      return { ok: true, ...(await deps.sync.verify(request.backend, request.repair, request.shards)) };
    },
  };
}

function notConfigured(backend: SyncBackend): ProtocolError {
  return new ProtocolError('E_NOT_FOUND', `backend ${backend} is not configured on this node (backends.${backend} in cluster.yml)`, { field: 'backend' });
}
