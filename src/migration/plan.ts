// What an apply or a rollback would do: the registry's entries, each
// applied or pending as its target says (storage: node.json's
// format_version; PostgreSQL: schema_migrations), turned into an ordered
// list of actions, and the storage work each action means (shards, files,
// bytes). Pure over those facts plus reading the shard manifests, so a dry
// run and the real run plan the same thing.

import { join } from 'node:path';
import { ProtocolError } from '../../protocols/errors.js';
import type { FileSystem } from '../ports/fs.js';
import type { ShardManifest } from '../storage/manifest.js';
import { isSqlMigration, type Migration } from './entries.js';
import { orderMigrations } from './registry.js';
import { formatOf } from './shard-rewrite.js';

export type EntryState = 'applied' | 'pending' | 'off' | 'unknown';

export type PostgresFacts = { state: 'off' } | { state: 'unreachable'; error: string } | { state: 'reachable'; schema: string; applied: string[] };

export interface PlannedAction {
  id: string;
  direction: 'apply' | 'rollback';
  migration: Migration;
}

export function entryStates(registry: readonly Migration[], nodeFormat: number, postgres: PostgresFacts): Map<string, EntryState> {
  const states = new Map<string, EntryState>();
  for (const migration of orderMigrations(registry)) {
    if (!isSqlMigration(migration)) states.set(migration.id, nodeFormat >= migration.to_format ? 'applied' : 'pending');
    else if (postgres.state === 'off') states.set(migration.id, 'off');
    else if (postgres.state === 'unreachable') states.set(migration.id, 'unknown');
    else states.set(migration.id, postgres.applied.includes(migration.id) ? 'applied' : 'pending');
  }
  return states;
}

/** Every entry `id` depends on, transitively, and itself. */
function withDependencies(byId: Map<string, Migration>, id: string, into = new Set<string>()): Set<string> {
  if (into.has(id)) return into;
  into.add(id);
  for (const dependency of byId.get(id)?.depends_on ?? []) withDependencies(byId, dependency, into);
  return into;
}

/**
 * The pending entries in registry order; with `to`, only that entry and what
 * it depends on. Entries of a mirror that is not configured are left out
 * (`skipped`); those of an unreachable one are kept, and pre-validation refuses them.
 */
export function planApply(registry: readonly Migration[], states: Map<string, EntryState>, to?: string): { actions: PlannedAction[]; skipped: { id: string; reason: string }[] } {
  const ordered = orderMigrations(registry);
  const byId = new Map(ordered.map((migration) => [migration.id, migration]));
  if (to !== undefined && !byId.has(to)) throw new ProtocolError('E_NOT_FOUND', `to: no migration ${to} in the registry (usage-tracker migration status lists them)`, { field: 'to' });
  const wanted = to === undefined ? undefined : withDependencies(byId, to);
  const actions: PlannedAction[] = [];
  const skipped: { id: string; reason: string }[] = [];
  for (const migration of ordered) {
    if (wanted && !wanted.has(migration.id)) continue;
    const state = states.get(migration.id);
    if (state === 'off') skipped.push({ id: migration.id, reason: 'no PostgreSQL mirror is configured (backends.postgres)' });
    else if (state === 'pending' || state === 'unknown') actions.push({ id: migration.id, direction: 'apply', migration });
  }
  return { actions, skipped };
}

/**
 * The newest applied entry, or `id` and every applied entry that depends on
 * it (transitively), newest first. Refused: nothing applied, an unknown or
 * not applied id, an entry that cannot be undone.
 */
export function planRollback(registry: readonly Migration[], states: Map<string, EntryState>, id?: string): PlannedAction[] {
  const ordered = orderMigrations(registry);
  const applied = ordered.filter((migration) => states.get(migration.id) === 'applied');
  let target: Migration | undefined;
  if (id !== undefined) {
    target = ordered.find((migration) => migration.id === id);
    if (!target) throw new ProtocolError('E_NOT_FOUND', `id: no migration ${id} in the registry (usage-tracker migration status lists them)`, { field: 'id' });
    if (states.get(id) !== 'applied') throw new ProtocolError('E_VALIDATION', `id: ${id} is not applied (it is ${states.get(id)}); nothing to roll back`, { field: 'id' });
  } else {
    target = applied.at(-1);
    if (!target) throw new ProtocolError('E_VALIDATION', 'nothing to roll back: no migration is applied on this node');
  }
  const doomed = new Set([target.id]);
  for (const migration of applied) if (migration.depends_on.some((dependency) => doomed.has(dependency))) doomed.add(migration.id);
  const actions = applied.filter((migration) => doomed.has(migration.id)).reverse().map((migration) => ({ id: migration.id, direction: 'rollback' as const, migration }));
  for (const action of actions) {
    if (isSqlMigration(action.migration) && action.migration.down === undefined) {
      throw new ProtocolError('E_VALIDATION', `${action.id} cannot be rolled back: ${action.migration.no_down ?? 'it has no down migration'}`, { field: 'id', details: { migration: action.id } });
    }
  }
  return actions;
}

export interface ShardWork {
  shard: number;
  manifest_format: number;
  files: number;
  bytes: number;
}

/** Per shard, the sealed files not yet in format `to` and their bytes, from the manifests on disk. */
export async function storageWork(fs: FileSystem, dataDir: string, shards: number, to: number): Promise<ShardWork[]> {
  const work: ShardWork[] = [];
  for (let shard = 0; shard < shards; shard++) {
    const path = join(dataDir, 'shards', String(shard), 'metadata.json');
    if (!(await fs.exists(path))) {
      work.push({ shard, manifest_format: to, files: 0, bytes: 0 });
      continue;
    }
    const manifest = JSON.parse(new TextDecoder().decode(await fs.readFile(path))) as ShardManifest;
    const changing = manifest.files.filter((entry) => formatOf(entry) !== to);
    work.push({ shard, manifest_format: manifest.format_version, files: changing.length, bytes: changing.reduce((sum, entry) => sum + entry.bytes, 0) });
  }
  return work;
}
