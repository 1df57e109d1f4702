// Log lines as an operator sees them: JSON objects when piped or asked,
// readable lines on a terminal (or when asked), every line naming its actor,
// written before the call returns so a process that exits right after a
// fatal line still shows it.

import { execFileSync, spawnSync } from 'node:child_process';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { ProtocolError } from '../../protocols/errors.js';
import { actorLogger, chooseLogFormat, createLogger, type LogOptions } from '../../src/log.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const FIXTURE = 'test/unit/fixture-log.ts';
const ANSI = /\x1b\[[0-9;]*m/g;
const PRETTY_LINE = /^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] (TRACE|DEBUG|INFO|WARN|ERROR|FATAL): /;

/** A destination that keeps what it is given, synchronously. */
function sink(): { stream: Writable; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      chunks.push(chunk.toString());
      done();
    },
  });
  return { stream, text: () => chunks.join('') };
}

function logTo(options: LogOptions): { log: ReturnType<typeof createLogger>; text: () => string } {
  const { stream, text } = sink();
  return { log: createLogger({ ...options, destination: stream }), text };
}

t.test('auto is pretty on a terminal and JSON otherwise; json and pretty are what they say', async (t) => {
  t.equal(chooseLogFormat('auto', true), 'pretty');
  t.equal(chooseLogFormat('auto', false), 'json');
  t.equal(chooseLogFormat('json', true), 'json');
  t.equal(chooseLogFormat('json', false), 'json');
  t.equal(chooseLogFormat('pretty', true), 'pretty');
  t.equal(chooseLogFormat('pretty', false), 'pretty');
});

t.test('json: one object a line, with level, time, actor and fields', async (t) => {
  const { log, text } = logTo({ format: 'json' });
  actorLogger(log, 'n1/api').info({ endpoint: 'ingest' }, 'request refused');
  const lines = text().split('\n').filter(Boolean);
  t.equal(lines.length, 1, 'written before info() returned');
  const line = JSON.parse(lines[0]!) as Record<string, unknown>;
  t.match(line, { level: 30, actor: 'n1/api', endpoint: 'ingest', msg: 'request refused' });
  t.type(line.time, 'number');
  t.notOk('pid' in line || 'hostname' in line, 'no pid or hostname');
});

t.test('pretty: time, level, actor and message on one line, the other fields indented under it', async (t) => {
  const { log, text } = logTo({ format: 'pretty', colorize: false });
  actorLogger(log, 'n1/shards/partition-3').warn({ shard: 3, files: 2 }, 'seal failed; retrying');
  log.info('node started');
  const lines = text().split('\n');
  t.match(lines[0], PRETTY_LINE);
  t.match(lines[0], /\] WARN: n1\/shards\/partition-3: seal failed; retrying$/);
  t.same(lines.slice(1, 3), ['    shard: 3', '    files: 2']);
  t.match(lines[3], /\] INFO: node started$/, 'a line without an actor has none');
  t.notMatch(text(), ANSI, 'no colours unless asked');
  t.notMatch(text(), /^\{/m, 'no JSON');
});

t.test('pretty: an error shows its message and stack', async (t) => {
  const { log, text } = logTo({ format: 'pretty', colorize: false });
  log.error({ err: new Error('disk full') }, 'write failed');
  t.match(text(), /\] ERROR: write failed\n\s+err: \{/);
  t.match(text(), /"message": "disk full"/);
  t.match(text(), /Error: disk full\n\s+at /);
});

t.test('pretty with colours, as on a terminal', async (t) => {
  const { log, text } = logTo({ format: 'auto', isTTY: true, colorize: true });
  log.info('hello');
  t.match(text(), ANSI);
  t.match(text().replace(ANSI, ''), /\] INFO: hello\n$/);
});

t.test('the level filters in both forms', async (t) => {
  for (const format of ['json', 'pretty'] as const) {
    const { log, text } = logTo({ format, level: 'warn', colorize: false });
    log.info('hidden');
    log.warn('shown');
    t.notMatch(text(), /hidden/, format);
    t.match(text(), /shown/, format);
  }
});

const run = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', FIXTURE, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });

t.test('a process with stdout on a pipe logs JSON under auto, and every line is out before it exits', async (t) => {
  const result = run(['auto']);
  t.equal(result.status, 0, result.stderr);
  const lines = result.stdout.split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>);
  t.match(lines, [{ actor: 'n1/shards/partition-0', msg: 'sealed 3 records', shard: 0 }, { level: 60, msg: 'last words before exit' }]);
});

t.test('a process with stdout on a pipe logs readable lines when asked, nothing lost at exit', async (t) => {
  const result = run(['pretty']);
  t.equal(result.status, 0, result.stderr);
  const lines = result.stdout.split('\n');
  t.match(lines[0], /\] INFO: n1\/shards\/partition-0: sealed 3 records$/);
  t.match(result.stdout, /\] FATAL: last words before exit\n$/);
  t.notMatch(result.stdout, ANSI, 'no colours into a pipe');
});

const hasScript = (() => {
  try {
    execFileSync('script', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

t.test('a process with stdout on a terminal logs readable, coloured lines under auto', { skip: hasScript ? false : 'util-linux script(1) is not installed' }, async (t) => {
  // script(1) gives the child a pseudo-terminal and copies what it prints to our pipe.
  const command = `${JSON.stringify(process.execPath)} --import tsx ${FIXTURE} auto`;
  const result = spawnSync('script', ['-qec', command, '/dev/null'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000, env: { ...process.env, NO_COLOR: '' } });
  t.equal(result.status, 0, result.stderr);
  const plain = result.stdout.replace(ANSI, '').replace(/\r/g, '');
  t.match(result.stdout, ANSI, 'coloured');
  t.match(plain, /\] INFO: n1\/shards\/partition-0: sealed 3 records\n\s+shard: 0\n/);
  t.match(plain, /\] FATAL: last words before exit\n/);
  t.notMatch(plain, /"msg"/, 'no JSON');
});

t.test("an error the caller caused is logged without a stack; the node's own errors keep theirs", async (t) => {
  for (const format of ['json', 'pretty'] as const) {
    const { log, text } = logTo({ format, colorize: false });
    log.warn({ err: new ProtocolError('E_VALIDATION', '/srv/restored exists; restore into a new directory', { field: 'target_dir' }) }, 'request refused');
    const refused = text();
    t.match(refused, /E_VALIDATION/, `${format}: the code is there`);
    t.match(refused, /restore into a new directory/, `${format}: so is the message`);
    t.notMatch(refused, /\n\s+at |"stack"/, `${format}: no stack`);
    log.error({ err: new ProtocolError('E_INTERNAL', 'actor crashed') }, 'request failed');
    log.error({ err: new TypeError('records is not iterable') }, 'child crashed');
    const [, internal, crash] = text().split(/(?=\{"level"|\[\d{4}-)/);
    // A stack's first frame: after an escaped newline in JSON, a real one in pretty lines.
    t.match(internal, /ProtocolError: actor crashed(\\n|\n)\s+at /, `${format}: E_INTERNAL keeps its stack`);
    t.match(crash, /TypeError: records is not iterable(\\n|\n)\s+at /, `${format}: so does any other error`);
  }
});
