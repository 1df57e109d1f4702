// The Chroma mirror's sink against a real Chroma server (test/helpers/chroma.ts):
// the collections hold exactly the records applied, with their metadata,
// version and feature vector; a replay changes nothing; checkpoints live in
// Chroma; a newer version replaces an older one and never the reverse; an
// unknown cost is left out, never $0; an unreachable or silent server is a
// clear error naming it; and a server killed with SIGKILL and restarted
// still has the data and checkpoints. Each test has a collection prefix of
// its own.

import { createServer, type Socket } from 'node:net';
import t, { type Test } from 'tap';
import { ChromaClient, type Metadata } from 'chromadb';
import type { StoredRecord } from '../../protocols/record.js';
import { CHECKPOINT_COLLECTION, chromaId, chromaMetadata, ChromaSink, ChromaSinkError, RECORD_COLLECTIONS, type ChromaSinkOptions } from '../../src/sync/chroma-sink.js';
import { featuresOf, featuresOfDescription } from '../../src/sync/features.js';
import { startChroma, type ChromaServer } from '../helpers/chroma.js';
import { uniqueName } from '../helpers/node.js';
import { newRecord } from '../helpers/records.js';
import { within } from '../helpers/wait.js';

const server = await startChroma();
t.teardown(() => server.stop());

function stored(shard: number, n: number, overrides: Partial<StoredRecord> = {}): StoredRecord {
  const base = newRecord(n);
  return { ...base, id: `rec-${shard}-${n}`, version: 1, shard, seq: n + 1, updated_at: base.ingested_at, vv: { 'node-t': 1 }, ...overrides } as StoredRecord;
}

function batch(shard: number, from: number, count: number): StoredRecord[] {
  return Array.from({ length: count }, (_, i) => stored(shard, from + i));
}

/** A connected sink under a prefix of its own, whose collections are dropped at the end of the test. */
async function connectedSink(t: Test, on: ChromaServer = server, options: Partial<ChromaSinkOptions> = {}): Promise<ChromaSink> {
  const collectionPrefix = `${uniqueName('t')}_`;
  const sink = new ChromaSink({ url: on.url, collectionPrefix, requestTimeoutMs: 10_000, ...options });
  t.teardown(async () => {
    await sink.close();
    if (!on.controlled || (await reachable(on.url))) await dropCollections(on.url, collectionPrefix);
  });
  await sink.connect();
  return sink;
}

function clientOf(url: string): ChromaClient {
  const { hostname, port } = new URL(url);
  return new ChromaClient({ host: hostname, port: Number(port) });
}

async function reachable(url: string): Promise<boolean> {
  return fetch(`${url}/api/v2/heartbeat`).then((response) => response.ok, () => false);
}

async function dropCollections(url: string, prefix: string): Promise<void> {
  const client = clientOf(url);
  for (const name of [...RECORD_COLLECTIONS.map((spec) => spec.name), CHECKPOINT_COLLECTION]) {
    await client.deleteCollection({ name: `${prefix}${name}` }).catch(() => undefined);
  }
}

interface Item {
  metadata: Metadata;
  embedding: number[];
}

/** Every item of a collection, by id, read with a client of its own. */
async function itemsOf(url: string, name: string): Promise<Map<string, Item>> {
  const collection = await clientOf(url).getCollection({ name });
  const result = await collection.get({ include: ['metadatas', 'embeddings'] });
  return new Map(result.ids.map((id, i) => [id, { metadata: result.metadatas[i] ?? {}, embedding: result.embeddings[i] ?? [] }]));
}

/** Chroma stores float32: vectors compare to about 1e-6. */
function sameVector(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((value, i) => Math.abs(value - b[i]!) < 1e-6);
}

/** Asserts that every record collection holds exactly `records`, with their metadata and vectors. */
async function assertHolds(t: Test, sink: ChromaSink, records: readonly StoredRecord[], url = server.url): Promise<void> {
  for (const spec of RECORD_COLLECTIONS) {
    const items = await itemsOf(url, sink.collectionName(spec.name));
    t.equal(items.size, records.length, `${spec.name} holds ${records.length} items`);
    t.same([...items.keys()].sort(), records.map((record) => chromaId(record.shard, record.id)).sort(), `${spec.name} holds exactly the records' ids`);
    let mismatches = 0;
    for (const record of records) {
      const item = items.get(chromaId(record.shard, record.id));
      const same = item !== undefined && sameVector(item.embedding, featuresOf(record)) && JSON.stringify(sortKeys(item.metadata)) === JSON.stringify(sortKeys(chromaMetadata(record)));
      if (!same && mismatches++ < 3) t.fail(`${spec.name} ${record.id} differs: ${JSON.stringify(item?.metadata)} for ${JSON.stringify(record)}`);
    }
    t.equal(mismatches, 0, `every item of ${spec.name} has its record's metadata and vector`);
  }
}

function sortKeys(metadata: Metadata): Metadata {
  return Object.fromEntries(Object.entries(metadata).sort(([a], [b]) => a.localeCompare(b)));
}

t.test('batches of several shards land exactly, replays change nothing, checkpoints are kept in Chroma', async (t) => {
  const sink = await connectedSink(t);
  t.same(await sink.checkpoints(), new Map(), 'a fresh mirror has no checkpoints');
  const batches = [0, 1, 2].flatMap((shard) => [
    { shard, records: batch(shard, 0, 30), nextSeq: 30 },
    { shard, records: batch(shard, 30, 25), nextSeq: 55 },
  ]);
  for (const { shard, records, nextSeq } of batches) await sink.apply(shard, records, nextSeq);
  const all = batches.flatMap((b) => b.records);
  await assertHolds(t, sink, all);
  t.same(await sink.checkpoints(), new Map([[0, 55], [1, 55], [2, 55]]));

  const one = (await itemsOf(server.url, sink.collectionName('usage_patterns'))).get('1:rec-1-12')!.metadata;
  const source = stored(1, 12);
  t.same(sortKeys(one), sortKeys({
    user_id: source.user_id, provider: source.provider, model: source.model, ts: source.ts, day: new Date(source.ts).toISOString().slice(0, 10),
    input_tokens: source.input_tokens, output_tokens: source.output_tokens, cost_usd: source.cost_usd!, cost_source: 'client',
    latency_ms: source.latency_ms!, status: 'success', version: 1, seq: 13, shard: 1,
  }), 'the metadata of one record, field by field');

  const collections = await clientOf(server.url).listCollections({ limit: 1000 });
  for (const spec of RECORD_COLLECTIONS) {
    const found = collections.find((collection) => collection.name === sink.collectionName(spec.name));
    t.equal(found?.metadata?.retention_days, spec.retentionDays, `${spec.name} keeps ${spec.retentionDays} days`);
  }

  for (const { shard, records, nextSeq } of batches) await sink.apply(shard, records, nextSeq);
  await assertHolds(t, sink, all);
  t.same(await sink.checkpoints(), new Map([[0, 55], [1, 55], [2, 55]]), 'a replay leaves the checkpoints where they were');

  await sink.setCheckpoint(2, 10);
  t.same(await sink.checkpoints(), new Map([[0, 55], [1, 55], [2, 10]]), 'a resync moves one shard back');
  await sink.close();
  const again = new ChromaSink({ url: server.url, collectionPrefix: sink.collectionName('') });
  await again.connect();
  t.teardown(() => again.close());
  t.same(await again.checkpoints(), new Map([[0, 55], [1, 55], [2, 10]]), 'a new connection reads the checkpoints from Chroma');
});

t.test('a batch larger than one request is split', async (t) => {
  const sink = await connectedSink(t, server, { requestRecordsMax: 7 });
  const records = batch(3, 0, 50);
  await sink.apply(3, records, 50);
  await assertHolds(t, sink, records);
  t.same(await sink.checkpoints(), new Map([[3, 50]]));
});

t.test('a newer version replaces the older one, metadata and vector; an older one never replaces a newer', async (t) => {
  const sink = await connectedSink(t);
  const first = stored(0, 1, { cost_usd: 0.02, latency_ms: 500, operation: 'npc_dialogue' });
  const others = batch(0, 2, 5);
  await sink.apply(0, [first, ...others], 7);
  const { cost_usd: _cost, latency_ms: _latency, operation: _operation, ...rest } = first;
  const second: StoredRecord = { ...rest, version: 2, seq: 8, status: 'error', error_code: 'overloaded', output_tokens: 0, cost_source: 'unknown' };
  await sink.apply(0, [second], 8);
  await assertHolds(t, sink, [second, ...others]);
  const metadata = (await itemsOf(server.url, sink.collectionName('cost_optimization'))).get(chromaId(0, first.id))!.metadata;
  t.equal(metadata.version, 2);
  t.equal(metadata.status, 'error');
  t.notOk('cost_usd' in metadata, 'the cost that became unknown is gone, not kept from version 1');
  t.notOk('latency_ms' in metadata, 'so is the latency that version 2 does not have');

  await sink.apply(0, [first], 8);
  await assertHolds(t, sink, [second, ...others]);
  t.pass('replaying version 1 left version 2 in place');
});

t.test('an unknown cost is left out of the metadata, never $0', async (t) => {
  const sink = await connectedSink(t);
  const { cost_usd: _cost, ...unpriced } = stored(4, 1);
  const unknown: StoredRecord = { ...unpriced, cost_source: 'unknown' };
  const free = stored(4, 2, { provider: 'ollama', model: 'llama3.1:8b', cost_usd: 0, cost_source: 'price_table' });
  const paid = stored(4, 3, { cost_usd: 0.5 });
  await sink.apply(4, [unknown, free, paid], 3);
  await assertHolds(t, sink, [unknown, free, paid]);
  const items = await itemsOf(server.url, sink.collectionName('usage_patterns'));
  const unknownMeta = items.get(chromaId(4, unknown.id))!.metadata;
  t.notOk('cost_usd' in unknownMeta);
  t.equal(unknownMeta.cost_source, 'unknown');
  t.equal(items.get(chromaId(4, free.id))!.metadata.cost_usd, 0, 'a known $0 cost is kept');

  const collection = await clientOf(server.url).getCollection({ name: sink.collectionName('usage_patterns') });
  const priced = await collection.get({ where: { cost_usd: { $gte: 0 } } });
  t.same(priced.ids.sort(), [chromaId(4, free.id), chromaId(4, paid.id)].sort(), 'a cost filter leaves the unknown cost out rather than counting it as $0');

  const nearest = await collection.query({ queryEmbeddings: [featuresOfDescription({ provider: 'ollama', model: 'llama3.1:8b' })], nResults: 1 });
  t.same(nearest.ids[0], [chromaId(4, free.id)], 'a similarity query with our own vector finds the call it describes');
});

t.test('an unreachable or silent server is a clear error naming it; bad options are refused at construction', async (t) => {
  const port = await closedPort();
  const url = `http://127.0.0.1:${port}`;
  const sink = new ChromaSink({ url, collectionPrefix: 'never_' });
  await t.rejects(sink.connect(), { name: 'ChromaSinkError', message: new RegExp(`Chroma at ${url} is unreachable`) });
  await t.rejects(sink.checkpoints(), { message: /not connected/ }, 'a sink that never connected says so');

  const silent = await silentServer();
  t.teardown(() => silent.close());
  const hung = new ChromaSink({ url: silent.url, collectionPrefix: 'never_', requestTimeoutMs: 300 });
  // A connect with no timeout of its own would hang on this server: the wait fails naming it.
  await t.rejects(within('connect to a silent Chroma to give up', hung.connect()), {
    name: 'ChromaSinkError',
    message: new RegExp(`Chroma at ${silent.url} did not answer a heartbeat within 300 ms`),
  }, 'the request timeout ends the wait with an error naming the server');

  t.throws(() => new ChromaSink({ url: 'localhost:8000', collectionPrefix: '' }), ChromaSinkError);
  t.throws(() => new ChromaSink({ url: 'http://127.0.0.1:8000/chroma', collectionPrefix: '' }), { message: /no path/ });
  t.throws(() => new ChromaSink({ url: 'http://127.0.0.1:8000', collectionPrefix: 'bad prefix' }), { message: /collectionPrefix/ });
  t.throws(() => new ChromaSink({ url: 'http://127.0.0.1:8000', collectionPrefix: '', requestRecordsMax: 0 }), { message: /requestRecordsMax/ });
});

t.test('a Chroma server killed with SIGKILL and restarted still has the data and checkpoints', async (t) => {
  const own = await startChroma({ own: true });
  t.teardown(() => own.stop());
  const sink = await connectedSink(t, own);
  const records = [...batch(0, 0, 40), ...batch(1, 0, 40)];
  await sink.apply(0, records.slice(0, 40), 40);
  await sink.apply(1, records.slice(40), 40);

  await own.kill();
  await t.rejects(sink.apply(0, batch(0, 40, 5), 45), { name: 'ChromaSinkError', message: new RegExp(`Chroma at ${own.url} is unreachable`) }, 'while it is down, apply fails clearly');
  await own.restart();
  await sink.connect();
  await assertHolds(t, sink, records, own.url);
  t.same(await sink.checkpoints(), new Map([[0, 40], [1, 40]]), 'the checkpoints survived, so nothing acknowledged is lost');

  const more = batch(0, 40, 5);
  await sink.apply(0, more, 45);
  await assertHolds(t, sink, [...records, ...more], own.url);
  t.same(await sink.checkpoints(), new Map([[0, 45], [1, 40]]));
});

/** A port nothing listens on (bound, then released). */
function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** A server that accepts connections and never answers: a hung Chroma. */
async function silentServer(): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const silent = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const address = silent.address();
  if (typeof address !== 'object' || address === null) throw new Error('no address');
  return {
    url: `http://127.0.0.1:${address.port}`,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => silent.close(() => resolve()));
    },
  };
}
