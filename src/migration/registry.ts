// The registry of migrations (issue 5): every change of a storage format,
// of the PostgreSQL schema or of the Chroma collections is an entry with an
// id, what it depends on, what it changes and whether it can run while the
// node serves. `orderMigrations` puts them in an order that respects every
// dependency, and refuses a registry it cannot order: a duplicate id, a
// dependency that does not exist, or a cycle, each named.

export const MIGRATION_TARGETS = ['storage', 'postgres', 'chroma'] as const;
export type MigrationTarget = (typeof MIGRATION_TARGETS)[number];

export interface MigrationEntry {
  /** Unique and never reused, such as `postgres-0002_outside_edits`. */
  id: string;
  description: string;
  depends_on: readonly string[];
  targets: readonly MigrationTarget[];
  /** online: runs while the node serves (readers handle both forms meanwhile); offline: the node must be stopped. */
  strategy: 'online' | 'offline';
}

export class MigrationGraphError extends Error {
  override readonly name = 'MigrationGraphError';
}

/**
 * A dependency-respecting order (Kahn's algorithm; among migrations ready at
 * the same time, the smaller id first, so the order is stable).
 */
export function orderMigrations<T extends MigrationEntry>(entries: readonly T[]): T[] {
  const byId = new Map<string, T>();
  for (const entry of entries) {
    if (byId.has(entry.id)) throw new MigrationGraphError(`migration ${entry.id} is registered twice`);
    byId.set(entry.id, entry);
  }
  for (const entry of entries) {
    for (const dependency of entry.depends_on) {
      if (!byId.has(dependency)) throw new MigrationGraphError(`migration ${entry.id} depends on ${dependency}, which is not registered`);
    }
  }
  const waiting = new Map(entries.map((entry) => [entry.id, new Set(entry.depends_on)]));
  const ordered: T[] = [];
  for (;;) {
    const ready = [...waiting].filter(([, dependencies]) => dependencies.size === 0).map(([id]) => id).sort();
    if (ready.length === 0) break;
    for (const id of ready) {
      waiting.delete(id);
      ordered.push(byId.get(id)!);
      for (const dependencies of waiting.values()) dependencies.delete(id);
    }
  }
  if (waiting.size > 0) throw new MigrationGraphError(`migrations depend on each other in a cycle: ${cycleIn(waiting).join(' → ')}`);
  return ordered;
}

/** One cycle among the migrations that could not be ordered, as a path that ends where it starts. */
function cycleIn(waiting: Map<string, Set<string>>): string[] {
  let at = [...waiting.keys()].sort()[0]!;
  const seen: string[] = [];
  while (!seen.includes(at)) {
    seen.push(at);
    // Every waiting migration still waits on another waiting one, so this always finds a next step.
    at = [...waiting.get(at)!].sort()[0]!;
  }
  return [...seen.slice(seen.indexOf(at)), at];
}

/** What is left to apply, in order, given the ids already applied. */
export function pendingMigrations<T extends MigrationEntry>(entries: readonly T[], applied: ReadonlySet<string>): T[] {
  return orderMigrations(entries).filter((entry) => !applied.has(entry.id));
}
