// Anti-entropy digests: order does not matter, a single changed version or
// id shows in exactly its day and bucket, and the wire form round-trips.

import t from 'tap';
import { BUCKETS, compareDigests, leafOf, ShardDigest } from '../../src/sync/merkle.js';

const DAY = Date.UTC(2026, 10, 20, 12);
const rows = Array.from({ length: 2000 }, (_, i) => ({ id: `r-${i}`, version: 1 + (i % 3), ts: DAY + (i % 4) * 86_400_000 + i }));

function digestOf(list: typeof rows): ShardDigest {
  const digest = new ShardDigest();
  for (const row of list) digest.add(row.id, row.version, row.ts);
  return digest;
}

t.test('the same records in any order give the same tree', async (t) => {
  const a = digestOf(rows);
  const b = digestOf([...rows].reverse());
  t.same(compareDigests(a, b), { daysEqual: 4, differing: [] });
  t.same(a.toWire().sort(), b.toWire().sort());
});

t.test('a changed version, a missing and an extra record show in their own day and bucket only', async (t) => {
  const local = digestOf(rows);
  const changed = rows.map((row) => (row.id === 'r-10' ? { ...row, version: row.version + 1 } : row)).filter((row) => row.id !== 'r-1001');
  changed.push({ id: 'extra', version: 1, ts: DAY });
  const difference = compareDigests(local, digestOf(changed));
  const expected = new Map<string, Set<number>>();
  for (const row of [rows[10]!, rows[1001]!, { id: 'extra', version: 1, ts: DAY }]) {
    const day = new Date(row.ts).toISOString().slice(0, 10);
    if (!expected.has(day)) expected.set(day, new Set());
    expected.get(day)!.add(leafOf(row.id, 1).bucket);
  }
  t.same(
    difference.differing.map((d) => [d.day, d.buckets]),
    [...expected].sort(([a], [b]) => a.localeCompare(b)).map(([day, buckets]) => [day, [...buckets].sort((x, y) => x - y)]),
  );
  t.equal(difference.daysEqual, 4 - expected.size);
});

t.test('buckets spread ids over all 256 and the wire form round-trips exactly', async (t) => {
  const buckets = new Set(rows.map((row) => leafOf(row.id, row.version).bucket));
  t.ok(buckets.size > 200 && [...buckets].every((b) => b >= 0 && b < BUCKETS));
  const digest = digestOf(rows);
  const back = ShardDigest.fromWire(JSON.parse(JSON.stringify(digest.toWire())));
  t.same(compareDigests(digest, back).differing, []);
  t.not(leafOf('a', 1).hash, leafOf('a', 2).hash, 'the version is part of the leaf');
});
