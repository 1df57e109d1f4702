// Fuzz of the internal actor subject (`<prefix>.v1.node.<id>.actor`), as
// test/fuzz/protocol.fuzz.test.ts fuzzes the public ones: a live node over
// real NATS, under a subject prefix of its own, gets seeded malformed
// envelopes and bodies (test/fuzz/actor-cases.ts) as asks and as tells,
// while valid records are ingested beside them. Checked:
//
//   1. every ask is answered with the refusal the protocol promises for it
//      (E_BAD_REQUEST naming the field; E_UNAVAILABLE where no actor runs;
//      E_NOT_FOUND for another node's path), never with a body;
//   2. no actor restarted and every shard still serves (the supervisors'
//      restart counts in admin.status), and nothing rejected unhandled;
//   3. every record ingested before and during the fuzz is there, and
//      query.records, query.aggregate, record.get and the shards' own counts
//      agree with what was acknowledged.
//
// Rounds (test/helpers/rounds.ts, stem ACTOR_FUZZ): a floor of 20 rounds of
// 24 messages each, then more for up to 10 s. The seed is printed;
// reproduce with ACTOR_FUZZ_SEED=<seed> ACTOR_FUZZ_ROUNDS=<n>.

import t from 'tap';
import { retentionSettings } from '../../actors/retention.js';
import { decode, encodeInternal } from '../../protocols/codec.js';
import { actorEnvelope } from '../../protocols/envelope.js';
import { startTestNode, type TestNode } from '../helpers/node.js';
import { roundPlan } from '../helpers/rounds.js';
import { caseGenerator, type ActorCase } from './actor-cases.js';

const FILE = 'test/fuzz/actor-subject.fuzz.test.ts';
const MESSAGES_PER_ROUND = 24;
const RECORDS_PER_ROUND = 8;
const SHARDS = 3;
/** How long an answer may take on a loaded 2-core machine: generous, it only bounds a hang. */
const ANSWER_MS_MAX = 30_000;
const PLAN = roundPlan(t, { stem: 'ACTOR_FUZZ', file: FILE, floor: 20, budgetS: 10, roundMsMax: 15_000, setupMsMax: 60_000 });

interface StatusTree {
  path: string;
  kind: 'supervisor' | 'worker';
  state: string;
  restarts: number;
  mailbox_depth?: number;
  detail?: { health?: string };
  children?: StatusTree[];
}

function* walk(tree: StatusTree): Generator<StatusTree> {
  yield tree;
  for (const child of tree.children ?? []) yield* walk(child);
}

const isPartition = (path: string) => /\/shards\/partition-\d+$/.test(path);

async function statusTree(tn: TestNode): Promise<StatusTree> {
  const status = await tn.call('admin.status', {});
  if (status.ok !== true) throw new Error(`admin.status failed: ${JSON.stringify(status)}`);
  return status.tree as StatusTree;
}

/** Sends raw envelope bytes as a request and decodes the reply envelope. */
async function askRaw(tn: TestNode, data: Uint8Array): Promise<any> {
  const reply = await tn.client.request(tn.subjects.nodeActors(tn.config.node.id), data, { timeoutMs: ANSWER_MS_MAX });
  return decode(reply.data, 'msgpack', { payloadBytesMax: 64 << 20, nestingDepthMax: 64 });
}

/** What an answer got wrong for its case, or undefined when it is the promised refusal. */
function wrongAnswer(fuzz: ActorCase, reply: any): string | undefined {
  const { code, field } = fuzz.expected;
  if (reply?.ok !== false) return `answered ok: ${JSON.stringify(reply).slice(0, 200)}`;
  const error = reply.error ?? {};
  if (error.code !== code) return `answered ${error.code} (${String(error.message).slice(0, 160)}), expected ${code}`;
  if (field === undefined) return undefined;
  const named = typeof field === 'string' ? error.field === field : typeof error.field === 'string' && field.test(error.field);
  return named ? undefined : `named field ${JSON.stringify(error.field)} (${String(error.message).slice(0, 160)}), expected ${String(field)}`;
}

interface Acknowledged {
  user_id: string;
  input_tokens: number;
}

t.test(`fuzz the internal actor subject of a live node (seed ${PLAN.seed})`, async (t) => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => void unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  const tn = await startTestNode(`cluster:\n  shards: ${SHARDS}\n`);
  t.teardown(async () => {
    process.off('unhandledRejection', onUnhandled);
    await tn.stop();
  });
  const nodeId = tn.config.node.id;
  const before = await statusTree(tn);
  const actors = [...walk(before)].filter((node) => node.kind === 'worker' && node.mailbox_depth !== undefined).map((node) => node.path);
  const partitions = actors.filter(isPartition);
  t.equal(partitions.length, SHARDS, `the node runs ${SHARDS} PartitionActors`);
  const closedActors = actors.filter((path) => !isPartition(path));
  t.ok(closedActors.length > 0, `and ${closedActors.length} other actors, none of which takes messages from the network: ${closedActors.join(', ')}`);
  const dirs = retentionSettings(tn.config);

  const model = new Map<string, Acknowledged>();
  const ingest = async (stem: string, count: number, random: () => number) => {
    const records = Array.from({ length: count }, (_, i) => ({
      id: `${stem}-${i}`,
      ts: Date.now() - Math.floor(random() * 3_600_000),
      user_id: `user-${Math.floor(random() * 40)}`,
      provider: 'anthropic',
      model: 'claude-sonnet-4',
      input_tokens: Math.floor(random() * 10_000),
      output_tokens: Math.floor(random() * 1000),
    }));
    const reply = await tn.call('ingest', { records }, { timeoutMs: ANSWER_MS_MAX });
    const stored = reply.ok === true ? (reply.results as { status: string }[]).filter((result) => result.status === 'stored').length : 0;
    if (stored !== count) throw new Error(`ingest of ${stem}: ${stored} of ${count} stored: ${JSON.stringify(reply).slice(0, 300)}`);
    for (const record of records) model.set(record.id, { user_id: record.user_id, input_tokens: record.input_tokens });
  };
  await ingest('before', 60, PLAN.random(0xffff_ffff));

  const failures: string[] = [];
  const tally = new Map<string, number>();
  let asks = 0;
  let tells = 0;
  for (const round of PLAN.rounds()) {
    const random = PLAN.random(round);
    const next = caseGenerator(random, { nodeId, shards: SHARDS, closedActors, archiveDir: dirs.archiveDir, exportDir: dirs.exportDir });
    const sends: Promise<void>[] = [ingest(`round-${round}`, RECORDS_PER_ROUND, random)];
    for (let i = 0; i < MESSAGES_PER_ROUND; i++) {
      const how = random() < 0.4 ? 'tell' : 'ask';
      const fuzz = next(how);
      tally.set(fuzz.kind, (tally.get(fuzz.kind) ?? 0) + 1);
      const where = `round ${round} message ${i} (${how}, ${fuzz.kind}; ${Buffer.from(fuzz.data.subarray(0, 48)).toString('hex')})`;
      if (how === 'tell') {
        tells++;
        tn.client.publish(tn.subjects.nodeActors(nodeId), fuzz.data);
        continue;
      }
      asks++;
      sends.push(
        askRaw(tn, fuzz.data).then(
          (reply) => {
            const wrong = wrongAnswer(fuzz, reply);
            if (wrong !== undefined) failures.push(`${where}: ${wrong}`);
          },
          (error: unknown) => void failures.push(`${where}: no answer: ${(error as Error).message}`),
        ),
      );
    }
    await Promise.all(sends);
  }
  PLAN.end();
  t.comment(`${asks} asks and ${tells} tells sent, of ${tally.size} kinds`);
  t.same(failures.slice(0, 10), [], `every ask was answered with the promised refusal (${failures.length} were not)`);

  // Asked after every tell on the same connection: NATS keeps their order, so each tell was handled (and dropped) before these answer.
  let counted = 0;
  for (const path of partitions) {
    const reply = await askRaw(tn, encodeInternal(actorEnvelope(path, 'ask', { type: 'status' }, ANSWER_MS_MAX)));
    t.match(reply, { ok: true, body: { health: 'serving' } }, `${path} answers a well-formed status and serves`);
    counted += Number(reply.body?.records ?? NaN);
  }
  const after = await statusTree(tn);
  const restarted = [...walk(after)].filter((node) => node.restarts > 0).map((node) => `${node.path} (${node.restarts})`);
  t.same(restarted, [], 'no actor or supervisor restarted');
  const notRunning = [...walk(after)].filter((node) => node.state !== 'running').map((node) => `${node.path}: ${node.state}`);
  t.same(notRunning, [], 'everything still runs');
  t.same(unhandled, [], 'no unhandled rejection');

  // What was acknowledged is all there, and every way of asking agrees.
  const seen = new Map<string, { user_id: string; input_tokens: number; version: number }>();
  let cursor: string | undefined;
  do {
    const page = await tn.call('query.records', { limit: 1000, ...(cursor ? { cursor } : {}) }, { timeoutMs: ANSWER_MS_MAX });
    t.equal(page.complete, true, 'query.records heard from every shard');
    for (const record of page.records) seen.set(record.id, record);
    cursor = page.next_cursor;
  } while (cursor !== undefined);
  const missing = [...model.keys()].filter((id) => !seen.has(id));
  const extra = [...seen.keys()].filter((id) => !model.has(id));
  t.same({ missing: missing.slice(0, 10), extra: extra.slice(0, 10) }, { missing: [], extra: [] }, `query.records lists the ${model.size} acknowledged records and nothing else`);
  const changed = [...model].filter(([id, want]) => {
    const got = seen.get(id);
    return got !== undefined && (got.user_id !== want.user_id || got.input_tokens !== want.input_tokens || got.version !== 1);
  });
  t.same(changed.map(([id]) => id).slice(0, 10), [], 'and none of them was changed');
  const aggregate = await tn.call('query.aggregate', { group_by: [], metrics: ['count', 'input_tokens'] }, { timeoutMs: ANSWER_MS_MAX });
  const tokens = [...model.values()].reduce((sum, record) => sum + record.input_tokens, 0);
  t.match(aggregate, { ok: true, complete: true, rows: [{ count: model.size, input_tokens: tokens }] }, 'query.aggregate counts them and sums their tokens');
  t.equal(counted, model.size, 'the shards count as many records');
  const sample = [...model].filter((_, index) => index % 17 === 0);
  for (const [id, want] of sample) {
    const got = await tn.call('record.get', { id, user_id: want.user_id });
    if (got.ok !== true || got.record.input_tokens !== want.input_tokens) t.fail(`record.get ${id}: ${JSON.stringify(got).slice(0, 200)}`);
  }
  t.pass(`record.get finds ${sample.length} sampled records as acknowledged`);
});
