// The migration registry: every dependency before its dependants, a stable
// order, and a clear error naming the offender for a duplicate id, a
// missing dependency or a cycle.

import t from 'tap';
import { MigrationGraphError, orderMigrations, pendingMigrations, type MigrationEntry } from '../../src/migration/registry.js';
import { POSTGRES_MIGRATIONS } from '../../src/sync/postgres-schema.js';

const entry = (id: string, ...depends_on: string[]): MigrationEntry => ({ id, description: id, depends_on, targets: ['storage'], strategy: 'online' });

t.test('dependencies come first; ready ones in id order', async (t) => {
  const ordered = orderMigrations([entry('d', 'b', 'c'), entry('c', 'a'), entry('b', 'a'), entry('a'), entry('e')]).map((m) => m.id);
  t.same(ordered, ['a', 'e', 'b', 'c', 'd']);
  const position = new Map(ordered.map((id, index) => [id, index]));
  for (const m of [entry('d', 'b', 'c'), entry('c', 'a'), entry('b', 'a')]) {
    for (const dependency of m.depends_on) t.ok(position.get(dependency)! < position.get(m.id)!, `${dependency} before ${m.id}`);
  }
  t.same(pendingMigrations([entry('b', 'a'), entry('a'), entry('c', 'b')], new Set(['a'])).map((m) => m.id), ['b', 'c']);
});

t.test('a duplicate, a missing dependency and a cycle are refused, naming them', async (t) => {
  t.throws(() => orderMigrations([entry('a'), entry('a')]), new MigrationGraphError('migration a is registered twice'));
  t.throws(() => orderMigrations([entry('a'), entry('b', 'a', 'zz')]), new MigrationGraphError('migration b depends on zz, which is not registered'));
  t.throws(() => orderMigrations([entry('a'), entry('b', 'a', 'd'), entry('c', 'b'), entry('d', 'c')]), new MigrationGraphError('migrations depend on each other in a cycle: b → d → c → b'));
  t.throws(() => orderMigrations([entry('self', 'self')]), new MigrationGraphError('migrations depend on each other in a cycle: self → self'));
});

t.test("the PostgreSQL mirror's migrations are registry entries in a valid order", async (t) => {
  t.same(orderMigrations(POSTGRES_MIGRATIONS).map((m) => m.id), ['0001_usage_records', '0002_outside_edits']);
  t.ok(POSTGRES_MIGRATIONS.every((m) => m.targets.includes('postgres')));
});
