// The cases of the actor-subject fuzz (actor-subject.fuzz.test.ts): seeded,
// malformed messages for a node's internal actor subject, each with the
// answer the protocol promises for it (protocols/README.md §2, Internal).
// Every case is wrong in at least one way the node must notice: a body
// broken in exactly one place (a wrong-typed, missing or unknown field, a
// prototype key, a hostile value of the right type) for every message type
// of every actor that takes messages from the network; a type that is
// missing, unknown or local-only; a body that is no map, nests deep or
// holds a huge list; an envelope that is random bytes, truncated, or has a
// wrong field; a path whose actor takes nothing from the network, where no
// actor runs, or on another node. None of them is a valid message, so
// whatever reaches an actor is a bug the run reports.

import { Packr } from 'msgpackr';
import { encodeInternal } from '../../protocols/codec.js';
import { STORAGE_FORMATS_READ } from '../../src/storage/manifest.js';
import { shardOf } from '../../src/storage/node-meta.js';

/** What a node answers a case sent as an ask: the error code, and the field when the case knows it. */
export interface Expected {
  code: 'E_BAD_REQUEST' | 'E_UNAVAILABLE' | 'E_NOT_FOUND';
  field?: string | RegExp;
}

export interface ActorCase {
  kind: string;
  /** The envelope's bytes, as published to the actor subject. */
  data: Uint8Array;
  expected: Expected;
}

/** The node under fuzz: its id, shard count, the actors it runs and its retention directories. */
export interface FuzzTarget {
  nodeId: string;
  shards: number;
  /** Actor paths that take nothing from the network (every running actor but the PartitionActors). */
  closedActors: string[];
  archiveDir: string;
  exportDir: string;
}

// Raw bytes for cases encodeInternal would normalise, and for cutting envelopes short.
const packr = new Packr({ useRecords: false, variableMapSize: true });
const DAY_MS = 86_400_000;
const LETTERS = [...'abcdefghijklmnopqrstuvwxyz0123456789'];

type Body = Record<string, unknown>;
type Shape = 'text' | 'int' | 'bool' | 'list' | 'map' | 'enum';
/** A field of a message: its dotted path, its shape, and whether it may be left out. */
type Field = [path: string, shape: Shape, optional?: 'optional'];

const omit = (body: Body, key: string): Body => Object.fromEntries(Object.entries(body).filter(([name]) => name !== key));

/** Values no field of the shape accepts. */
const WRONG: Record<Shape, readonly unknown[]> = {
  text: [null, 7, true, [], {}, ''],
  int: [null, '1', true, [], {}, -1, 1.5, Number.NaN, Infinity],
  bool: [null, 'true', 1, [], {}],
  list: [null, 'x', 7, true, {}],
  map: [null, 'x', 7, true, []],
  enum: [null, 'maybe', 1, ''],
};

/** Cases drawn from `random`; each is an envelope of the kind asked for (an ask, answered; or a tell, never answered). */
export function caseGenerator(random: () => number, target: FuzzTarget): (how: 'ask' | 'tell') => ActorCase {
  const int = (n: number) => Math.floor(random() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
  const word = (length: number) => Array.from({ length }, () => pick(LETTERS)).join('');
  const partition = (shard: number) => `${target.nodeId}/shards/partition-${shard}`;
  const userOf = (shard: number) => {
    for (let i = int(1000); ; i++) if (shardOf(`fuzz-user-${i}`, target.shards) === shard) return `fuzz-user-${i}`;
  };
  const now = () => Date.now();
  const record = (shard: number): Body => ({
    id: `fz-${word(8)}`,
    ts: now() - int(DAY_MS),
    user_id: userOf(shard),
    provider: 'anthropic',
    model: 'claude-sonnet-4',
    input_tokens: int(1000),
    output_tokens: int(1000),
    status: 'success',
    ingested_at: now(),
    cost_source: 'unknown',
  });
  const policy = () => ({ name: `p${word(4)}`, category: 'raw_usage', type: 'time', action: pick(['delete', 'archive', 'aggregate']), max_age_days: 1 + int(3000) });
  const retentionInput = (): Body => ({
    run_id: `fuzz-${word(6)}`,
    now: now(),
    dry_run: random() < 0.5,
    policies: [policy()],
    holds: [],
    aggregated_metrics_days: 365,
    archive_dir: target.archiveDir,
    export_dir: target.exportDir,
  });

  /** Each PartitionActor message type: a valid body, its fields' shapes, and values of the right type the shard must still refuse. */
  const types: Record<string, { valid: (shard: number) => Body; fields: Field[]; hostile: (shard: number) => [Body, string | RegExp][] }> = {
    write: {
      valid: (shard) => ({ records: [record(shard)] }),
      fields: [['records', 'list']],
      hostile: (shard) => [
        [{ records: null }, 'records'],
        [{ records: [] }, 'records'],
        [{ records: Array.from({ length: 1001 + int(20_000) }, () => int(100)) }, 'records'],
        [{ records: [null] }, 'records.0'],
        [{ records: [record(shard), { ...record(shard), user_id: userOf((shard + 1 + int(target.shards - 1)) % target.shards) }] }, 'records.1.user_id'],
        [{ records: [{ ...record(shard), input_tokens: pick([-1, 1.5, '12', 1e12]) }] }, 'records.0.input_tokens'],
        [{ records: [omit(record(shard), 'id')] }, 'records.0.id'],
        [{ records: [{ ...record(shard), cost_source: 'guess' }] }, 'records.0.cost_source'],
        [{ records: [omit(record(shard), 'ingested_at')] }, 'records.0.ingested_at'],
        [{ records: [{ ...record(shard), model: `ok${pick(['\u0000', '\u202e', '\u001b[31m'])}ok` }] }, 'records.0.model'],
        [{ records: [{ ...record(shard), [`x_${word(5)}`]: 1 }] }, /^records\.0/],
      ],
    },
    get: { valid: (shard) => ({ id: 'r1', user_id: userOf(shard) }), fields: [['id', 'text'], ['user_id', 'text']], hostile: () => [[{ id: 'x'.repeat(1000), user_id: 'u' }, 'id']] },
    update: {
      valid: (shard) => ({ id: 'r1', user_id: userOf(shard), expected_version: 1, patch: { input_tokens: int(1000) } }),
      fields: [['id', 'text'], ['user_id', 'text'], ['expected_version', 'int'], ['patch', 'map']],
      hostile: (shard) => [
        [{ id: 'r1', user_id: userOf(shard), expected_version: 0, patch: { output_tokens: 1 } }, 'expected_version'],
        [{ id: 'r1', user_id: userOf(shard), expected_version: 1, patch: {} }, 'patch'],
        [{ id: 'r1', user_id: userOf(shard), expected_version: 1, patch: { id: 'other' } }, /^patch/],
      ],
    },
    aggregate: {
      valid: () => ({ query: { group_by: [], metrics: ['count'] } }),
      fields: [['query', 'map']],
      hostile: () => [
        [{ query: { group_by: ['nope'], metrics: ['count'] } }, 'query.group_by.0'],
        [{ query: { metrics: [] } }, 'query.metrics'],
      ],
    },
    records: {
      valid: () => ({ query: { limit: 10 } }),
      fields: [['query', 'map']],
      hostile: () => [
        [{ query: { limit: 0 } }, 'query.limit'],
        [{ query: { limit: 5000 } }, 'query.limit'],
        [{ query: { limit: 10, cursor: Buffer.from(word(12)).toString('base64url') } }, 'query.cursor'],
      ],
    },
    changes: {
      valid: () => ({ from_seq: 0, limit: 10 }),
      fields: [['from_seq', 'int'], ['limit', 'int']],
      hostile: () => [[{ from_seq: 0, limit: pick([0, 1e6]) }, 'limit']],
    },
    digest: { valid: () => ({}), fields: [], hostile: () => [] },
    snapshot: { valid: () => ({}), fields: [], hostile: () => [] },
    seal: { valid: () => ({}), fields: [], hostile: () => [] },
    status: { valid: () => ({}), fields: [], hostile: () => [] },
    wal_since: {
      valid: () => ({ from: { segment: '0000000000000001.log', offset: 0 } }),
      fields: [['from', 'map', 'optional']],
      hostile: () => [
        [{ from: { segment: pick(['../../etc/passwd', 'wal.log', '1.log']), offset: 0 } }, 'from.segment'],
        [{ from: { segment: '0000000000000001.log', offset: -1 } }, 'from.offset'],
      ],
    },
    wal_archived: { valid: () => ({ through_seq: 0 }), fields: [['through_seq', 'int']], hostile: () => [] },
    bucket_records: {
      valid: () => ({ day: '2026-01-01', buckets: [1] }),
      fields: [['day', 'text'], ['buckets', 'list']],
      hostile: () => [
        [{ day: pick(['2024-02-30', '2024-13-01', '2023-02-29', 'yesterday']), buckets: [1] }, 'day'],
        [{ day: '2026-01-01', buckets: [256] }, 'buckets.0'],
        [{ day: '2026-01-01', buckets: Array.from({ length: 257 + int(50_000) }, () => 1) }, 'buckets'],
      ],
    },
    retention: {
      valid: () => ({ input: retentionInput() }),
      fields: [['input', 'map'], ['input.run_id', 'text'], ['input.now', 'int'], ['input.dry_run', 'bool'], ['input.policies', 'list'], ['input.holds', 'list'], ['input.aggregated_metrics_days', 'int'], ['input.archive_dir', 'text'], ['input.export_dir', 'text']],
      hostile: () => {
        const input = (fields: Body) => ({ input: { ...retentionInput(), ...fields } });
        const twice = policy();
        return [
          [input({ archive_dir: pick(['/proc/usage-tracker', '/tmp', `${target.archiveDir}/..`, 'archive']) }), 'input.archive_dir'],
          [input({ export_dir: pick(['/proc/self', '/', `${target.exportDir}/../..`]) }), 'input.export_dir'],
          [input({ run_id: pick(['../../escape', 'a/b', '.', 'x'.repeat(129)]) }), 'input.run_id'],
          [input({ now: now() + (2 + int(400)) * DAY_MS }), 'input.now'],
          [input({ policies: [twice, { ...twice, action: 'delete' }] }), 'input.policies.1'],
          [input({ policies: [{ ...policy(), action: 'shred' }] }), 'input.policies.0.action'],
          [input({ policies: Array.from({ length: 65 + int(100) }, policy) }), 'input.policies'],
          [input({ holds: Array.from({ length: 10_001 }, () => ({})) }), 'input.holds'],
          [input({ [`x_${word(4)}`]: true }), /^input\.x_/],
        ];
      },
    },
    migrate_storage: {
      valid: () => ({ to: 2 }),
      fields: [['to', 'int']],
      hostile: () => [
        [{ to: pick([0, -3, 2.5, Math.max(...STORAGE_FORMATS_READ) + 1]) }, 'to'],
        [{ to: 2, file_delay_ms: int(1e9) }, 'file_delay_ms'],
      ],
    },
    migration_finish: { valid: () => ({ outcome: 'commit' }), fields: [['outcome', 'enum']], hostile: () => [] },
  };
  const typeNames = Object.keys(types);

  /** Sets (value !== undefined) or deletes the dotted `field` of `body`. */
  const put = (body: Body, field: string, value: unknown) => {
    const keys = field.split('.');
    let at: Body = body;
    for (const key of keys.slice(0, -1)) at = at[key] as Body;
    if (value === undefined) delete at[keys.at(-1)!];
    else at[keys.at(-1)!] = value;
  };

  /** A PartitionActor body broken in one known place, and the field the refusal names. */
  const brokenBody = (shard: number): { kind: string; body: unknown; field: string | RegExp } => {
    const type = pick(typeNames);
    const spec = types[type]!;
    const body: Body = { type, ...spec.valid(shard) };
    const roll = int(6);
    if (roll === 0 && spec.fields.length > 0) {
      const [field, shape] = pick(spec.fields);
      put(body, field, pick(WRONG[shape]));
      return { kind: `${type}: ${field} of the wrong type`, body, field };
    }
    const required = spec.fields.filter(([, , optional]) => optional === undefined);
    if (roll === 1 && required.length > 0) {
      const [field] = pick(required);
      put(body, field, undefined);
      return { kind: `${type}: ${field} missing`, body, field };
    }
    if (roll === 2) {
      const field = `x_${word(1 + int(8))}`;
      body[field] = pick([1, 'x', null, [1], { a: 1 }]);
      return { kind: `${type}: unknown field`, body, field };
    }
    if (roll === 3) {
      // `__proto__` arrives as `__proto_` (msgpackr's guard), an unknown field of a strict map; the other two arrive as they are, at any depth.
      const key = pick(['__proto__', 'constructor', 'prototype']);
      if (key === '__proto__') return { kind: `${type}: __proto__ key`, body: JSON.parse(`{"__proto__":{"polluted":true},${JSON.stringify(body).slice(1)}`), field: /^__proto__?$/ };
      const hidden = JSON.parse(`{${JSON.stringify(key)}:{"polluted":true}}`);
      if (type === 'write') return { kind: `write: ${key} key deep in a record`, body: { type, records: [{ ...record(shard), metadata: { a: hidden } }] }, field: `records.0.metadata.a.${key}` };
      return { kind: `${type}: ${key} key`, body: { ...body, nested: [hidden] }, field: `nested.0.${key}` };
    }
    const hostile = spec.hostile(shard);
    if (roll === 4 && hostile.length > 0) {
      const [fields, field] = pick(hostile);
      return { kind: `${type}: hostile ${typeof field === 'string' ? field : String(field)}`, body: { type, ...fields }, field };
    }
    // The type itself is what is wrong.
    const wrong = pick([
      () => ({ kind: 'no type', body: spec.valid(shard) }),
      () => ({ kind: 'an unknown type', body: { type: pick(['explode', 'drop', 'toString', word(1 + int(20)), 'x'.repeat(5000)]) } }),
      () => ({ kind: 'the local-only type tick', body: { type: 'tick' } }),
      () => ({ kind: 'a type that is no string', body: { type: pick([7, null, true, ['write'], { name: 'write' }]) } }),
      () => ({ kind: 'a body that is no map', body: pick([null, 7, 'write', true, [{ type: 'write' }], new Uint8Array(8)]) }),
    ])();
    return { ...wrong, field: 'type' };
  };

  /** An envelope as a peer sends it. */
  let how: 'ask' | 'tell' = 'ask';
  /** An envelope as a peer sends it; a key of `extra` set to undefined is left out. */
  const envelope = (to: string, body: unknown, extra: Body = {}): Body => {
    const fields: Body = { v: 1, to, kind: how, body, ...(how === 'ask' ? { timeout_ms: 30_000 } : {}), ...extra };
    return Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined));
  };
  const refused = (field?: string | RegExp): Expected => (field === undefined ? { code: 'E_BAD_REQUEST' } : { code: 'E_BAD_REQUEST', field });
  const anyPartition = () => int(target.shards);

  const makers: [number, () => ActorCase][] = [
    // Bodies for the PartitionActors: most of the run.
    [10, () => {
      const shard = anyPartition();
      const { kind, body, field } = brokenBody(shard);
      return { kind, data: encodeInternal(envelope(partition(shard), body)), expected: refused(field) };
    }],
    [1, () => {
      let deep: unknown = int(10);
      const depth = 8 + int(60);
      for (let i = 0; i < depth; i++) deep = random() < 0.5 ? [deep] : { a: deep };
      // Deeper than the decoder's bound: refused as the envelope is decoded (no field); within it: by the body's schema.
      return { kind: `nesting ${depth} deep`, data: encodeInternal(envelope(partition(anyPartition()), { type: 'write', records: [deep] })), expected: refused() };
    }],
    // Envelopes that are wrong before any body is looked at.
    [1, () => ({ kind: 'random bytes', data: new Uint8Array(1 + int(512)).map(() => int(256)), expected: refused() })],
    [1, () => {
      const bytes = packr.pack(envelope(partition(anyPartition()), { type: 'status' }));
      const data = random() < 0.5 ? bytes.subarray(0, 1 + int(bytes.length - 2)) : new Uint8Array([...bytes, ...new Uint8Array(1 + int(8)).map(() => int(256))]);
      return { kind: 'a truncated or overlong envelope', data, expected: refused() };
    }],
    [1, () => {
      const to = partition(anyPartition());
      const [kind, value, field] = pick<[string, unknown, string | undefined]>([
        ['version 2', envelope(to, { type: 'status' }, { v: 2 }), 'v'],
        ['version as text', envelope(to, { type: 'status' }, { v: '1' }), 'v'],
        ['no version', envelope(to, { type: 'status' }, { v: undefined }), 'v'],
        ['an empty target', envelope('', { type: 'status' }), 'to'],
        ['a target over 512 characters', envelope(`${to}/${'x'.repeat(600)}`, { type: 'status' }), 'to'],
        ['a target that is no string', envelope(to, { type: 'status' }, { to: 7 }), 'to'],
        ['an unknown kind', envelope(to, { type: 'status' }, { kind: 'call' }), 'kind'],
        ['no kind', envelope(to, { type: 'status' }, { kind: undefined }), 'kind'],
        ['a timeout of 0', envelope(to, { type: 'status' }, { timeout_ms: 0 }), 'timeout_ms'],
        ['a fractional timeout', envelope(to, { type: 'status' }, { timeout_ms: 1.5 }), 'timeout_ms'],
        ['a timeout as text', envelope(to, { type: 'status' }, { timeout_ms: '100' }), 'timeout_ms'],
        ['an envelope that is a list', [1, to, 'ask', { type: 'status' }], undefined],
        ['an envelope that is a number', 42, undefined],
      ]);
      return { kind: `envelope: ${kind}`, data: encodeInternal(value), expected: refused(field) };
    }],
    // Paths: actors that take nothing from the network, paths with no actor, another node.
    [2, () => {
      const to = pick(target.closedActors);
      const body = pick<unknown>([
        { body: { records: [record(anyPartition())] } },
        { type: 'run', dry_run: false, trigger: 'admin' },
        { type: 'create', kind: 'full' },
        { type: 'restore', request: { targetDir: '/tmp/elsewhere' } },
        { type: 'apply', dry_run: false },
        { type: 'rollback', dry_run: false },
        { type: 'remove', shard: 0, ids: ['x'] },
        { type: 'status' },
        brokenBody(anyPartition()).body,
      ]);
      return { kind: `a body for ${to.slice(target.nodeId.length + 1)}`, data: encodeInternal(envelope(to, body)), expected: refused('to') };
    }],
    [1, () => {
      const to = pick([`${target.nodeId}/api`, partition(target.shards + int(5)), `${target.nodeId}/${word(6)}`, `${target.nodeId}/shards`, target.nodeId]);
      return { kind: 'a path where no actor runs', data: encodeInternal(envelope(to, { type: 'status' })), expected: { code: 'E_UNAVAILABLE' } };
    }],
    [1, () => ({ kind: 'a path on another node', data: encodeInternal(envelope(`other-${word(4)}/shards/partition-0`, { type: 'status' })), expected: { code: 'E_NOT_FOUND' } })],
  ];
  const total = makers.reduce((sum, [weight]) => sum + weight, 0);
  return (kind) => {
    how = kind;
    let roll = random() * total;
    for (const [weight, make] of makers) {
      if (roll < weight) return make();
      roll -= weight;
    }
    return makers[0]![1]();
  };
}
