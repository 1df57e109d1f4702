// The change feed of a shard: from any seq on, every record's current
// version exactly once, in seq order, across the memtable, sealed files and
// restarts, checked against a model kept by the test.

import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StoredRecord } from '../../protocols/record.js';
import { silentLogger } from '../../src/log.js';
import { nodeFileSystem } from '../../src/ports/fs.js';
import { ShardStore } from '../../src/storage/shard-store.js';
import { newRecord } from '../helpers/records.js';

const open = (dir: string) => ShardStore.open({ dir, shard: 3, nodeId: 'node-t', now: Date.now, fs: nodeFileSystem, fsync: false, log: silentLogger, memtableRecordsMax: 1_000_000, cacheBytesMax: 1 << 20 });

/** Reads the whole feed after `fromSeq` in pages of `limit`. */
async function drain(store: ShardStore, fromSeq: number, limit: number): Promise<{ records: StoredRecord[]; calls: number }> {
  const records: StoredRecord[] = [];
  let from = fromSeq;
  let calls = 0;
  for (;;) {
    const page = await store.changes(from, limit);
    calls++;
    t.ok(page.nextSeq >= from, 'the feed never goes back');
    t.ok(page.records.length <= limit, 'a page holds at most its limit');
    records.push(...page.records);
    if (page.nextSeq === page.headSeq && page.records.length < limit) return { records, calls };
    if (page.nextSeq === from && page.records.length === 0) throw new Error(`feed stuck at ${from}`);
    from = page.nextSeq;
    if (calls > 10_000) throw new Error('feed does not end');
  }
}

t.test('from any seq, the feed holds each current version once, in seq order, across seals and a restart', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'usage-tracker-feed-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  let store = await open(dir);
  const model = new Map<string, StoredRecord>();
  const write = async (from: number, count: number) => {
    const { durable } = store.write(Array.from({ length: count }, (_, i) => newRecord(from + i)));
    await durable;
    for (let i = 0; i < count; i++) {
      const id = `rec-${from + i}`;
      model.set(id, (await store.get(id, `user-${(from + i) % 7}`))!);
    }
  };
  const update = async (n: number) => {
    const current = model.get(`rec-${n}`)!;
    const { record, durable } = await store.update(current.id, current.user_id, current.version, { output_tokens: current.output_tokens + 1 });
    await durable;
    model.set(record.id, record);
  };
  await write(0, 40);
  await store.seal();
  await update(3); // a sealed record updated: its new version is in the memtable
  await write(40, 30);
  await update(45); // updated twice in the memtable
  await update(45);
  await store.seal();
  await write(70, 25);
  await update(10);
  await update(72);

  const check = async (label: string) => {
    const expected = [...model.values()].sort((a, b) => a.seq - b.seq);
    const head = store.durableSeq;
    t.equal(head, Math.max(...expected.map((r) => r.seq)), `${label}: head is the newest seq`);
    for (const limit of [1, 7, 1000]) {
      for (const from of [0, 1, 20, 40, 41, 70, 99, head - 1, head]) {
        const { records } = await drain(store, from, limit);
        t.same(
          records.map((r) => [r.id, r.version, r.seq]),
          expected.filter((r) => r.seq > from).map((r) => [r.id, r.version, r.seq]),
          `${label}: from ${from}, pages of ${limit}`,
        );
      }
    }
  };
  await check('live');
  await store.close();
  store = await open(dir);
  await check('after a restart');
  await store.seal();
  await check('all sealed');
  await store.close();
});

t.test('a shard that is not serving refuses the feed', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'usage-tracker-feed-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = await open(dir);
  await store.close();
  await t.rejects(store.changes(0, 10), { code: 'E_UNAVAILABLE' });
});
