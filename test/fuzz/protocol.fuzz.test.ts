// Fuzz: at least 10,000 random and mutated payloads against a live node over
// real NATS. Every one must be refused with E_BAD_REQUEST, E_VALIDATION or
// E_TOO_LARGE (for ingest: per record), nothing may crash or reject
// unhandled, and the node must still answer afterwards. Seeded, so a failure
// reproduces: FUZZ_SEED=<seed> npx tap test/fuzz/protocol.fuzz.test.ts

import t from 'tap';
import { Packr } from 'msgpackr';
import type { EndpointName } from '../../protocols/subjects.js';
import { startTestNode } from '../helpers/node.js';

const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);
const PAYLOADS = Number(process.env.FUZZ_PAYLOADS ?? 10_000);
const CONCURRENCY = 48;
const REFUSALS = new Set(['E_BAD_REQUEST', 'E_VALIDATION', 'E_TOO_LARGE']);
const packr = new Packr({ useRecords: false });

/** mulberry32: small, fast, seedable. */
function rng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
  };
}

interface Case {
  endpoint: EndpointName;
  data: Uint8Array;
  json: boolean;
  kind: string;
}

function generator(random: () => number) {
  const int = (n: number) => Math.floor(random() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
  // No lone surrogates here: UTF-8 encoding turns them into U+FFFD on the way, which is valid text.
  const hostile = ['\u0000', '\u202e', '\u0085', '\u001b[31m', '\u2066'];
  const randomString = (max: number) => Array.from({ length: int(max) }, () => String.fromCharCode(int(0xffff))).join('');
  const randomValue = (depth: number): unknown => {
    switch (int(depth > 3 ? 6 : 8)) {
      case 0: return int(2 ** 31) * (random() < 0.5 ? -1 : 1);
      case 1: return random() * 1e12;
      case 2: return randomString(20);
      case 3: return random() < 0.5;
      case 4: return null;
      case 5: return pick([Number.NaN, Infinity, -Infinity, -0, 2 ** 53 + 1]);
      case 6: return Array.from({ length: int(4) }, () => randomValue(depth + 1));
      default: return Object.fromEntries(Array.from({ length: int(4) }, () => [randomString(6), randomValue(depth + 1)]));
    }
  };
  const validRecord = () => ({
    id: `r-${int(1e9)}`,
    ts: Date.now() - int(86_400_000),
    user_id: `u-${int(1000)}`,
    provider: pick(['anthropic', 'openai', 'google', 'ollama']),
    model: pick(['claude-sonnet-4', 'gpt-4o', 'gemini-2.5-pro', 'llama3']),
    input_tokens: int(10_000),
    output_tokens: int(4000),
  });
  const required = ['id', 'ts', 'user_id', 'provider', 'model', 'input_tokens', 'output_tokens'] as const;
  /** A record made invalid in exactly one guaranteed way. */
  const brokenRecord = (): Record<string, unknown> => {
    const record: Record<string, unknown> = validRecord();
    switch (int(9)) {
      case 0: delete record[pick(required)]; break;
      case 1: record[pick(['input_tokens', 'output_tokens'])] = pick([-1, 1.5, '12', null, 1e10, {}]); break;
      case 2: record.ts = pick([0, -1, 8.64e15, 'yesterday', '2024-13-45', Date.now() + 7 * 86_400_000, 1.5, null]); break;
      case 3: record[pick(['id', 'user_id', 'model'])] = 'x'.repeat(129 + int(1000)); break;
      case 4: record[pick(['id', 'user_id', 'provider', 'model'])] = `ok${pick(hostile)}ok`; break;
      case 5: record[`unknown_${int(100)}`] = randomValue(0); break;
      case 6: record.metadata = pick([{ nested: { a: 1 } }, Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`k${i}`, i])), [1, 2], 'str']); break;
      case 7: record.status = pick(['ok', 'SUCCESS', 3, '']); break;
      default: record[pick(required)] = pick(['', [], {}, true, null]); break;
    }
    return record;
  };
  const endpoints: EndpointName[] = ['ingest', 'record.get', 'record.update', 'query.records', 'query.aggregate', 'admin.status'];
  return (): Case => {
    const roll = int(10);
    if (roll === 0) {
      const bytes = new Uint8Array(int(512) + 1).map(() => int(256));
      return { endpoint: pick(endpoints), data: bytes, json: random() < 0.3, kind: 'random bytes' };
    }
    if (roll === 1) {
      const bytes = packr.pack(validRecord());
      const cut = random() < 0.5 ? bytes.subarray(0, 1 + int(bytes.length - 2)) : new Uint8Array([...bytes, ...new Uint8Array(1 + int(8)).map(() => int(256))]);
      return { endpoint: 'ingest', data: cut, json: false, kind: 'truncated or trailing bytes' };
    }
    if (roll === 2) {
      const text = JSON.stringify(validRecord());
      return { endpoint: 'ingest', data: new TextEncoder().encode(text.slice(0, int(text.length - 1))), json: true, kind: 'truncated JSON' };
    }
    if (roll === 3) return { endpoint: 'ingest', data: new Uint8Array(70_000 + int(10_000)), json: false, kind: 'oversized' };
    if (roll === 4) {
      const records = Array.from({ length: 1 + int(20) }, brokenRecord);
      return { endpoint: 'ingest', data: packr.pack({ records }), json: false, kind: 'batch of broken records' };
    }
    if (roll === 5) {
      const junk = { ...Object.fromEntries(Array.from({ length: 1 + int(3) }, () => [`x_${randomString(5)}`, randomValue(0)])) };
      return { endpoint: pick(endpoints.filter((name) => name !== 'ingest')), data: packr.pack(junk), json: false, kind: 'unknown fields' };
    }
    if (roll === 6) {
      // Only endpoints with required fields: an empty map is a valid status request or query.
      const endpoint = pick(['ingest', 'record.get', 'record.update'] as const);
      return { endpoint, data: packr.pack(randomValue(0) ?? 1), json: false, kind: 'random value' };
    }
    if (roll === 7) {
      let nested: unknown = 1;
      for (let i = 0; i < 10 + int(200); i++) nested = [nested];
      return { endpoint: pick(endpoints), data: packr.pack(nested), json: false, kind: 'deep nesting' };
    }
    if (roll === 8) return { endpoint: 'ingest', data: new TextEncoder().encode(JSON.stringify(brokenRecord())), json: true, kind: 'broken record (JSON)' };
    return { endpoint: 'ingest', data: packr.pack(brokenRecord()), json: false, kind: 'broken record' };
  };
}

t.test(`fuzz ${PAYLOADS} payloads against a live node (seed ${SEED})`, async (t) => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => void unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  const tn = await startTestNode('limits:\n  payload_bytes_max: 65536\n  batch_records_max: 100\n');
  t.teardown(async () => {
    process.off('unhandledRejection', onUnhandled);
    await tn.stop();
  });
  const next = generator(rng(SEED));
  const tally = new Map<string, number>();
  const failures: string[] = [];
  let sent = 0;
  const worker = async () => {
    while (sent < PAYLOADS) {
      sent++;
      const fuzz = next();
      let body: any;
      try {
        body = (await tn.callRaw(fuzz.endpoint, fuzz.data, fuzz.json ? { 'Content-Type': 'application/json' } : undefined)).body;
      } catch (error) {
        failures.push(`${fuzz.kind} on ${fuzz.endpoint}: request failed: ${(error as Error).message}`);
        continue;
      }
      const codes: string[] = body.ok === false ? [body.error?.code] : body.ok === true && fuzz.endpoint === 'ingest' ? body.results.map((r: any) => r.error?.code) : ['<accepted>'];
      for (const code of codes) {
        tally.set(code, (tally.get(code) ?? 0) + 1);
        if (!REFUSALS.has(code)) failures.push(`${fuzz.kind} on ${fuzz.endpoint}: got ${code} (${Buffer.from(fuzz.data.subarray(0, 64)).toString('hex')})`);
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  t.ok(sent >= PAYLOADS, `${sent} payloads sent`);
  t.same(failures.slice(0, 10), [], 'every payload refused with E_BAD_REQUEST, E_VALIDATION or E_TOO_LARGE');
  t.same(unhandled, [], 'no unhandled rejection');
  for (const code of REFUSALS) t.ok((tally.get(code) ?? 0) > 0, `${code} was produced (${tally.get(code) ?? 0})`);
  const status = await tn.call('admin.status', {});
  t.equal(status.ok, true, 'the node still answers');
  const restarts = (node: any): number => node.restarts + (node.children ?? []).reduce((sum: number, child: any) => sum + restarts(child), 0);
  t.equal(restarts(status.tree), 0, 'no actor restarted');
});
