// Idempotency over real NATS, as protocols/README.md §6.1 states it: a
// record is addressed by (user_id, id); a repeat of the same (user_id, id) is
// `duplicate`; dedup is by id within a shard, so an id already stored for
// another user is refused (E_CONFLICT on `id`, not stored) when both users
// live in the same shard, and stored separately when they do not. Either way
// no record is silently dropped, and one user never reads or patches another's.

import t from 'tap';
import { shardOf } from '../../src/storage/node-meta.js';
import { startTestNode, type TestNode } from '../helpers/node.js';

const SHARDS = 4;
const YAML = `cluster:\n  shards: ${SHARDS}\n`;

/** Two user ids in the same shard, and a third in another, found by the node's own placement. */
function users(): { first: string; sameShard: string; otherShard: string } {
  const first = 'user-a';
  const candidates = Array.from({ length: 1000 }, (_, i) => `user-${i}`);
  const sameShard = candidates.find((user) => user !== first && shardOf(user, SHARDS) === shardOf(first, SHARDS));
  const otherShard = candidates.find((user) => shardOf(user, SHARDS) !== shardOf(first, SHARDS));
  if (sameShard === undefined || otherShard === undefined) throw new Error('no users found for both placements');
  return { first, sameShard, otherShard };
}

const record = (id: string, user_id: string, input_tokens = 10) => ({ id, ts: Date.now() - 60_000, user_id, provider: 'anthropic', model: 'claude', input_tokens, output_tokens: 5 });

const taken = (index: number, id: string) => ({
  index,
  id,
  status: 'rejected',
  error: { code: 'E_CONFLICT', field: 'id', message: `id "${id}" is already stored for another user, so this record was not stored; ids must be unique across users` },
});

t.test('the same id for two users: refused in a shared shard, stored apart otherwise; never a silent duplicate', async (t) => {
  const { first, sameShard, otherShard } = users();
  t.equal(shardOf(sameShard, SHARDS), shardOf(first, SHARDS), `${first} and ${sameShard} share a shard`);
  t.not(shardOf(otherShard, SHARDS), shardOf(first, SHARDS), `${otherShard} lives in another`);
  const tn: TestNode = await startTestNode(YAML);
  t.teardown(() => tn.stop());

  const stored = await tn.call('ingest', record('r-1', first, 11));
  t.same(stored.results, [{ index: 0, id: 'r-1', status: 'stored', version: 1 }]);
  t.same((await tn.call('ingest', record('r-1', first, 11))).results, [{ index: 0, id: 'r-1', status: 'duplicate', version: 1 }], 'the same (user_id, id) again is a duplicate');

  const single = await tn.call('ingest', record('r-1', sameShard, 22));
  t.equal(single.ok, true, 'a refused record is a result, not a failed request');
  t.same(single.results, [taken(0, 'r-1')], 'the same id for a user in the same shard is refused, naming the id');

  const batch = await tn.call('ingest', { records: [record('r-2', first), record('r-1', sameShard, 22), record('r-1', otherShard, 33), record('r-2', sameShard)] });
  t.same(
    batch.results,
    [{ index: 0, id: 'r-2', status: 'stored', version: 1 }, taken(1, 'r-1'), { index: 2, id: 'r-1', status: 'stored', version: 1 }, taken(3, 'r-2')],
    'in a batch: refused per record in the shared shard, stored in the other, the rest unaffected',
  );

  const get = (id: string, user_id: string) => tn.call('record.get', { id, user_id });
  t.equal((await get('r-1', first)).record?.input_tokens, 11, "the first user's record is untouched");
  t.equal((await get('r-1', otherShard)).record?.input_tokens, 33, 'the user in another shard has a record of their own under the same id');
  t.match(await get('r-1', sameShard), { ok: false, error: { code: 'E_NOT_FOUND' } }, 'the refused user has none');
  const totals = await tn.call('query.aggregate', { group_by: ['user_id'], metrics: ['count'] });
  t.same(
    totals.rows.map((row: { user_id: string; count: number }) => [row.user_id, row.count]).sort(),
    [[first, 2], [otherShard, 1]].sort(),
    'nothing stored for the refused user, nothing twice',
  );
});

t.test("one user cannot read or patch another user's record by its id", async (t) => {
  const { first, sameShard, otherShard } = users();
  const tn: TestNode = await startTestNode(YAML);
  t.teardown(() => tn.stop());
  t.same((await tn.call('ingest', record('mine', first, 11))).results, [{ index: 0, id: 'mine', status: 'stored', version: 1 }]);

  for (const stranger of [sameShard, otherShard]) {
    const where = stranger === sameShard ? 'same shard' : 'other shard';
    t.match(await tn.call('record.get', { id: 'mine', user_id: stranger }), { ok: false, error: { code: 'E_NOT_FOUND' } }, `${where}: get is E_NOT_FOUND`);
    const patch = await tn.call('record.update', { id: 'mine', user_id: stranger, expected_version: 1, patch: { input_tokens: 999 } });
    t.match(patch, { ok: false, error: { code: 'E_NOT_FOUND' } }, `${where}: update is E_NOT_FOUND`);
    t.notMatch(JSON.stringify(patch.error), new RegExp(first), `${where}: the owner is not named`);
  }
  const own = await tn.call('record.get', { id: 'mine', user_id: first });
  t.match(own.record, { input_tokens: 11, version: 1 }, "the owner's record is unchanged");
});
