// The id index: exact answers for every id set, across growth, with no
// strings kept.

import t from 'tap';
import { IdIndex } from '../../src/storage/id-index.js';

t.test('every id set is found with its latest location; others are not', async (t) => {
  const index = new IdIndex();
  const ids = Array.from({ length: 100_000 }, (_, i) => `rec-${i}-${(i * 2654435761) % 1000003}`);
  ids.forEach((id, i) => index.set(id, i + 1));
  t.equal(index.size, ids.length);
  let wrong = 0;
  ids.forEach((id, i) => {
    if (index.get(id) !== i + 1) wrong++;
  });
  t.equal(wrong, 0, 'all found after many grows');
  index.set(ids[5]!, 999_999);
  t.equal(index.get(ids[5]!), 999_999, 'a set replaces the location');
  t.equal(index.size, ids.length, 'and does not add an entry');
  let phantoms = 0;
  for (let i = 0; i < 100_000; i++) if (index.has(`other-${i}`)) phantoms++;
  t.equal(phantoms, 0, 'no id that was never set is found');
  t.equal(index.get(''), undefined);
});

t.test('ids that differ only slightly, or only in non-ASCII text, stay distinct', async (t) => {
  const index = new IdIndex();
  const ids = ['a', 'b', 'ab', 'ba', 'aa', 'é', 'e\u0301', '😀', '😁', 'rec-1', 'rec-01', 'rec-1 '];
  ids.forEach((id, i) => index.set(id, i + 1));
  t.same(ids.map((id) => index.get(id)), ids.map((_, i) => i + 1));
});

t.test('a location of 0 or less is refused', async (t) => {
  t.throws(() => new IdIndex().set('x', 0), RangeError);
  t.throws(() => new IdIndex().set('x', Number.NaN), RangeError);
});
