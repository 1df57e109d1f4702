// Conflict strategies for rows written outside usage-tracker: each decides
// as documented, only patchable fields are ever taken from an edit, and an
// edit that changes nothing is not a conflict.

import t from 'tap';
import type { StoredRecord } from '../../protocols/record.js';
import { resolveConflict, sameValue, type OutsideEdit } from '../../src/sync/conflicts.js';
import { newRecord } from '../helpers/records.js';

const T0 = Date.UTC(2026, 10, 20, 12);
const local: StoredRecord = { ...newRecord(1), version: 2, shard: 0, seq: 9, updated_at: T0, vv: { n1: 2 }, output_tokens: 50, status: 'success', latency_ms: 100 } as StoredRecord;
const base = { input_tokens: local.input_tokens, output_tokens: 40, status: 'success', latency_ms: 100, cost_usd: local.cost_usd };

function edit(fields: Record<string, unknown>, editedAt = T0 + 1000, withBase = true): OutsideEdit {
  return { shard: 0, id: local.id, user_id: local.user_id, fields: { ...base, output_tokens: 50, ...fields }, base: withBase ? base : undefined, editedAt };
}

t.test('latest_wins: the later of the edit and the local version', async (t) => {
  t.match(resolveConflict('latest_wins', ['local', 'mirror'], local, edit({ status: 'error' })), { take: 'remote', patch: { status: 'error' } });
  t.match(resolveConflict('latest_wins', ['local', 'mirror'], local, edit({ status: 'error' }, T0 - 1000)), { take: 'local' });
});

t.test('an edit that leaves every field as local has it is no conflict: local stands', async (t) => {
  t.match(resolveConflict('latest_wins', ['local', 'mirror'], local, edit({})), { take: 'local', why: /left every field/ });
});

t.test('merge: fields only the edit changed are taken; fields both changed keep the local value', async (t) => {
  // base: output 40; local changed output to 50; the edit changes output to 70 (both) and status (edit only).
  const resolution = resolveConflict('merge', ['local', 'mirror'], local, edit({ output_tokens: 70, status: 'timeout' }));
  t.match(resolution, { take: 'remote', patch: { status: 'timeout' }, why: /changed on both sides, local kept: output_tokens/ });
  t.notOk('output_tokens' in (resolution as { patch: object }).patch);
  t.match(resolveConflict('merge', ['local', 'mirror'], local, edit({ output_tokens: 70 })), { take: 'local' }, 'only a field both changed: local');
  t.match(resolveConflict('merge', ['local', 'mirror'], local, edit({ status: 'error' }, T0, false)), { take: 'park', why: /no base/ });
});

t.test('manual parks everything; source_priority follows the order', async (t) => {
  t.match(resolveConflict('manual', ['local', 'mirror'], local, edit({ status: 'error' })), { take: 'park' });
  t.match(resolveConflict('source_priority', ['local', 'mirror'], local, edit({ status: 'error' })), { take: 'local' });
  t.match(resolveConflict('source_priority', ['mirror', 'local'], local, edit({ status: 'error' })), { take: 'remote', patch: { status: 'error' } });
});

t.test('a row with no local record is removed, or parked when the mirror has priority', async (t) => {
  t.match(resolveConflict('latest_wins', ['local', 'mirror'], undefined, edit({})), { take: 'remove' });
  t.match(resolveConflict('merge', ['local', 'mirror'], undefined, edit({})), { take: 'remove' });
  t.match(resolveConflict('source_priority', ['mirror', 'local'], undefined, edit({})), { take: 'park' });
  t.match(resolveConflict('manual', ['local', 'mirror'], undefined, edit({})), { take: 'park' });
});

t.test('only patchable fields are taken from an edit', async (t) => {
  const resolution = resolveConflict('source_priority', ['mirror', 'local'], local, edit({ status: 'error', provider: 'evil', ts: 0, user_id: 'someone' } as never));
  t.same(Object.keys((resolution as { patch: object }).patch), ['status']);
});

t.test('sameValue compares plain data, maps in any key order', async (t) => {
  t.ok(sameValue({ a: 1, b: 'x' }, { b: 'x', a: 1 }));
  t.ok(sameValue(undefined, null));
  t.notOk(sameValue({ a: 1 }, { a: 1, b: 2 }));
  t.notOk(sameValue(0, null));
  t.notOk(sameValue('1', 1));
});
