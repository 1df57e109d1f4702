// The binary WAL entry: every field and odd value survives a round trip,
// the msgpack form of earlier builds still replays, and malformed entries
// (truncated, wrong tag, unknown bits, trailing bytes, lengths past the end)
// are refused with an error, never decoded into something else.

import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StoredRecord } from '../../protocols/record.js';
import { silentLogger } from '../../src/log.js';
import { nodeFileSystem } from '../../src/ports/fs.js';
import { decodeEntry, encodeEntryInto } from '../../src/storage/record-codec.js';
import { ShardStore } from '../../src/storage/shard-store.js';
import { encodeFrame, encodeLegacyFrame, scanSegment } from '../../src/storage/wal.js';
import { newRecord } from '../helpers/records.js';

function stored(n: number, overrides: Partial<StoredRecord> = {}): StoredRecord {
  const base = newRecord(n);
  return { ...base, version: 1, shard: 3, seq: n, updated_at: base.ingested_at + 7, vv: { 'node-t': 1, 'node-u': 4 }, ...overrides } as StoredRecord;
}

function entryBytes(seq: number, record: StoredRecord): Uint8Array {
  const { buffer, end } = encodeEntryInto(0, seq, record);
  return new Uint8Array(buffer.subarray(0, end));
}

t.test('every field, unicode, metadata and unknown fields survive a round trip', async (t) => {
  const full = stored(7, {
    cached_tokens: 12,
    cost_usd: 0.000123456789,
    latency_ms: 0,
    status: 'error',
    error_code: 'rate_limited',
    session_id: 'séance-🎲-' + 'x'.repeat(60),
    campaign_id: 'Dungeon 𝔇𝔢𝔢𝔭',
    operation: 'combat_narration',
    metadata: { table: 'main', round: 3, crit: true, note: null },
    version: 17,
    shard: 0,
    ingested_at: 1_795_000_000_123,
  });
  const withFuture = { ...full, vv: { 'node-a': 3, 'node-b': 1 }, flag: false } as unknown as StoredRecord;
  for (const record of [full, withFuture, stored(42)]) {
    const decoded = decodeEntry(entryBytes(42, { ...record, seq: 42 }));
    t.equal(decoded.seq, 42);
    t.equal(decoded.op, 'put');
    t.strictSame(decoded.record, { ...record, seq: 42 });
  }
});

t.test('entries of layout 1 (before updated_at and vv) still decode, with stand-ins for both', async (t) => {
  const { updated_at: _updated, vv: _vv, ...old } = stored(6);
  const bytes = entryBytes(6, old as StoredRecord);
  t.equal(bytes[0], 0x02, 'written with layout 2');
  bytes[0] = 0x01;
  t.strictSame(decodeEntry(bytes).record, { ...old, updated_at: old.ingested_at, vv: {} });
  const withVector = entryBytes(6, stored(6));
  withVector[0] = 0x01;
  t.throws(() => decodeEntry(withVector), /unknown field bits/, 'layout 1 has no bits for the new fields');
});

t.test("a record's seq is its entry's: set when absent, kept when it differs", async (t) => {
  const { seq: _seq, ...withoutSeq } = stored(5);
  t.equal(decodeEntry(entryBytes(9, withoutSeq as StoredRecord)).record.seq, 9);
  t.equal(decodeEntry(entryBytes(9, stored(5, { seq: 4 }))).record.seq, 4);
  t.ok(entryBytes(9, stored(5, { seq: 9 })).length < entryBytes(9, stored(5, { seq: 4 })).length, 'an equal seq is not written twice');
});

t.test('a version vector of any size round-trips (beyond 255 nodes it travels in extra)', async (t) => {
  for (const size of [0, 1, 255, 300]) {
    const vv = Object.fromEntries(Array.from({ length: size }, (_, i) => [`node-${i}`, i + 0.5]));
    t.strictSame(decodeEntry(entryBytes(3, stored(3, { seq: 3, vv }))).record.vv, vv, `${size} entries`);
  }
});

t.test('a value of the wrong kind for its field travels in extra, not lost or coerced', async (t) => {
  const odd = { ...stored(2), cost_usd: null, latency_ms: '12' } as unknown as StoredRecord;
  const decoded = decodeEntry(entryBytes(1, odd)).record as unknown as Record<string, unknown>;
  t.equal(decoded.cost_usd, null);
  t.equal(decoded.latency_ms, '12');
});

t.test('a string longer than the field format allows is refused at write time', async (t) => {
  t.throws(() => entryBytes(1, stored(3, { session_id: 'é'.repeat(40_000) })), /session_id is 80000 bytes/);
});

t.test('malformed binary entries are refused, never decoded into something else', async (t) => {
  const good = entryBytes(5, stored(4, { metadata: { a: 1 } }));
  for (let cut = 0; cut < good.length; cut++) {
    t.throws(() => decodeEntry(good.subarray(0, cut)), RangeError, `cut at ${cut} of ${good.length}`);
  }
  const withTrailing = new Uint8Array([...good, 0]);
  t.throws(() => decodeEntry(withTrailing), /1 bytes after the entry/);
  const badTag = good.slice();
  badTag[0] = 0x07;
  t.throws(() => decodeEntry(badTag), /not a binary entry/);
  const badOp = good.slice();
  badOp[1] = 9;
  t.throws(() => decodeEntry(badOp), /unknown operation 9/);
  const badMask = good.slice();
  new DataView(badMask.buffer).setUint32(10, 1 << 25, true);
  t.throws(() => decodeEntry(badMask), /unknown field bits/);
  const badSeq = good.slice();
  new DataView(badSeq.buffer).setFloat64(2, 0.5, true);
  t.throws(() => decodeEntry(badSeq), /bad sequence/);
  const hugeLength = good.slice();
  new DataView(hugeLength.buffer).setUint16(14, 0xffff, true);
  t.throws(() => decodeEntry(hugeLength), /ends .* bytes early/);
});

t.test('a frame whose CRC matches but whose entry is malformed makes the segment corrupt', async (t) => {
  const frames = [encodeFrame({ seq: 1, op: 'put', record: stored(1) }), encodeFrame({ seq: 2, op: 'put', record: stored(2) })];
  // Rewrite frame 1's mask to set an unknown bit, then fix its CRC: only the decoder can tell.
  const broken = encodeFrame({ seq: 1, op: 'put', record: stored(1) });
  const payload = broken.slice(8);
  new DataView(payload.buffer).setUint32(10, 1 << 25, true);
  const { crc32 } = await import('node:zlib');
  const lengthBytes = broken.subarray(0, 4);
  const rebuilt = new Uint8Array(broken.length);
  rebuilt.set(lengthBytes, 0);
  new DataView(rebuilt.buffer).setUint32(4, crc32(payload, crc32(lengthBytes)), true);
  rebuilt.set(payload, 8);
  const scan = scanSegment(new Uint8Array([...rebuilt, ...frames[1]!]));
  t.equal(scan.tail.kind, 'corrupt');
  t.match(scan.tail, { reason: /undecodable entry: unknown field bits/ });
});

t.test('a WAL written in the msgpack form of earlier builds replays unchanged, and new frames follow it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'usage-tracker-legacy-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const first = await ShardStore.open({ dir, shard: 3, nodeId: 'node-t', now: Date.now, fs: nodeFileSystem, fsync: true, log: silentLogger, memtableRecordsMax: 1000, cacheBytesMax: 1 << 20 });
  await first.close();
  // Earlier builds' records had no seq, updated_at or vv: the entry's seq, the ingest time and an empty vector stand in.
  const legacy = [1, 2, 3].map((n) => {
    const { seq: _seq, updated_at: _updated, vv: _vv, ...old } = stored(n);
    return encodeLegacyFrame({ seq: n, op: 'put', record: old as StoredRecord });
  });
  writeFileSync(join(dir, 'wal', '0000000000000001.log'), Buffer.concat(legacy));
  const store = await ShardStore.open({ dir, shard: 3, nodeId: 'node-t', now: Date.now, fs: nodeFileSystem, fsync: true, log: silentLogger, memtableRecordsMax: 1000, cacheBytesMax: 1 << 20 });
  t.equal(store.health.state, 'serving');
  t.same(await store.get('rec-2', 'user-2'), { ...stored(2), updated_at: stored(2).ingested_at, vv: {} });
  const { results, durable } = store.write([newRecord(4), newRecord(2)]);
  await durable;
  t.same(results, [{ status: 'stored', version: 1 }, { status: 'duplicate', version: 1 }]);
  await store.close();
  const again = await ShardStore.open({ dir, shard: 3, nodeId: 'node-t', now: Date.now, fs: nodeFileSystem, fsync: true, log: silentLogger, memtableRecordsMax: 1000, cacheBytesMax: 1 << 20 });
  t.equal(again.health.state, 'serving', 'a segment mixing both forms replays');
  t.equal(again.nextSeq, 5);
  t.equal((await again.get('rec-4', 'user-4'))?.input_tokens, 104);
  await again.close();
});
