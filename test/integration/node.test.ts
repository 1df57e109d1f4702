// A live node on real NATS: the tree over admin.status, both encodings,
// service discovery, the error model over the wire, orderly shutdown.

import t from 'tap';
import { decode, encode } from '../../protocols/codec.js';
import { ERROR_CODES, ProtocolError } from '../../protocols/errors.js';
import { DEFAULT_LIMITS } from '../../protocols/limits.js';
import { Gateway, type EndpointHandlers } from '../../actors/gateway.js';
import { silentLogger } from '../../src/log.js';
import { startTestNode, uniqueName } from '../helpers/node.js';
import { WAIT_DEADLINE_MS, waitFor } from '../helpers/wait.js';

const record = (overrides: Record<string, unknown> = {}) => ({
  id: 'rec-1',
  ts: Date.now() - 1000,
  user_id: 'user-1',
  provider: 'anthropic',
  model: 'claude-sonnet-4',
  input_tokens: 1200,
  output_tokens: 340,
  ...overrides,
});

t.test('a node answers admin.status over NATS with its supervision tree', async (t) => {
  const tn = await startTestNode();
  t.teardown(() => tn.stop());
  const { body, headers } = await tn.callRaw('admin.status', encode({}));
  t.equal(body.ok, true);
  t.equal(headers?.['Usage-Protocol'], '1', 'reply carries the protocol version');
  t.equal(body.node_id, tn.config.node.id);
  t.equal(body.protocol, 1);
  t.equal(body.transport.nats, 'connected');
  t.same(
    body.tree.children.map((child: { path: string }) => child.path),
    ['shards', 'ingest', 'sync', 'maintenance', 'api'].map((id) => `${tn.config.node.id}/${id}`),
    'children in start order',
  );
  t.ok(body.tree.children.every((child: { state: string }) => child.state === 'running'));

  const json = await tn.call('admin.status', {}, { json: true });
  t.equal(json.node_id, tn.config.node.id, 'JSON request gets a JSON reply');

  const perNode = await tn.client.request(tn.subjects.nodeEndpoint(tn.config.node.id, 'admin.status'), new Uint8Array(), { timeoutMs: WAIT_DEADLINE_MS });
  t.equal((decode(perNode.data) as { node_id: string }).node_id, tn.config.node.id, 'the per-node subject answers with an empty body');
});

t.test('the node is discoverable through the NATS services framework', async (t) => {
  const tn = await startTestNode();
  t.teardown(() => tn.stop());
  const inbox = `_INBOX.${uniqueName('srv')}`;
  const infos: any[] = [];
  const sub = tn.client.subscribe(inbox, (msg) => void infos.push(JSON.parse(new TextDecoder().decode(msg.data))));
  tn.client.connection.publish('$SRV.INFO.usage-tracker', new Uint8Array(), { reply: inbox });
  // Other nodes on this server answer too; wait for this node's answer.
  const mine = await waitFor(`a $SRV.INFO answer from node ${tn.config.node.id}`, () => infos.find((info) => info.metadata?.node_id === tn.config.node.id), {
    describe: () => infos.map((info) => info.metadata?.node_id),
  });
  sub.unsubscribe();
  t.ok(mine, '$SRV.INFO lists this node');
  t.equal(mine.name, 'usage-tracker');
  const subjectsListed = mine.endpoints.map((endpoint: { subject: string }) => endpoint.subject);
  for (const name of ['ingest', 'record.get', 'record.update', 'query.records', 'query.aggregate', 'admin.status'] as const) {
    t.ok(subjectsListed.includes(tn.subjects.endpoint(name)), `endpoint ${name} is listed`);
  }

  const ping = await tn.client.request(`$SRV.PING.usage-tracker.${mine.id}`, new Uint8Array(), { timeoutMs: WAIT_DEADLINE_MS });
  t.equal(JSON.parse(new TextDecoder().decode(ping.data)).type, 'io.nats.micro.v1.ping_response');

  await tn.call('admin.status', {});
  const stats = await tn.client.request(`$SRV.STATS.usage-tracker.${mine.id}`, new Uint8Array(), { timeoutMs: WAIT_DEADLINE_MS });
  const statusEndpoint = JSON.parse(new TextDecoder().decode(stats.data)).endpoints.find((e: { subject: string }) => e.subject === tn.subjects.endpoint('admin.status'));
  t.ok(statusEndpoint.num_requests >= 1, '$SRV.STATS counts requests');
});

t.test('the error model over the wire', async (t) => {
  const tn = await startTestNode('limits:\n  payload_bytes_max: 65536\n  batch_records_max: 10\n');
  t.teardown(() => tn.stop());

  const garbage = await tn.callRaw('ingest', new Uint8Array([0xc1, 0xff, 0x00]));
  t.equal(garbage.body.error.code, 'E_BAD_REQUEST', 'undecodable msgpack');
  const badJson = await tn.callRaw('ingest', new TextEncoder().encode('{"id": '), { 'Content-Type': 'application/json' });
  t.equal(badJson.body.error.code, 'E_BAD_REQUEST', 'undecodable JSON');
  t.equal(badJson.headers?.['Content-Type'], 'application/json', 'the error comes back as JSON too');
  const version = await tn.callRaw('admin.status', encode({}), { 'Usage-Protocol': '2' });
  t.equal(version.body.error.code, 'E_BAD_REQUEST', 'unsupported protocol version');
  t.match(version.body.error.message, /protocol version/);

  const big = await tn.callRaw('ingest', new Uint8Array(70_000));
  t.equal(big.body.error.code, 'E_TOO_LARGE', 'body over payload_bytes_max');
  t.equal(big.body.error.limit_bytes, 65536);
  const batch = await tn.call('ingest', { records: Array.from({ length: 11 }, (_, i) => record({ id: `r${i}` })) });
  t.equal(batch.error.code, 'E_TOO_LARGE', 'batch over batch_records_max');

  const status = await tn.call('admin.status', { verbose: true });
  t.equal(status.error.code, 'E_VALIDATION');
  t.equal(status.error.field, 'verbose', 'an unknown field is named');
  const get = await tn.call('record.get', { id: 'x' });
  t.same([get.error.code, get.error.field], ['E_VALIDATION', 'user_id']);
  const update = await tn.call('record.update', { id: 'x', user_id: 'u', expected_version: 1, patch: { user_id: 'v' } });
  t.same([update.error.code, update.error.field], ['E_VALIDATION', 'patch.user_id'], 'identity fields cannot be patched');
  const query = await tn.call('query.aggregate', { group_by: ['week'] });
  t.same([query.error.code, query.error.field], ['E_VALIDATION', 'group_by.0']);

  const mixed = await tn.call('ingest', { records: [record(), record({ id: 'bad', input_tokens: -5 }), { nonsense: true }] });
  t.equal(mixed.ok, true, 'a batch with bad records is processed');
  t.same(
    mixed.results.map((r: any) => [r.index, r.status, r.error?.code, r.error?.field]),
    [
      [0, 'stored', undefined, undefined],
      [1, 'rejected', 'E_VALIDATION', 'input_tokens'],
      [2, 'rejected', 'E_VALIDATION', 'id'],
    ],
    'the good record is stored; each bad one is named by index and field',
  );
  t.equal(mixed.results[1].id, 'bad');
  const stored = await tn.call('record.get', { id: 'rec-1', user_id: 'user-1' });
  t.equal(stored.record.input_tokens, 1200, 'the good one can be read back');
  t.equal((await tn.call('record.get', { id: 'bad', user_id: 'user-1' })).error.code, 'E_NOT_FOUND', 'the bad one was not stored');
});

t.test('every error code reaches the client intact', async (t) => {
  const tn = await startTestNode();
  t.teardown(() => tn.stop());
  for (const code of ERROR_CODES) {
    const throwing = () => {
      throw new ProtocolError(code, `made to fail with ${code}`, { field: 'f', details: { current_version: 3 } });
    };
    const handlers = Object.fromEntries(
      ['ingest', 'record.get', 'record.update', 'query.records', 'query.aggregate', 'admin.status'].map((name) => [name, throwing]),
    ) as unknown as EndpointHandlers;
    const gateway = new Gateway(handlers, DEFAULT_LIMITS, silentLogger);
    const subject = uniqueName('codes.');
    const sub = tn.client.subscribe(subject, async (msg) => { await gateway.handle('record.update', msg); });
    const reply = decode((await tn.client.request(subject, encode({}), { timeoutMs: WAIT_DEADLINE_MS })).data) as any;
    sub.unsubscribe();
    t.same(reply, { ok: false, error: { code, message: `made to fail with ${code}`, field: 'f', current_version: 3 } }, code);
  }
  const crashing = new Gateway({ 'admin.status': () => { throw new TypeError('secret internals'); } } as unknown as EndpointHandlers, DEFAULT_LIMITS, silentLogger);
  const subject = uniqueName('codes.');
  const sub = tn.client.subscribe(subject, async (msg) => { await crashing.handle('admin.status', msg); });
  const reply = decode((await tn.client.request(subject, encode({}), { timeoutMs: WAIT_DEADLINE_MS })).data) as any;
  sub.unsubscribe();
  t.same(reply, { ok: false, error: { code: 'E_INTERNAL', message: 'internal error' } }, 'an unexpected failure is E_INTERNAL and leaks nothing');
});

t.test('stopping a node stops its endpoints before anything else', async (t) => {
  const tn = await startTestNode();
  const client = tn.client;
  await tn.node.stop();
  const status = tn.node.status();
  t.same(
    status.tree.children?.map((child) => child.state),
    ['stopped', 'stopped', 'stopped', 'stopped', 'stopped'],
  );
  await t.rejects(client.request(tn.subjects.endpoint('admin.status'), encode({}), { timeoutMs: WAIT_DEADLINE_MS }), { code: 'E_UNAVAILABLE' }, 'no responders after stop');
  await client.drain();
});
