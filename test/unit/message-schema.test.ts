// The remote schema of an actor (src/kernel/message-schema.ts) and the
// PartitionActor's (actors/partition-messages.ts): what a body from the
// network must look like, and how a refusal names the actor, type and field.

import t from 'tap';
import { z } from 'zod';
import { partitionMessageSchema } from '../../actors/partition-messages.js';
import { messageSchema } from '../../src/kernel/message-schema.js';

type Message = { type: 'add'; n: number } | { type: 'tick' };
const schema = messageSchema<Message, 'tick'>('CounterActor', { add: z.strictObject({ type: z.literal('add'), n: z.number() }) }, ['tick']);

const refusal = (body: unknown) => {
  try {
    schema.parse(body);
  } catch (error) {
    return error;
  }
  return undefined;
};

t.test('a message type with a schema is checked and returned as parsed', async (t) => {
  t.same(schema.parse({ type: 'add', n: 2 }), { type: 'add', n: 2 });
  t.match(refusal({ type: 'add', n: '2' }), { code: 'E_BAD_REQUEST', field: 'n', message: /^CounterActor message add: n: / });
  t.match(refusal({ type: 'add' }), { code: 'E_BAD_REQUEST', field: 'n', message: /n: is required/ });
  t.match(refusal({ type: 'add', n: 1, m: 2 }), { code: 'E_BAD_REQUEST', field: 'm', message: /unknown field/ });
});

t.test('an unknown type names the field type and the allowed types', async (t) => {
  t.match(refusal({ type: 'explode' }), { code: 'E_BAD_REQUEST', field: 'type', message: /CounterActor: unknown message type "explode"; allowed types: add$/, details: { allowed_types: ['add'] } });
  t.match(refusal({ n: 1 }), { code: 'E_BAD_REQUEST', field: 'type', message: /needs a type/ });
  t.match(refusal({ type: 7 }), { code: 'E_BAD_REQUEST', field: 'type' });
  t.match(refusal({ type: 'toString' }), { code: 'E_BAD_REQUEST', field: 'type' }, 'a name on Object.prototype is no type');
  for (const body of [null, 3, 'add', [1], new Uint8Array(2)]) t.match(refusal(body), { code: 'E_BAD_REQUEST', field: 'type' }, `${JSON.stringify(body)}: not a map`);
  t.ok((refusal({ type: 'x'.repeat(10_000) }) as Error).message.length < 300, 'a huge type is not echoed whole');
});

t.test('a local-only type is refused from the network', async (t) => {
  t.match(refusal({ type: 'tick' }), { code: 'E_BAD_REQUEST', field: 'type', message: /"tick" is local-only/ });
  t.same(schema.localTypes, ['tick']);
  t.same(schema.remoteTypes, ['add']);
});

t.test('prototype keys are refused by name at any depth', async (t) => {
  t.match(refusal(JSON.parse('{"type":"add","n":1,"__proto__":{"x":1}}')), { code: 'E_BAD_REQUEST', field: '__proto__' });
  t.match(refusal({ type: 'add', n: 1, deep: [{ a: JSON.parse('{"constructor":1}') }] }), { code: 'E_BAD_REQUEST', field: 'deep.0.a.constructor' });
});

t.test('PartitionActor: what IngestActor sends is accepted, shapes that crashed it are not', async (t) => {
  const partition = partitionMessageSchema();
  const record = { id: 'r1', ts: Date.now(), user_id: 'u1', provider: 'anthropic', model: 'm', input_tokens: 1, output_tokens: 2, status: 'success', ingested_at: Date.now(), cost_source: 'unknown' };
  t.same(partition.parse({ type: 'write', records: [record] }), { type: 'write', records: [record] });
  const refused = (body: unknown) => {
    try {
      partition.parse(body);
    } catch (error) {
      return error;
    }
    return undefined;
  };
  t.match(refused({ type: 'write', records: null }), { code: 'E_BAD_REQUEST', field: 'records', message: /^PartitionActor message write: records: / });
  t.match(refused({ type: 'write', records: [{ ...record, input_tokens: -1 }] }), { field: 'records.0.input_tokens' });
  t.match(refused({ type: 'write', records: [{ ...record, cost_source: 'guess' }] }), { field: 'records.0.cost_source' });
  t.match(refused({ type: 'write', records: Array.from({ length: 1001 }, () => record) }), { field: 'records', message: /at most 1000/ });
  t.match(refused({ type: 'update', id: 'r1', user_id: 'u1', expected_version: 1, patch: {} }), { field: 'patch' });
  t.match(refused({ type: 'update', id: 'r1', user_id: 'u1', expected_version: 1, patch: { id: 'other' } }), { field: 'patch.id' });
  t.match(refused({ type: 'wal_since', from: { segment: '../../etc/passwd', offset: 0 } }), { field: 'from.segment' });
  t.match(refused({ type: 'migrate_storage', to: 99 }), { field: 'to' });
  t.match(refused({ type: 'migration_finish', outcome: 'maybe' }), { field: 'outcome' });
  t.match(refused({ type: 'tick' }), { field: 'type', message: /local-only/ });
  t.same(partition.parse({ type: 'migrate_storage', to: 2 }), { type: 'migrate_storage', to: 2 });
});
