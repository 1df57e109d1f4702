// ShardStore: durable writes, dedup, versions, sealing and recovery, torn
// tails and corruption, on a real directory (and a faulty filesystem).

import t from 'tap';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../src/log.js';
import { faultyFileSystem, nodeFileSystem, type FileSystem } from '../../src/ports/fs.js';
import { ShardStore, type NewRecord } from '../../src/storage/shard-store.js';
import { newRecord } from '../helpers/records.js';

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'usage-tracker-shard-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const open = (dir: string, fs: FileSystem = nodeFileSystem, memtableRecordsMax = 1_000_000) =>
  ShardStore.open({ dir, shard: 3, nodeId: 'node-t', now: Date.now, fs, fsync: true, log: silentLogger, memtableRecordsMax, cacheBytesMax: 64 << 20 });

async function writeAll(store: ShardStore, records: NewRecord[]) {
  const { results, durable } = store.write(records);
  await durable;
  return results;
}

async function collect(store: ShardStore, filters = {}) {
  const out = [];
  for await (const record of store.scan(filters)) out.push(record);
  return out.sort((a, b) => a.id.localeCompare(b.id));
}

t.test('stored records survive a reopen, with versions and shard', async (t) => {
  const dir = tempDir(t);
  const store = await open(dir);
  const results = await writeAll(store, [newRecord(1), newRecord(2)]);
  t.same(results, [{ status: 'stored', version: 1 }, { status: 'stored', version: 1 }]);
  await store.close();
  const again = await open(dir);
  const got = await again.get('rec-1', 'user-1');
  t.equal(got?.version, 1);
  t.equal(got?.shard, 3);
  t.equal(got?.input_tokens, 101);
  t.equal(await again.get('rec-1', 'user-2'), undefined, 'another user does not see it');
  t.equal((await collect(again)).length, 2);
  await again.close();
});

t.test('the same id twice in one batch, in two batches, after sealing, after a restart: one record', async (t) => {
  const dir = tempDir(t);
  const store = await open(dir);
  t.same(await writeAll(store, [newRecord(1), newRecord(1)]), [{ status: 'stored', version: 1 }, { status: 'duplicate', version: 1 }]);
  t.same(await writeAll(store, [newRecord(1)]), [{ status: 'duplicate', version: 1 }]);
  await store.seal();
  t.same(await writeAll(store, [newRecord(1)]), [{ status: 'duplicate', version: 1 }], 'after sealing');
  await store.close();
  const again = await open(dir);
  t.same(await writeAll(again, [newRecord(1), newRecord(2)]), [{ status: 'duplicate', version: 1 }, { status: 'stored', version: 1 }], 'after a restart');
  t.equal((await collect(again)).filter((record) => record.id === 'rec-1').length, 1);
  await again.close();
});

t.test('an id stored for another user is refused, never answered duplicate; that user cannot read or patch it', async (t) => {
  const dir = tempDir(t);
  const store = await open(dir);
  const mine = newRecord(1, { user_id: 'u-a' });
  const theirs = newRecord(1, { user_id: 'u-b', input_tokens: 999 });
  const taken = { status: 'rejected', error: { code: 'E_CONFLICT', field: 'id', message: 'id "rec-1" is already stored for another user, so this record was not stored; ids must be unique across users' } };
  t.same(await writeAll(store, [mine, theirs]), [{ status: 'stored', version: 1 }, taken], 'in one batch');
  t.same(await writeAll(store, [newRecord(1, { user_id: 'u-b' })]), [taken], 'in a later batch, unsealed');
  t.same(await writeAll(store, [newRecord(1, { user_id: 'u-a' })]), [{ status: 'duplicate', version: 1 }], 'the owner resending is a duplicate');
  const crossed = async (when: string) => {
    t.equal(await store.get('rec-1', 'u-b'), undefined, `${when}: the other user does not see it`);
    await t.rejects(store.update('rec-1', 'u-b', 1, { output_tokens: 1 }), { code: 'E_NOT_FOUND' }, `${when}: nor patch it`);
    t.equal((await store.get('rec-1', 'u-a'))?.input_tokens, mine.input_tokens, `${when}: the owner's record is unchanged`);
  };
  await crossed('unsealed');
  await store.seal();
  t.same(await writeAll(store, [newRecord(1, { user_id: 'u-b' })]), [taken], 'after sealing');
  await crossed('sealed');
  await store.close();
  const again = await open(dir);
  t.same(await writeAll(again, [newRecord(1, { user_id: 'u-b' }), newRecord(2, { user_id: 'u-b' })]), [taken, { status: 'stored', version: 1 }], 'after a restart');
  t.same((await collect(again)).map((record) => [record.id, record.user_id, record.version]), [['rec-1', 'u-a', 1], ['rec-2', 'u-b', 1]], 'one rec-1, the first user\'s');
  await again.close();
});

t.test('sealing writes verified day partitions and trims the WAL', async (t) => {
  const dir = tempDir(t);
  const store = await open(dir);
  await writeAll(store, Array.from({ length: 50 }, (_, i) => newRecord(i)));
  const sealed = await store.seal();
  t.equal(sealed.records, 50);
  t.equal(sealed.files, 5, 'one file per UTC day');
  const manifest = JSON.parse(readFileSync(join(dir, 'metadata.json'), 'utf8'));
  t.equal(manifest.sealed_seq, 50);
  t.same(readdirSync(join(dir, 'partitions')).sort(), manifest.files.map((f: { name: string }) => f.name).sort());
  t.same(readdirSync(join(dir, 'wal')), ['0000000000000051.log'], 'old segments deleted, a fresh one started');
  t.equal(statSync(join(dir, 'wal', '0000000000000051.log')).size, 0);
  await writeAll(store, [newRecord(100)]);
  await store.close();
  const again = await open(dir);
  t.equal((await collect(again)).length, 51);
  t.equal((await collect(again, { user_id: 'user-3' })).length, (await collect(again)).filter((r) => r.user_id === 'user-3').length);
  await again.close();
});

t.test('optimistic versions: one update wins per version, the rest conflict', async (t) => {
  const dir = tempDir(t);
  const store = await open(dir);
  await writeAll(store, [newRecord(1)]);
  await store.seal();
  const attempts = await Promise.allSettled(
    Array.from({ length: 10 }, (_, i) => store.update('rec-1', 'user-1', 1, { output_tokens: 1000 + i }).then((u) => u.durable.then(() => u.record))),
  );
  const won = attempts.filter((a) => a.status === 'fulfilled');
  t.equal(won.length, 1, 'exactly one wins');
  for (const lost of attempts.filter((a) => a.status === 'rejected')) {
    t.match((lost as PromiseRejectedResult).reason, { code: 'E_CONFLICT', details: { current_version: 2 } });
  }
  await t.rejects(store.update('nope', 'user-1', 1, { output_tokens: 1 }), { code: 'E_NOT_FOUND' });
  await store.close();
  const again = await open(dir);
  t.equal((await again.get('rec-1', 'user-1'))?.version, 2, 'the update to a sealed record survives a restart');
  await again.seal();
  t.equal((await again.get('rec-1', 'user-1'))?.version, 2, 'and a second seal');
  t.equal((await collect(again)).length, 1, 'only the current version is scanned');
  await again.close();
});

t.test('a torn tail cut at every byte of the last frame is dropped silently', async (t) => {
  const dir = tempDir(t);
  const store = await open(dir);
  await writeAll(store, [newRecord(1), newRecord(2)]);
  await writeAll(store, [newRecord(3)]);
  await store.close();
  const segment = join(dir, 'wal', readdirSync(join(dir, 'wal'))[0]!);
  const whole = readFileSync(segment);
  const lastFrameStart = (() => {
    let offset = 0;
    let last = 0;
    while (offset < whole.length) {
      last = offset;
      offset += 8 + whole.readUInt32LE(offset);
    }
    return last;
  })();
  let checked = 0;
  for (let cut = lastFrameStart; cut < whole.length; cut++) {
    writeFileSync(segment, whole.subarray(0, cut));
    const reopened = await open(dir);
    const ids = (await collect(reopened)).map((r) => r.id);
    if (reopened.health.state !== 'serving' || ids.join() !== 'rec-1,rec-2') {
      t.fail(`cut at ${cut}: ${reopened.health.state} ${ids.join()}`);
    }
    t.equal(statSync(segment).size, lastFrameStart, `cut at ${cut}: truncated to the last whole frame`);
    await reopened.close();
    checked++;
  }
  t.ok(checked > 20, `${checked} cut points checked`);
});

t.test('a flipped bit before the last frame makes the shard refuse to serve', async (t) => {
  const dir = tempDir(t);
  const store = await open(dir);
  for (let i = 0; i < 5; i++) await writeAll(store, [newRecord(i)]);
  await store.close();
  const segment = join(dir, 'wal', readdirSync(join(dir, 'wal'))[0]!);
  const bytes = readFileSync(segment);
  bytes[20] = bytes[20]! ^ 0x01;
  writeFileSync(segment, bytes);
  const reopened = await open(dir);
  t.equal(reopened.health.state, 'corrupt');
  t.match(reopened.status(), { health: 'corrupt', reason: /checksum mismatch/ });
  t.throws(() => reopened.write([newRecord(9)]), { code: 'E_UNAVAILABLE', message: /refuses to serve/ });
  await t.rejects(reopened.get('rec-1', 'user-1'), { code: 'E_UNAVAILABLE' });
  t.equal(readFileSync(segment).length, bytes.length, 'nothing is truncated or rewritten');
});

t.test('a corrupted or truncated sealed file is detected and never served', async (t) => {
  for (const damage of ['flip', 'truncate'] as const) {
    const dir = tempDir(t);
    const store = await open(dir);
    await writeAll(store, [newRecord(1), newRecord(2)]);
    await store.seal();
    await store.close();
    const file = join(dir, 'partitions', readdirSync(join(dir, 'partitions'))[0]!);
    if (damage === 'flip') {
      const bytes = readFileSync(file);
      bytes[bytes.length - 5] = bytes[bytes.length - 5]! ^ 0xff;
      writeFileSync(file, bytes);
    } else {
      truncateSync(file, statSync(file).size - 3);
    }
    const reopened = await open(dir);
    t.equal(reopened.health.state, 'corrupt', damage);
    t.match(reopened.status(), { reason: /SHA-256 does not match/ }, damage);
    await t.rejects(collect(reopened), { code: 'E_UNAVAILABLE' }, `${damage}: nothing is served`);
  }
});

t.test('a failed fsync fails the write and nothing unsynced is acknowledged', async (t) => {
  const dir = tempDir(t);
  let failSync = false;
  const fs = faultyFileSystem(nodeFileSystem, (operation) => (operation === 'datasync' && failSync ? 'EIO' : undefined));
  const store = await open(dir, fs);
  await writeAll(store, [newRecord(1)]);
  failSync = true;
  const { durable } = store.write([newRecord(2)]);
  await t.rejects(durable, { name: 'WalFailure', code: 'EIO' }, 'the write is not acknowledged');
  t.throws(() => store.write([newRecord(3)]), { name: 'WalFailure' }, 'the log refuses everything after: the shard must restart');
  failSync = false;
  const again = await open(dir);
  t.ok(await again.get('rec-1', 'user-1'), 'the acknowledged record is there');
  await again.close();
});

t.test('a full disk gives a clear error and no false acknowledgement', async (t) => {
  const dir = tempDir(t);
  let full = false;
  const fs = faultyFileSystem(nodeFileSystem, (operation) => (operation === 'write' && full ? 'ENOSPC' : undefined));
  const store = await open(dir, fs);
  await writeAll(store, [newRecord(1)]);
  full = true;
  await t.rejects(store.write([newRecord(2)]).durable, { code: 'ENOSPC', message: /ENOSPC/ });
  full = false;
  const again = await open(dir);
  t.equal(await again.get('rec-2', 'user-2'), undefined, 'the failed record is not there');
  t.same(await writeAll(again, [newRecord(2)]), [{ status: 'stored', version: 1 }], 'and can be sent again once there is room');
  await again.close();
});

t.test('a damaged length field is corruption, never a torn tail that would cut acknowledged frames', async (t) => {
  const dir = tempDir(t);
  const store = await open(dir);
  for (let i = 0; i < 3; i++) await writeAll(store, [newRecord(i)]);
  await store.close();
  const segment = join(dir, 'wal', readdirSync(join(dir, 'wal'))[0]!);
  const bytes = readFileSync(segment);
  for (const position of [0, 1, 2, 3]) {
    const damaged = Buffer.from(bytes);
    damaged[position] = damaged[position]! ^ 0x40;
    writeFileSync(segment, damaged);
    const reopened = await open(dir);
    t.equal(reopened.health.state, 'corrupt', `length byte ${position} flipped`);
    t.equal(readFileSync(segment).length, bytes.length, 'the segment is left as it was');
  }
});

t.test('a missing manifest beside sealed files refuses to serve and deletes nothing', async (t) => {
  const dir = tempDir(t);
  const store = await open(dir);
  await writeAll(store, [newRecord(1), newRecord(2)]);
  await store.seal();
  await store.close();
  const files = readdirSync(join(dir, 'partitions'));
  rmSync(join(dir, 'metadata.json'));
  const reopened = await open(dir);
  t.equal(reopened.health.state, 'corrupt');
  t.match(reopened.status(), { reason: /metadata.json is missing/ });
  t.same(readdirSync(join(dir, 'partitions')), files, 'the sealed files are still there');
});

t.test('a damaged manifest refuses to serve instead of failing to start', async (t) => {
  const dir = tempDir(t);
  const store = await open(dir);
  await writeAll(store, [newRecord(1)]);
  await store.seal();
  await store.close();
  writeFileSync(join(dir, 'metadata.json'), '{"format_version": 1, "shard": 3, "sealed_');
  const reopened = await open(dir);
  t.equal(reopened.health.state, 'corrupt');
  t.match(reopened.status(), { reason: /not valid JSON/ });
});

t.test('aggregates read the column index: sealed, updated and unsealed records count once', async (t) => {
  const dir = tempDir(t);
  const store = await open(dir);
  await writeAll(store, Array.from({ length: 30 }, (_, i) => newRecord(i)));
  await store.seal();
  const { durable } = await store.update('rec-3', 'user-3', 1, { output_tokens: 5000 });
  await durable;
  await writeAll(store, [newRecord(100)]);
  const seen = new Map<string, number>();
  let outputTokens = 0;
  store.aggregate({}, (record) => {
    seen.set(`${record.user_id}:${record.input_tokens}`, (seen.get(`${record.user_id}:${record.input_tokens}`) ?? 0) + 1);
    outputTokens += record.output_tokens;
  });
  t.equal([...seen.values()].reduce((a, b) => a + b, 0), 31, 'every current record once');
  const expected = Array.from({ length: 30 }, (_, i) => (i === 3 ? 5000 : newRecord(i).output_tokens)).reduce((a, b) => a + b, 0) + newRecord(100).output_tokens;
  t.equal(outputTokens, expected, 'the updated record counts with its new version only');
  let user3 = 0;
  store.aggregate({ user_id: 'user-3' }, () => void user3++);
  t.equal(user3, Array.from({ length: 30 }, (_, i) => i).filter((i) => i % 7 === 3).length);
  await store.close();
  const again = await open(dir);
  let afterRestart = 0;
  again.aggregate({}, () => void afterRestart++);
  t.equal(afterRestart, 31, 'and after a restart');
  await again.close();
});

t.test('a first seal cut short before its manifest loses nothing and is not taken for corruption', async (t) => {
  const dir = tempDir(t);
  let failManifest = false;
  const fs = faultyFileSystem(nodeFileSystem, (operation, path) => (failManifest && operation === 'rename' && path.endsWith('metadata.json') ? 'EIO' : undefined));
  const store = await open(dir, fs);
  await writeAll(store, [newRecord(1), newRecord(2)]);
  failManifest = true;
  await t.rejects(store.seal(), { code: 'EIO' }, 'the seal fails at its manifest');
  t.ok(readdirSync(join(dir, 'partitions')).length > 0, 'its partition files were written');
  failManifest = false;
  const reopened = await open(dir);
  t.equal(reopened.health.state, 'serving');
  t.same((await collect(reopened)).map((r) => r.id), ['rec-1', 'rec-2'], 'the WAL still had every record');
  t.same(readdirSync(join(dir, 'partitions')), [], 'the unlisted files of the cut seal are gone');
  await reopened.close();
});

t.test('an open that fails after opening its WAL segment closes the segment', async (t) => {
  const dir = tempDir(t);
  const openFds = () => readdirSync('/proc/self/fd').length;
  const before = openFds();
  const fs = faultyFileSystem(nodeFileSystem, (operation, path) => (operation === 'syncDir' && path.endsWith('wal') ? 'EIO' : undefined));
  await t.rejects(open(dir, fs), { code: 'EIO' });
  t.equal(openFds(), before, 'no file descriptor is left to the garbage collector');
});
