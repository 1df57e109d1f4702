// Crash-test fixture: a node on DATA_DIR that ingests, re-sends and updates
// records as fast as it can until it is killed (test/crash/sigkill.test.ts
// SIGKILLs it). It is not a test file; the test runs it as a child process:
//
//   node --import tsx test/crash/fixture-writer.ts DATA_DIR SEED [ROUND]
//
// Its stdout is the record of what it did, one line per event, and each line
// is written (synchronously, stdout is a pipe) BEFORE the fact it claims can
// be relied on by the parent:
//
//   loaded                     modules loaded, waiting for a line on stdin
//                              (only with CRASH_FIXTURE_GATE=stdin)
//   ready                      the node is serving
//   sent <id>                  before the first request that carries <id>
//   try <id> <expected>        before a record.update with expected_version
//   ack <id> <version>         after the reply said stored or duplicate
//   upd <id> <version>         after record.update answered ok
//   rej <id> <code>            a record the reply rejected (for diagnostics)
//   err <code>                 a request that failed as a whole
//
// A record is a pure function of (SEED, ROUND, n), so a re-sent id carries
// the same user, shard and content, and the parent can check what it reads
// back. Record n of round r has ts = TS_BASE_MS + r * ROUND_TS_SPAN_MS + n,
// so each round's records have their own time window (a UTC hour). A
// fixture of round r sends ids of rounds r and r - 1 only.

import { pathToFileURL } from 'node:url';
import { decode, encode } from '../../protocols/codec.js';
import { subjects, type EndpointName } from '../../protocols/subjects.js';
import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { EmbeddedTransport } from '../../src/transport/embedded.js';
import { startNode } from '../../supervisors/node.js';

export const TS_BASE_MS = Date.UTC(2026, 0, 1);
/** One UTC hour per round, so that `query.aggregate` grouped by hour counts each round's records. */
export const ROUND_TS_SPAN_MS = 3_600_000;
/** Small, so that every run seals several times. */
export const MEMTABLE_RECORDS_MAX = 300;
const USERS = 13;
const PROVIDERS = [
  ['anthropic', 'claude-sonnet-4'],
  ['openai', 'gpt-4o'],
  ['google', 'gemini-2.5-pro'],
  ['mistral', 'mistral-large'],
] as const;

/** The node configuration of the fixture, and of the parent that checks its data directory. */
export function crashConfig(dataDir: string): Config {
  return loadConfig({
    text: `storage:\n  memtable_records_max: ${MEMTABLE_RECORDS_MAX}\n`,
    env: {
      USAGE_TRACKER_DATA_DIR: dataDir,
      // Backups and the WAL archive beside the data directory, never in the working directory.
      USAGE_TRACKER_BACKUP_DIR: `${dataDir}-backups`,
      USAGE_TRACKER_TRANSPORT: 'embedded',
      USAGE_TRACKER_NATS_URL: 'nats://127.0.0.1:1',
      USAGE_TRACKER_SHARDS: '4',
      USAGE_TRACKER_NODE_ID: 'crash',
      USAGE_TRACKER_LOG_LEVEL: 'silent',
    },
  });
}

/** splitmix32-style mixing: a well-spread 32-bit value of a few integers. */
function mix(...values: number[]): number {
  let h = 0x9e3779b9;
  for (const value of values) {
    h = Math.imul(h ^ (value >>> 0), 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}

/** A seeded generator of floats in [0, 1) (mulberry32). */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let x = state;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

export function crashRecordId(seed: number, round: number, n: number): string {
  return `c${seed}-${round}-${n}`;
}

export function parseCrashRecordId(id: string): { seed: number; round: number; n: number } | undefined {
  const match = /^c(\d+)-(\d+)-(\d+)$/.exec(id);
  return match ? { seed: Number(match[1]), round: Number(match[2]), n: Number(match[3]) } : undefined;
}

export interface CrashRecord {
  id: string;
  ts: number;
  user_id: string;
  provider: string;
  model: string;
  input_tokens: number;
  output_tokens: number;
  cost_usd: number;
  latency_ms: number;
  status: 'success' | 'error';
  session_id: string;
}

export function crashRecord(seed: number, round: number, n: number): CrashRecord {
  const h = mix(seed, round, n);
  const [provider, model] = PROVIDERS[h % PROVIDERS.length]!;
  return {
    id: crashRecordId(seed, round, n),
    ts: TS_BASE_MS + round * ROUND_TS_SPAN_MS + n,
    user_id: `user-${mix(h, 1) % USERS}`,
    provider,
    model,
    input_tokens: 10 + (mix(h, 2) % 5000),
    output_tokens: outputTokensAt(mix(h, 3) % 900, 1),
    cost_usd: (mix(h, 4) % 10_000) / 1_000_000,
    latency_ms: 50 + (mix(h, 5) % 3000),
    status: mix(h, 6) % 20 === 0 ? 'error' : 'success',
    session_id: `s-${mix(h, 7) % 50}`,
  };
}

/** Every update sets output_tokens from the version it creates, so content and version can be checked together. */
export function outputTokensAt(base: number, version: number): number {
  return base + 1000 * (version - 1);
}

// ---------------------------------------------------------------------------

const CONCURRENCY = 4;
const BATCH_RECORDS_MAX = 50;
const REQUEST_TIMEOUT_MS = 10_000;
/** A fixture whose parent died must not ingest forever. */
const LIFETIME_MS = 60_000;
/** Set to `stdin` to load, print `loaded` and start the node only when a line arrives on stdin. */
export const GATE_ENV = 'CRASH_FIXTURE_GATE';

type Reply = { ok: boolean; results?: { id?: string; status: string; version?: number; error?: { code: string } }[]; version?: number; record?: { version: number }; error?: { code: string; details?: { current_version?: number } } };

async function main(): Promise<void> {
  const [dataDir, seedText, roundText = '0'] = process.argv.slice(2);
  const seed = Number(seedText);
  const round = Number(roundText);
  if (!dataDir || !Number.isSafeInteger(seed) || seed < 0 || !Number.isSafeInteger(round) || round < 0) {
    process.stderr.write('usage: fixture-writer.ts DATA_DIR SEED [ROUND]\n');
    process.exit(2);
  }
  const write = (text: string) => process.stdout.write(text);
  if (process.env[GATE_ENV] === 'stdin') await gate(write);
  setTimeout(() => process.exit(3), LIFETIME_MS).unref();
  const embedded = new EmbeddedTransport();
  await startNode(crashConfig(dataDir), { embedded });
  const names = subjects('usage');
  const call = async (endpoint: EndpointName, body: unknown): Promise<Reply> => {
    const reply = await embedded.request(names.endpoint(endpoint), encode(body), { timeoutMs: REQUEST_TIMEOUT_MS });
    return decode(reply.data, 'msgpack', { payloadBytesMax: 64 << 20, nestingDepthMax: 64 }) as Reply;
  };

  const random = seededRandom(mix(seed, round, 0x5eed));
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  let next = 0;
  const sent: CrashRecord[] = [];
  const sentIds = new Set<string>();
  /** Acknowledged ids of this run, with the last version we know of. */
  const known = new Map<string, { record: CrashRecord; version: number }>();
  const knownIds: string[] = [];
  const learn = (record: CrashRecord, version: number) => {
    const entry = known.get(record.id);
    if (!entry) {
      known.set(record.id, { record, version });
      knownIds.push(record.id);
    } else if (version > entry.version) entry.version = version;
  };

  async function ingestBatch(): Promise<void> {
    const size = 1 + Math.floor(random() * BATCH_RECORDS_MAX);
    const batch: CrashRecord[] = [];
    let announce = '';
    for (let i = 0; i < size; i++) {
      const roll = random();
      let record: CrashRecord;
      if (roll < 0.1 && sent.length > 0) record = pick(sent); // re-sent, maybe within this very batch
      else if (roll < 0.13 && round > 0) record = crashRecord(seed, round - 1, Math.floor(random() * 300)); // from before the last crash
      else if (next < ROUND_TS_SPAN_MS) record = crashRecord(seed, round, next++);
      else continue;
      if (!sentIds.has(record.id)) {
        announce += `sent ${record.id}\n`;
        sentIds.add(record.id);
        sent.push(record);
      }
      batch.push(record);
    }
    if (batch.length === 0) return;
    write(announce);
    const reply = await call('ingest', { records: batch });
    if (!reply.ok || !reply.results) {
      write(`err ${reply.error?.code ?? 'unknown'}\n`);
      return;
    }
    let out = '';
    reply.results.forEach((result, index) => {
      const record = batch[index]!;
      if (result.id !== record.id) throw new Error(`result ${index} is for ${String(result.id)}, not ${record.id}`);
      if ((result.status === 'stored' || result.status === 'duplicate') && typeof result.version === 'number') {
        out += `ack ${record.id} ${result.version}\n`;
        learn(record, result.version);
      } else out += `rej ${record.id} ${result.error?.code ?? result.status}\n`;
    });
    write(out);
  }

  async function updateOne(): Promise<void> {
    let record: CrashRecord;
    let expected: number;
    if (round > 0 && random() < 0.3) {
      // A record of an earlier run, probably sealed by now: learn its version first.
      record = crashRecord(seed, round - 1, Math.floor(random() * 300));
      const got = await call('record.get', { id: record.id, user_id: record.user_id });
      if (!got.ok || !got.record) return;
      expected = got.record.version;
    } else {
      if (knownIds.length === 0) return;
      const entry = known.get(pick(knownIds))!;
      record = entry.record;
      expected = entry.version;
    }
    const base = crashRecord(seed, ...roundAndN(record.id)).output_tokens;
    write(`try ${record.id} ${expected}\n`);
    const reply = await call('record.update', {
      id: record.id,
      user_id: record.user_id,
      expected_version: expected,
      patch: { output_tokens: outputTokensAt(base, expected + 1) },
    });
    if (reply.ok && typeof reply.version === 'number') {
      write(`upd ${record.id} ${reply.version}\n`);
      learn(record, reply.version);
    } else if (reply.error?.code === 'E_CONFLICT' && typeof reply.error.details?.current_version === 'number') {
      learn(record, reply.error.details.current_version);
    } else if (!reply.ok) write(`err ${reply.error?.code ?? 'unknown'}\n`);
  }

  async function worker(): Promise<never> {
    for (;;) {
      try {
        if (random() < 0.15) await updateOne();
        else await ingestBatch();
      } catch (error) {
        write(`err ${(error as { code?: string }).code ?? (error as Error).message.replace(/\s+/g, '_')}\n`);
      }
    }
  }

  write('ready\n');
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
}

/**
 * Loaded but not started: waits for a line on stdin (or exits when stdin
 * closes first). Lets the parent spawn the next fixture, paying for module
 * loading, while it still holds the data directory to check it.
 */
async function gate(write: (text: string) => void): Promise<void> {
  write('loaded\n');
  await new Promise<void>((resolve) => {
    process.stdin.once('data', () => {
      process.stdin.pause();
      resolve();
    });
    process.stdin.once('end', () => process.exit(0));
  });
}

function roundAndN(id: string): [number, number] {
  const parsed = parseCrashRecordId(id);
  if (!parsed) throw new Error(`not a crash-test id: ${id}`);
  return [parsed.round, parsed.n];
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: unknown) => {
    process.stderr.write(`fixture-writer: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  });
}
