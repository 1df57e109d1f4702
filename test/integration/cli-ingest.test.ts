// `usage-tracker ingest FILE` as a user runs it, against a node in this
// process on its own subject prefix: batches that fit the payload limit, a
// line too large to send rejected alone, and a node that dies mid-run.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { cli } from '../helpers/cli.js';
import { startTestNode } from '../helpers/node.js';

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
