// The CLI commands that send records (`ingest FILE`, `demo`) as a user runs
// them, against a node in this process on its own subject prefix: batches
// that fit the payload limit, a line too large to send rejected alone, a
// node that dies mid-run, the demo's table counting what it sent, and the
// README's query example printing the columns the real query prints.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { decode, encode } from '../../protocols/codec.js';
import { connectNats } from '../../src/transport/nats.js';
import type { TransportMessage } from '../../src/transport/transport.js';
import { cli } from '../helpers/cli.js';
import { NATS_URL, startTestNode, uniqueName } from '../helpers/node.js';

const DIR = mkdtempSync(join(tmpdir(), 'usage-tracker-cli-ingest-'));
t.teardown(() => rmSync(DIR, { recursive: true, force: true }));

const NOW = Date.now();
const STACK_FRAME = /^\s+at\s/m;

/** A valid wire record; `padding` metadata makes it about 8 KiB encoded. */
function record(n: number, padded = false): Record<string, unknown> {
  const base = { id: `cli-ingest-${n}`, ts: NOW - 60_000 + n, user_id: `user-${n % 3}`, provider: 'anthropic', model: 'claude-sonnet-4', input_tokens: 100 + n, output_tokens: 10, status: 'success', latency_ms: 200 };
  if (!padded) return base;
  const metadata: Record<string, string> = {};
  for (let key = 0; key < 32; key++) metadata[`k${key}`] = 'x'.repeat(250);
  return { ...base, metadata };
}

function jsonLines(file: string, lines: string[]): string {
  const path = join(DIR, file);
  writeFileSync(path, `${lines.join('\n')}\n`);
  return path;
}

t.test('batches are split by encoded size; a line too large alone is one rejected line', async (t) => {
  const tn = await startTestNode();
  t.teardown(() => tn.stop());
  const prefix = tn.config.transport.subject_prefix;

  // 300 records of ~8 KiB in one --batch of 500 would be a 2.4 MiB request.
  const large = jsonLines('large.jsonl', Array.from({ length: 300 }, (_, n) => JSON.stringify(record(n, true))));
  const split = await cli(['ingest', large, '--quiet'], prefix);
  t.equal(split.code, 0, split.stderr);
  t.equal(split.stdout, '300 stored, 0 duplicate, 0 rejected (300 lines)\n');

  const huge = JSON.stringify({ ...record(1000), operation: 'y'.repeat(2_000_000) });
  const mixed = jsonLines('mixed.jsonl', [JSON.stringify(record(1001)), huge, JSON.stringify(record(1002))]);
  const result = await cli(['ingest', mixed, '--quiet'], prefix);
  t.equal(result.code, 1, 'a rejected line makes the exit code 1');
  t.notMatch(result.stderr, /payload for/, 'the run is not aborted');
  const [summary, problem, ...rest] = result.stdout.split('\n');
  t.equal(summary, '2 stored, 0 duplicate, 1 rejected (3 lines)');
  t.match(problem, /^ {2}line 2: E_TOO_LARGE: the record is \d+ bytes encoded; one request carries at most 1048576$/);
  t.same(rest, ['']);
  for (const id of ['cli-ingest-1001', 'cli-ingest-1002']) {
    const stored = await tn.call('record.get', { id, user_id: `user-${Number(id.slice(-4)) % 3}` });
    t.equal(stored.ok, true, `${id} was stored`);
  }
  t.notMatch(result.stderr, STACK_FRAME);
});

/**
 * A node that answers the first ingest request it gets and then dies: it
 * leaves the subject (so later requests find no responders) before it
 * answers, and never answers anything else it was sent, as a node killed
 * with requests in flight does not.
 */
async function dyingNode(t: Test, prefix: string, waitForSecond: boolean): Promise<void> {
  const transport = await connectNats({ servers: NATS_URL, name: 'usage-tracker-dying-node' });
  t.teardown(() => transport.drain());
  const received: TransportMessage[] = [];
  const subscription = transport.subscribe(`${prefix}.v1.ingest`, (message) => {
    received.push(message);
    if (received.length !== (waitForSecond ? 2 : 1)) return;
    subscription.unsubscribe();
    void transport.flush().then(() => {
      const body = decode(received[0]!.data, 'msgpack', { payloadBytesMax: 64 << 20, nestingDepthMax: 64 }) as { records: unknown[] };
      received[0]!.respond(encode({ ok: true, results: body.records.map((_, index) => ({ index, status: 'stored' })) }));
    });
  });
  await transport.flush();
}

t.test('ingest whose node dies stops at once and says how many records were acknowledged', async (t) => {
  const prefix = uniqueName('dying');
  // Requests 1 and 2 go out together; the node answers 1, never 2, and has left before 3 is sent.
  await dyingNode(t, prefix, true);
  const file = jsonLines('dying.jsonl', Array.from({ length: 10 }, (_, n) => JSON.stringify(record(2000 + n))));
  const result = await cli(['ingest', file, '--quiet', '--batch', '1', '--concurrency', '2', '--timeout', '600000'], prefix);
  t.equal(result.code, 1);
  t.equal(result.stdout, '1 stored, 0 duplicate, 0 rejected (4 lines read before the node stopped answering)\n');
  t.equal(result.stderr.split('\n').length, 2, `one line on stderr: ${result.stderr}`);
  t.match(result.stderr, new RegExp(`^usage-tracker: the node stopped answering after 1 records were acknowledged: no node answers on ${prefix}\\.v1\\.ingest at `));
  t.match(result.stderr, /; 2 records sent got no answer \(they may be stored: sending the file again is safe, duplicates are recognised by id\)\n$/);
  t.notMatch(result.stderr, STACK_FRAME);
});

t.test('demo whose node stops mid-run fails with one line, a stack only with USAGE_TRACKER_DEBUG=1', async (t) => {
  for (const debug of [false, true]) {
    const prefix = uniqueName('dyingdemo');
    await dyingNode(t, prefix, false);
    // At 1000 records/s the demo sleeps between batches of 250: a request failing then was once an unhandled rejection.
    const result = await cli(['demo', '--records', '1000', '--rate', '1000', '--timeout', '2000'], prefix, debug ? { env: { USAGE_TRACKER_DEBUG: '1' } } : {});
    t.equal(result.code, 1, result.stderr);
    t.equal(result.stdout, '');
    const [first] = result.stderr.split('\n');
    t.match(first, /^usage-tracker: demo stopped after 250 of 1000 records were acknowledged \(250 stored\): (no answer on|no node answers on) /);
    if (debug) t.match(result.stderr, STACK_FRAME, 'USAGE_TRACKER_DEBUG=1 adds the stack');
    else t.equal(result.stderr, `${first}\n`, 'one line, no stack');
  }
});

t.test("demo's closing tables count every record it sent", async (t) => {
  const tn = await startTestNode();
  t.teardown(() => tn.stop());
  const result = await cli(['demo', '--records', '600', '--users', '20', '--rate', '1000000', '--seed', '7'], tn.config.transport.subject_prefix);
  t.equal(result.code, 0, result.stderr);
  t.match(result.stdout, /^sent 600 records from 20 users over 1 day\(s\): 600 stored, 0 duplicate, 0 rejected\n/);
  const [, byProvider = '', byModel = ''] = result.stdout.split(/\nlast 1 day\(s\) by provider:\n|\nby model:\n/);
  /** Sums a table's count column (the first number after the key columns). */
  const counted = (table: string, keys: number) =>
    table
      .split('\n')
      .filter((line) => /^\| [a-z]/.test(line) && !line.startsWith('| provider'))
      .reduce((sum, line) => sum + Number(line.split('|')[keys + 1]!.trim().replace(/,/g, '')), 0);
  t.equal(counted(byProvider, 1), 600, `by provider:\n${byProvider}`);
  t.equal(counted(byModel, 2), 600, `by model:\n${byModel}`);

  // The README shows what `query --group-by provider` prints: the same columns as the real one.
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const shown = /`query --group-by provider` prints[\s\S]*?```\n(\|[^\n]*)\n/.exec(readme)?.[1];
  t.ok(shown, 'the README has the example');
  const query = await cli(['query', '--group-by', 'provider'], tn.config.transport.subject_prefix);
  t.equal(query.code, 0, query.stderr);
  const columns = (header: string) => header.split('|').map((cell) => cell.trim()).filter(Boolean);
  t.same(columns(query.stdout.split('\n')[0]!), columns(shown!), "the README's columns are the ones printed");
});
