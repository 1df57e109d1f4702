// Crash test of the durability contract (DESIGN §4, docs/durability.md): a
// child process (fixture-writer.ts) ingests, re-sends and updates records on
// one data directory while this test SIGKILLs it at random moments, round
// after round. After every kill a node started here on the same directory
// must show:
//
// - every acknowledged id, exactly once, at a version no lower than the last
//   acknowledged one (an ack is a promise that survives the crash);
// - nothing invented: no id that was never sent, no version that no update
//   asked for, content that matches the id and its version;
// - nothing once recovered ever lost or rolled back by a later crash;
// - every shard serving: queries `complete`, no failed child in the tree.
//
// Record n of round r has its ts in hour r (fixture-writer.ts), and round r
// sends ids of rounds r and r - 1 only, so earlier hours no longer change.
// Each check reads those two hours record by record (query.records paging),
// and every hour once every FULL_CHECK_EVERY rounds and at the last round;
// in between, each older hour must keep the fingerprint it had (count and
// token sums from query.aggregate grouped by hour), else it is read too.
// That keeps a round's check short however much data earlier rounds left.
//
// Rounds: at least CRASH_ROUNDS_MIN (default 10), then more while
// CRASH_BUDGET_S (default 45) lasts, or exactly CRASH_ROUNDS (a soak,
// scripts/crash-soak.sh); CRASH_SEED seeds the workload and the kill times
// (test/helpers/rounds.ts; the start and the end print the seed and a line
// that reproduces the run). Round 1 always kills a fixture while it starts,
// and round 0 runs until its fixture has had an update acknowledged and a
// file sealed (each awaited with a deadline that fails the test), so that
// even the floor alone checks updates and sealed files across crashes.
// A SIGKILL loses no page cache, so this checks the process-crash half of the
// contract: a write acknowledged before it reached the kernel, or lost by
// recovery or sealing, shows here; one acknowledged before its fdatasync does
// not (that takes a power cut; test/unit/shard-store.test.ts injects failed
// fsyncs instead).

import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { decode, encode } from '../../protocols/codec.js';
import type { StoredRecord } from '../../protocols/record.js';
import { subjects, type EndpointName } from '../../protocols/subjects.js';
import { silentLogger } from '../../src/log.js';
import { shardOf } from '../../src/storage/node-meta.js';
import { EmbeddedTransport } from '../../src/transport/embedded.js';
import type { StatusNode } from '../../supervisors/status.js';
import { startNode } from '../../supervisors/node.js';
import { roundPlan } from '../helpers/rounds.js';
import { waitFor } from '../helpers/wait.js';
import { crashConfig, crashRecord, GATE_ENV, outputTokensAt, parseCrashRecordId, ROUND_TS_SPAN_MS, TS_BASE_MS } from './fixture-writer.js';

// A round on a loaded 2-core machine takes a few seconds (more as the data grows); the floor's worst case fits the timeout.
const PLAN = roundPlan(t, { stem: 'CRASH', file: 'test/crash/sigkill.test.ts', floor: 10, budgetS: 45, roundMsMax: 15_000, setupMsMax: 30_000 });
const SEED = PLAN.seed;
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const FIXTURE = 'test/crash/fixture-writer.ts';
const SHARDS = 4;
const RUN_MS_MIN = 50;
const RUN_MS_MAX = 400;
/** Share of rounds that first kill a fixture while it opens the shards (recovery itself must survive a crash). */
const STARTUP_KILL_SHARE = 0.1;
const FIXTURE_START_MS_MAX = 30_000;
const PAGE_RECORDS = 1000;
const FULL_CHECK_EVERY = 10;
const REPORTED_MAX = 10;

// ---------------------------------------------------------------------------
// The fixture as a child process.

interface Fixture {
  child: ChildProcess;
  /** Every complete line so far. */
  lines: string[];
  stderr: () => string;
  /** Resolves with the first line equal to `line`, or rejects when the child exits first. */
  waitFor(line: string, timeoutMs: number): Promise<void>;
  go(): void;
  kill(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Our environment without tap's: a fixture runs plain, not under tap's process tracking and coverage. */
function fixtureEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^(NODE_OPTIONS|NODE_V8_COVERAGE|TAP|_TAPJS_)/.test(name)));
}

function spawnFixture(dataDir: string, round: number): Fixture {
  const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE, dataDir, String(SEED), String(round)], {
    cwd: ROOT,
    env: { ...fixtureEnv(), [GATE_ENV]: 'stdin' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let partial = '';
  let errText = '';
  const watchers = new Set<() => void>();
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n');
    // The last part has no newline yet: a line a kill may cut. Only whole lines count.
    partial = parts.pop()!;
    lines.push(...parts);
    for (const watcher of watchers) watcher();
  });
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (chunk: string) => {
    if (errText.length < 20_000) errText += chunk;
  });
  child.stdin!.on('error', () => undefined);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolveExit) =>
    child.once('close', (code, signal) => {
      for (const watcher of watchers) watcher();
      resolveExit({ code, signal });
    }),
  );
  return {
    child,
    lines,
    stderr: () => errText,
    waitFor(line, timeoutMs) {
      return new Promise((resolveWait, reject) => {
        const timer = setTimeout(() => done(new Error(`fixture round ${round}: no "${line}" after ${timeoutMs} ms`)), timeoutMs);
        const check = () => {
          if (lines.includes(line)) done();
          else if (child.exitCode !== null || child.signalCode !== null) {
            done(new Error(`fixture round ${round} exited (${child.exitCode ?? child.signalCode}) before "${line}":\n${errText}`));
          }
        };
        const done = (error?: Error) => {
          clearTimeout(timer);
          watchers.delete(check);
          if (error) reject(error);
          else resolveWait();
        };
        watchers.add(check);
        check();
      });
    },
    go() {
      child.stdin!.write('go\n');
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      return exited;
    },
  };
}

// ---------------------------------------------------------------------------
// What the fixtures said, over all rounds.

interface Model {
  /** Ids some fixture announced before sending them. */
  sent: Set<string>;
  /** The highest acknowledged version of each acknowledged id. */
  acked: Map<string, number>;
  /** The highest expected_version any update of the id was sent with. */
  tried: Map<string, number>;
}

interface RoundLog {
  acks: number;
  updates: number;
  rejected: Map<string, number>;
  errors: Map<string, number>;
  malformed: number;
}

const LINE = /^(sent|try|ack|upd|rej|err|ready|loaded)(?: (\S+))?(?: (\S+))?$/;

function absorb(model: Model, lines: readonly string[]): RoundLog {
  const log: RoundLog = { acks: 0, updates: 0, rejected: new Map(), errors: new Map(), malformed: 0 };
  const count = (map: Map<string, number>, key: string) => map.set(key, (map.get(key) ?? 0) + 1);
  const raise = (map: Map<string, number>, id: string, version: number) => map.set(id, Math.max(map.get(id) ?? 0, version));
  for (const line of lines) {
    const match = LINE.exec(line);
    const [, kind, id = '', value = ''] = match ?? [];
    const version = Number(value);
    if (!match) log.malformed++;
    else if (kind === 'sent' && id) model.sent.add(id);
    else if (kind === 'try' && id && Number.isSafeInteger(version)) raise(model.tried, id, version);
    else if ((kind === 'ack' || kind === 'upd') && id && Number.isSafeInteger(version) && version >= 1) {
      raise(model.acked, id, version);
      if (kind === 'ack') log.acks++;
      else log.updates++;
    } else if (kind === 'rej') count(log.rejected, value || '?');
    else if (kind === 'err') count(log.errors, id || '?');
    else if (kind !== 'ready' && kind !== 'loaded') log.malformed++;
  }
  return log;
}

// ---------------------------------------------------------------------------
// Checking the data directory with a node of our own.

interface Findings {
  missing: string[];
  duplicated: string[];
  belowAck: string[];
  vanished: string[];
  rolledBack: string[];
  invented: string[];
  inventedVersion: string[];
  wrongContent: string[];
  unserving: string[];
  aggregateDisagrees: string[];
  /** Hours read record by record. */
  read: number;
  /** Queries asked again because a shard's answer timed out inside the node (a loaded machine, not a lost record). */
  retried: number;
  records: number;
  sealedFiles: number;
}

interface Fingerprint {
  count: number;
  input_tokens: number;
  output_tokens: number;
}

type Call = (endpoint: EndpointName, body: unknown) => Promise<any>;

/**
 * A query asked until no shard's part of the answer timed out, at most
 * QUERY_TRIES times. On a machine loaded far beyond its cores a shard that
 * has just replayed hundreds of files can miss the node's 5 s internal ask
 * deadline, and the reply says so (`complete: false`, `E_TIMEOUT`): that is
 * a slow shard, not a missing record, so it is asked again. Any other
 * missing shard, or a timeout every try, is a finding of the caller's.
 */
const QUERY_TRIES = 6;
async function completeQuery(call: Call, endpoint: EndpointName, body: unknown, findings: Findings): Promise<any> {
  for (let tries = 1; ; tries++) {
    const reply = await call(endpoint, body);
    const missing = (reply.missing_shards ?? []) as { code?: string }[];
    const timedOut = reply.ok && reply.complete !== true && missing.length > 0 && missing.every((shard) => shard.code === 'E_TIMEOUT');
    if (!timedOut || tries === QUERY_TRIES) return reply;
    findings.retried++;
  }
}

const sameFingerprint = (a: Fingerprint | undefined, b: Fingerprint | undefined) =>
  (a?.count ?? 0) === (b?.count ?? 0) && (a?.input_tokens ?? 0) === (b?.input_tokens ?? 0) && (a?.output_tokens ?? 0) === (b?.output_tokens ?? 0);

/** The round whose window holds `ts`: hour r after TS_BASE_MS, the first and last windows open-ended. */
const windowOf = (ts: number, lastRound: number) => Math.min(lastRound, Math.max(0, Math.floor((ts - TS_BASE_MS) / ROUND_TS_SPAN_MS)));

function windowFilter(round: number, lastRound: number): { from?: number; to?: number } {
  return {
    ...(round > 0 ? { from: TS_BASE_MS + round * ROUND_TS_SPAN_MS } : {}),
    ...(round < lastRound ? { to: TS_BASE_MS + (round + 1) * ROUND_TS_SPAN_MS } : {}),
  };
}

async function readWindow(call: Call, round: number, lastRound: number, findings: Findings): Promise<StoredRecord[]> {
  const filter = windowFilter(round, lastRound);
  const records: StoredRecord[] = [];
  let cursor: string | undefined;
  do {
    const reply = await completeQuery(call, 'query.records', { ...filter, limit: PAGE_RECORDS, ...(cursor !== undefined ? { cursor } : {}) }, findings);
    if (!reply.ok) {
      findings.unserving.push(`query.records ${JSON.stringify(filter)}: ${reply.error?.code} ${reply.error?.message}`);
      break;
    }
    if (reply.complete !== true) findings.unserving.push(`query.records incomplete: ${JSON.stringify(reply.missing_shards)}`);
    records.push(...(reply.records as StoredRecord[]));
    cursor = reply.next_cursor;
  } while (cursor !== undefined);
  return records;
}

/** Count and token sums per window, from query.aggregate grouped by hour. */
async function aggregateWindows(call: Call, lastRound: number, findings: Findings): Promise<Map<number, Fingerprint> | undefined> {
  const reply = await completeQuery(call, 'query.aggregate', { group_by: ['hour'], metrics: ['count', 'input_tokens', 'output_tokens'] }, findings);
  if (!reply.ok) {
    findings.unserving.push(`query.aggregate: ${reply.error?.code} ${reply.error?.message}`);
    return undefined;
  }
  if (reply.complete !== true) findings.unserving.push(`query.aggregate incomplete: ${JSON.stringify(reply.missing_shards)}`);
  const windows = new Map<number, Fingerprint>();
  for (const row of reply.rows as (Fingerprint & { hour: string })[]) {
    const round = windowOf(Date.parse(row.hour), lastRound);
    const sum = windows.get(round) ?? { count: 0, input_tokens: 0, output_tokens: 0 };
    sum.count += row.count;
    sum.input_tokens += row.input_tokens;
    sum.output_tokens += row.output_tokens;
    windows.set(round, sum);
  }
  return windows;
}

function fingerprintOf(records: Iterable<StoredRecord>): Fingerprint {
  const sum = { count: 0, input_tokens: 0, output_tokens: 0 };
  for (const record of records) {
    sum.count++;
    sum.input_tokens += record.input_tokens;
    sum.output_tokens += record.output_tokens;
  }
  return sum;
}

function treeProblems(node: StatusNode, out: string[]): string[] {
  if (node.state !== 'running' || node.restarts > 0) {
    out.push(`${node.path} is ${node.state} after ${node.restarts} restarts${node.last_error ? ` (${node.last_error})` : ''}`);
  }
  for (const child of node.children ?? []) treeProblems(child, out);
  return out;
}

function contentProblem(record: StoredRecord): string | undefined {
  const parsed = parseCrashRecordId(record.id);
  if (!parsed || parsed.seed !== SEED) return 'not an id of this run';
  const expected = crashRecord(parsed.seed, parsed.round, parsed.n);
  const wanted: Record<string, unknown> = {
    ...expected,
    output_tokens: outputTokensAt(expected.output_tokens, record.version),
    shard: shardOf(expected.user_id, SHARDS),
    cost_source: 'client',
  };
  for (const [key, value] of Object.entries(wanted)) {
    const got = (record as unknown as Record<string, unknown>)[key];
    if (got !== value) return `${key} is ${JSON.stringify(got)}, expected ${JSON.stringify(value)} (version ${record.version})`;
  }
  return undefined;
}

function countSealedFiles(dataDir: string): number {
  let files = 0;
  for (let shard = 0; shard < SHARDS; shard++) {
    try {
      files += readdirSync(join(dataDir, 'shards', String(shard), 'partitions')).filter((name) => name.endsWith('.json.gz')).length;
    } catch {
      // A shard directory not created yet has no files.
    }
  }
  return files;
}

/** What earlier checks found, per window: the records' versions and the window's fingerprint. */
interface Seen {
  versions: Map<number, Map<string, number>>;
  fingerprints: Map<number, Fingerprint>;
}

async function check(dataDir: string, model: Model, seen: Seen, lastRound: number, full: boolean): Promise<Findings> {
  const embedded = new EmbeddedTransport();
  const node = await startNode(crashConfig(dataDir), { embedded, log: silentLogger });
  const names = subjects('usage');
  const call: Call = async (endpoint, body) => {
    const reply = await embedded.request(names.endpoint(endpoint), encode(body), { timeoutMs: 30_000 });
    return decode(reply.data, 'msgpack', { payloadBytesMax: 64 << 20, nestingDepthMax: 64 });
  };
  const findings: Findings = {
    missing: [],
    duplicated: [],
    belowAck: [],
    vanished: [],
    rolledBack: [],
    invented: [],
    inventedVersion: [],
    wrongContent: [],
    unserving: [],
    aggregateDisagrees: [],
    read: 0,
    retried: 0,
    records: 0,
    sealedFiles: countSealedFiles(dataDir),
  };
  try {
    const status = await call('admin.status', {});
    if (!status.ok) findings.unserving.push(`admin.status: ${status.error?.code} ${status.error?.message}`);
    else treeProblems(status.tree as StatusNode, findings.unserving);
    const aggregated = await aggregateWindows(call, lastRound, findings);

    // The last window is new and the one before it changed; any other whose fingerprint moved is read too.
    const toRead = new Set<number>();
    for (let round = 0; round <= lastRound; round++) {
      const unchanged = aggregated !== undefined && seen.fingerprints.has(round) && sameFingerprint(aggregated.get(round), seen.fingerprints.get(round));
      if (full || round >= lastRound - 1 || !unchanged) toRead.add(round);
    }

    const found = new Map<string, StoredRecord>();
    for (const round of toRead) {
      const records = await readWindow(call, round, lastRound, findings);
      const fresh = new Map<string, StoredRecord>();
      for (const record of records) {
        if (found.has(record.id) || fresh.has(record.id)) findings.duplicated.push(record.id);
        else fresh.set(record.id, record);
      }
      for (const [id, record] of fresh) found.set(id, record);
      const fingerprint = fingerprintOf(records);
      if (aggregated && !sameFingerprint(fingerprint, aggregated.get(round))) {
        findings.aggregateDisagrees.push(`hour ${round}: query.records ${JSON.stringify(fingerprint)}, query.aggregate ${JSON.stringify(aggregated.get(round) ?? null)}`);
      }
      seen.fingerprints.set(round, fingerprint);
    }
    findings.read = toRead.size;

    // Versions now: read records, and for windows not read, what was found before (their fingerprint held).
    const versions = new Map<string, number>();
    for (const [round, byId] of seen.versions) if (!toRead.has(round)) for (const [id, version] of byId) versions.set(id, version);
    for (const [id, record] of found) versions.set(id, record.version);
    findings.records = versions.size;

    for (const [id, version] of model.acked) {
      const now = versions.get(id);
      if (now === undefined) findings.missing.push(`${id} (acknowledged at version ${version})`);
      else if (now < version) findings.belowAck.push(`${id}: version ${now}, acknowledged ${version}`);
    }
    for (const round of toRead) {
      for (const [id, version] of seen.versions.get(round) ?? []) {
        const now = versions.get(id);
        if (now === undefined) findings.vanished.push(`${id} (found at version ${version} before)`);
        else if (now < version) findings.rolledBack.push(`${id}: version ${now}, found at ${version} before`);
      }
    }
    for (const record of found.values()) {
      if (!model.sent.has(record.id)) findings.invented.push(record.id);
      const versionMax = (model.tried.get(record.id) ?? 0) + 1;
      if (record.version > versionMax) findings.inventedVersion.push(`${record.id}: version ${record.version}, no update could make more than ${versionMax}`);
      const problem = contentProblem(record);
      if (problem) findings.wrongContent.push(`${record.id}: ${problem}`);
    }

    for (const round of toRead) seen.versions.delete(round);
    for (const record of found.values()) {
      const round = windowOf(record.ts, lastRound);
      let byId = seen.versions.get(round);
      if (!byId) seen.versions.set(round, (byId = new Map()));
      byId.set(record.id, Math.max(byId.get(record.id) ?? 0, record.version));
    }
    return findings;
  } finally {
    await node.stop();
  }
}

// ---------------------------------------------------------------------------

interface Plan {
  runMs: number;
  /** When set, a first fixture of the round is killed this long after it was told to start. */
  startupKillMs?: number;
}

/** Round `round`'s kill times, drawn from its own generator: the same for a seed whatever rounds ran before. */
function planOf(round: number): Plan {
  const random = PLAN.random(round);
  const runMs = RUN_MS_MIN + Math.floor(random() * (RUN_MS_MAX - RUN_MS_MIN + 1));
  const early = random() < STARTUP_KILL_SHARE || round === 1;
  const startupKillMs = Math.floor(random() * 150);
  return early ? { runMs, startupKillMs } : { runMs };
}

/** Round 0's fixture has had an update acknowledged and sealed a file: the floor alone tests both. */
async function workDone(fixture: Fixture, dataDir: string): Promise<void> {
  const exited = () => fixture.child.exitCode !== null || fixture.child.signalCode !== null;
  const probe = () => {
    if (exited()) throw new Error(`fixture round 0 exited (${fixture.child.exitCode ?? fixture.child.signalCode}) before it updated and sealed:\n${fixture.stderr()}`);
    return fixture.lines.some((line) => line.startsWith('upd ')) && countSealedFiles(dataDir) > 0;
  };
  await waitFor('round 0: an acknowledged update (an "upd" line) and a sealed file', probe, {
    deadlineMs: FIXTURE_START_MS_MAX,
    describe: () => ({ updates: fixture.lines.filter((line) => line.startsWith('upd ')).length, sealedFiles: countSealedFiles(dataDir) }),
  });
}

t.test(`SIGKILL while ingesting, round after round on one data directory (seed ${SEED})`, async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'usage-tracker-crash-'));
  const model: Model = { sent: new Set(), acked: new Map(), tried: new Map() };
  const seen: Seen = { versions: new Map(), fingerprints: new Map() };
  const live = new Set<Fixture>();
  const schedule = new Map<number, Plan>();
  const scheduled = (round: number) => schedule.get(round) ?? schedule.set(round, planOf(round)).get(round)!;
  const totals = { kills: 0, startupKills: 0, acks: 0, updates: 0, fullChecks: 0 };
  /** A round's fixtures, spawned while the round before runs, so that loading modules (most of a start) overlaps it. */
  const launch = (round: number): Fixture[] => {
    const count = scheduled(round).startupKillMs !== undefined ? 2 : 1;
    return Array.from({ length: count }, () => {
      const fixture = spawnFixture(dataDir, round);
      live.add(fixture);
      return fixture;
    });
  };
  const finish = async (fixture: Fixture) => {
    const exit = await fixture.kill();
    live.delete(fixture);
    return exit;
  };
  t.teardown(async () => {
    await Promise.all([...live].map((fixture) => fixture.kill()));
    if (t.passing()) {
      rmSync(dataDir, { recursive: true, force: true });
      rmSync(`${dataDir}-backups`, { recursive: true, force: true });
    }
    else t.comment(`data directory kept for inspection: ${dataDir}`);
  });
  const started = Date.now();
  let next = launch(0);
  let lastRound = -1;
  let lastFull = false;
  for (const round of PLAN.rounds()) {
    const plan = scheduled(round);
    lastRound = round;
    const fixtures = next;
    next = [];
    if (plan.startupKillMs !== undefined) {
      // A kill while the shards open: recovery truncates torn tails and removes what an interrupted seal left.
      const early = fixtures.shift()!;
      await early.waitFor('loaded', FIXTURE_START_MS_MAX);
      early.go();
      await sleep(plan.startupKillMs);
      await finish(early);
      absorb(model, early.lines);
      totals.startupKills++;
    }
    const fixture = fixtures.shift()!;
    let exit: { code: number | null; signal: NodeJS.Signals | null };
    try {
      await fixture.waitFor('loaded', FIXTURE_START_MS_MAX);
      fixture.go();
      await fixture.waitFor('ready', FIXTURE_START_MS_MAX);
      if (PLAN.mayRun(round + 1)) next = launch(round + 1);
      if (round === 0) await workDone(fixture, dataDir);
      await sleep(plan.runMs);
    } finally {
      exit = await finish(fixture);
    }
    totals.kills++;
    const log = absorb(model, fixture.lines);
    totals.acks += log.acks;
    totals.updates += log.updates;

    const full = round < 2 || round % FULL_CHECK_EVERY === FULL_CHECK_EVERY - 1 || !PLAN.mayRun(round + 1);
    if (full) totals.fullChecks++;
    lastFull = full;
    const label = `round ${round}: killed ${plan.runMs} ms after ready${plan.startupKillMs !== undefined ? ` (and once ${plan.startupKillMs} ms into a start)` : ''}`;
    const findings = await check(dataDir, model, seen, round, full);
    const none = (list: string[], message: string) =>
      t.strictSame(list.slice(0, REPORTED_MAX), [], `${label}: ${message}`, { total: list.length, seed: SEED, round });
    t.equal(exit.signal, 'SIGKILL', `${label}: the fixture ran until killed`, { stderr: fixture.stderr() });
    t.equal(log.malformed, 0, `${label}: every whole line of the fixture parses`);
    none(findings.missing, 'every acknowledged id is present');
    none(findings.duplicated, 'no id is present twice');
    none(findings.belowAck, 'no version below the acknowledged one');
    none(findings.vanished, 'nothing found after an earlier crash is lost');
    none(findings.rolledBack, 'no version goes down across crashes');
    none(findings.invented, 'no id that was never sent');
    none(findings.inventedVersion, 'no version that no update asked for');
    none(findings.wrongContent, 'every record has the content of its id and version');
    none(findings.unserving, 'every shard serves');
    none(findings.aggregateDisagrees, 'query.aggregate agrees with query.records');
    t.comment(
      `${label}: ${log.acks} acks, ${log.updates} updates, ${[...log.rejected].map(([code, n]) => `${n} rejected ${code}`).join(', ') || 'none rejected'}` +
        `${log.errors.size > 0 ? `, errors ${JSON.stringify([...log.errors])}` : ''}; ${findings.records} records, ` +
        `${findings.read} of ${round + 1} hours read${full ? ' (full check)' : ''}, ${findings.sealedFiles} sealed files` +
        `${findings.retried > 0 ? `, ${findings.retried} queries asked again after a shard's E_TIMEOUT` : ''}`,
    );
    if (!t.passing()) break;
  }
  // A fixture launched ahead for a round the budget did not leave room for never started.
  await Promise.all(next.map(finish));
  if (!lastFull && t.passing()) {
    // The budget ran out while the last round was checked: read every hour once more.
    const findings = await check(dataDir, model, seen, lastRound, true);
    totals.fullChecks++;
    for (const [name, list] of Object.entries(findings)) if (Array.isArray(list)) t.strictSame(list.slice(0, REPORTED_MAX), [], `final full check after round ${lastRound}: no ${name}`, { total: list.length, seed: SEED });
  }
  PLAN.end();
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  t.comment(
    `${totals.kills} kills while ingesting, ${totals.startupKills} while starting, ${totals.acks} acks, ${totals.updates} updates, ` +
      `${totals.fullChecks} full checks in ${seconds} s`,
  );
  t.ok(totals.acks > 0 && totals.updates > 0, 'the fixtures acknowledged records and updates (the test tested something)');
  t.ok(countSealedFiles(dataDir) > 0, 'sealing happened during the run');
});
