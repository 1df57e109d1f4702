// The actor cell and the actor system: bounded mailboxes, one message at a
// time, expected failures versus crashes, ask deadlines that point at their
// caller, refs that survive restarts, and the same ask to an actor on
// another node through the embedded transport.

import t from 'tap';
import { ProtocolError } from '../../protocols/errors.js';
import type { ExitReason } from '../../src/kernel/actor.js';
import type { RemoteSchema } from '../../src/kernel/message-schema.js';
import { ActorSystem } from '../../src/kernel/system.js';
import { silentLogger } from '../../src/log.js';
import { ManualClock } from '../../src/ports/clock.js';
import { EmbeddedTransport } from '../../src/transport/embedded.js';
import { Supervisor } from '../../supervisors/supervisor.js';
import { actorChild } from '../../supervisors/worker.js';
import { waitFor, within } from '../helpers/wait.js';

// ---------------------------------------------------------------- helpers

async function quiet(turns = 20): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

async function until(done: () => boolean, what: string, turns = 2000): Promise<void> {
  for (let i = 0; i < turns; i++) {
    if (done()) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** A promise the test opens by hand. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

/** Settles a promise into a value so a rejection is never unhandled while the test looks elsewhere. */
function settled<T>(promise: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: ProtocolError }> {
  return promise.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error: error as ProtocolError }),
  );
}

/** The error a promise rejects with; fails the test if it resolves. */
async function errorOf(promise: Promise<unknown>): Promise<ProtocolError> {
  const outcome = await settled(promise);
  if (outcome.ok) throw new Error(`expected a rejection, got ${JSON.stringify(outcome.value)}`);
  return outcome.error;
}

function localSystem(clock = new ManualClock()): { system: ActorSystem; clock: ManualClock } {
  return { system: new ActorSystem({ nodeId: 'n1', log: silentLogger, clock }), clock };
}

// ---------------------------------------------------------------- mailbox and ordering

t.test('a full mailbox answers E_UNAVAILABLE; nothing refused is ever processed', async (t) => {
  const { system } = localSystem();
  const blocker = gate();
  const seen: string[] = [];
  system.spawn<string, string>(
    'n1/slow',
    {
      async receive(message) {
        seen.push(message);
        if (message === 'm1') await blocker.promise;
        return `done ${message}`;
      },
    },
    { mailboxCapacity: 2 },
  );
  const ref = system.ref<string, string>('n1/slow');
  const first = settled(ref.ask('m1'));
  await quiet(2);
  t.same(seen, ['m1'], 'the actor is busy with m1 and its mailbox is empty');

  const second = settled(ref.ask('m2'));
  ref.tell('m3');
  t.equal(system.cellAt('n1/slow')?.mailboxDepth, 2);
  t.throws(() => ref.tell('m4'), { name: 'ProtocolError', code: 'E_UNAVAILABLE', message: /mailbox of n1\/slow is full \(2 messages\)/ });
  const refused = await settled(ref.ask('m5'));
  t.equal(refused.ok, false);
  if (!refused.ok) {
    t.equal(refused.error.code, 'E_UNAVAILABLE');
    t.same(refused.error.details, { mailbox_capacity: 2 });
  }

  blocker.open();
  t.same(await first, { ok: true, value: 'done m1' });
  t.same(await second, { ok: true, value: 'done m2' });
  await quiet();
  t.same(seen, ['m1', 'm2', 'm3'], 'refused messages never run');
  t.equal(await ref.ask('m6'), 'done m6', 'the mailbox accepts again once drained');
  t.equal(system.cellAt('n1/slow')?.lifecycle, 'running');
});

t.test('messages run one at a time and in order, even with async receive', async (t) => {
  const { system } = localSystem();
  let active = 0;
  let maxActive = 0;
  const log: number[] = [];
  system.spawn<number, number>(
    'n1/serial',
    {
      async receive(n) {
        active++;
        maxActive = Math.max(maxActive, active);
        log.push(n);
        // Vary how long each message takes: a later one finishing first would show interleaving.
        if (n % 3 === 0) await new Promise<void>((resolve) => setImmediate(resolve));
        else for (let i = 0; i < (n % 7); i++) await Promise.resolve();
        log.push(-n);
        active--;
        return n * 10;
      },
    },
    { mailboxCapacity: 200 },
  );
  const ref = system.ref<number, number>('n1/serial');
  const answers: Promise<number>[] = [];
  for (let n = 1; n <= 100; n++) {
    if (n % 4 === 0) ref.tell(n);
    else answers.push(ref.ask(n));
  }
  const values = await Promise.all(answers);
  await until(() => log.length === 200, 'all processed');
  t.equal(maxActive, 1, 'never two messages at once');
  const expected: number[] = [];
  for (let n = 1; n <= 100; n++) expected.push(n, -n);
  t.same(log, expected, 'each message finishes before the next starts, in send order');
  t.same(
    values,
    Array.from({ length: 100 }, (_, i) => i + 1)
      .filter((n) => n % 4 !== 0)
      .map((n) => n * 10),
  );
  t.equal(system.cellAt('n1/serial')?.processed, 100);
});

// ---------------------------------------------------------------- failures

t.test('a thrown ProtocolError reaches the asker and the actor keeps running', async (t) => {
  const { system } = localSystem();
  const exits: ExitReason[] = [];
  let state = 0;
  system.spawn<string, number>(
    'n1/strict',
    {
      receive(message) {
        if (message === 'bad') throw new ProtocolError('E_VALIDATION', 'count must be positive', { field: 'count', details: { min: 1 } });
        return ++state;
      },
    },
    { onExit: (reason) => exits.push(reason) },
  );
  const ref = system.ref<string, number>('n1/strict');
  t.equal(await ref.ask('inc'), 1);
  const error = await errorOf(ref.ask('bad'));
  t.ok(error instanceof ProtocolError);
  t.match(error, { code: 'E_VALIDATION', field: 'count', message: 'count must be positive', details: { min: 1 } });
  ref.tell('bad');
  t.equal(await ref.ask('inc'), 2, 'state survived the expected failures');
  t.same(exits, []);
  t.equal(system.cellAt('n1/strict')?.lifecycle, 'running');
});

t.test('a plain thrown Error crashes the actor: E_INTERNAL to its asker, E_UNAVAILABLE to the queue', async (t) => {
  const { system } = localSystem();
  const exits: ExitReason[] = [];
  const blocker = gate();
  const seen: string[] = [];
  const kaput = new Error('kaput');
  system.spawn<string, string>(
    'n1/fragile',
    {
      async receive(message) {
        seen.push(message);
        if (message === 'explode') {
          await blocker.promise;
          throw kaput;
        }
        return 'fine';
      },
    },
    { onExit: (reason) => exits.push(reason) },
  );
  const ref = system.ref<string, string>('n1/fragile');
  const cell = system.cellAt('n1/fragile');
  const crashing = settled(ref.ask('explode'));
  await quiet(2);
  const queued = [settled(ref.ask('q1')), settled(ref.ask('q2'))];
  blocker.open();

  const crash = await crashing;
  t.equal(crash.ok, false);
  if (!crash.ok) {
    t.equal(crash.error.code, 'E_INTERNAL');
    t.match(crash.error.message, /n1\/fragile crashed/);
    t.equal(crash.error.cause, kaput, 'the original error is kept as the cause');
  }
  for (const result of await Promise.all(queued)) {
    t.equal(result.ok, false);
    if (!result.ok) t.equal(result.error.code, 'E_UNAVAILABLE');
  }
  t.same(seen, ['explode'], 'queued messages never ran');
  t.equal(exits.length, 1);
  t.equal(exits[0]?.kind, 'error');
  t.equal(exits[0]?.kind === 'error' ? exits[0].error : undefined, kaput);
  t.equal(cell?.lifecycle, 'failed');
  t.equal(system.cellAt('n1/fragile'), undefined, 'the path is unbound');
  t.throws(() => ref.tell('after'), { code: 'E_UNAVAILABLE' });
  await t.rejects(ref.ask('after'), { code: 'E_UNAVAILABLE', message: /no actor is running at n1\/fragile/ });
});

t.test('a synchronous receive that throws crashes the actor too', async (t) => {
  const { system } = localSystem();
  const exits: ExitReason[] = [];
  system.spawn<string, string>(
    'n1/sync',
    {
      receive() {
        throw new TypeError('undefined is not a function');
      },
    },
    { onExit: (reason) => exits.push(reason) },
  );
  await t.rejects(system.ref('n1/sync').ask('x'), { code: 'E_INTERNAL' });
  t.same(
    exits.map((e) => e.kind),
    ['error'],
  );
});

// ---------------------------------------------------------------- stop and kill

t.test('stop lets queued messages finish, runs the stopped hook, then exits normally', async (t) => {
  const { system } = localSystem();
  const blocker = gate();
  const order: string[] = [];
  const exits: ExitReason[] = [];
  const cell = system.spawn<string, string>(
    'n1/graceful',
    {
      async receive(message) {
        if (message === 'first') await blocker.promise;
        order.push(message);
        return message;
      },
      stopped() {
        order.push('stopped-hook');
      },
    },
    { onExit: (reason) => exits.push(reason) },
  );
  const ref = system.ref<string, string>('n1/graceful');
  const answers = Promise.all([ref.ask('first'), ref.ask('second')]);
  await quiet(2);
  const stopping = cell.stop();
  t.throws(() => ref.tell('late'), { code: 'E_UNAVAILABLE', message: /stopping/ }, 'no new messages while stopping');
  blocker.open();
  await stopping;
  t.same(await answers, ['first', 'second']);
  t.same(order, ['first', 'second', 'stopped-hook']);
  t.same(exits, [{ kind: 'normal' }]);
  t.equal(cell.lifecycle, 'stopped');
});

t.test('kill abandons the actor: queued askers get E_UNAVAILABLE, exit kind killed', async (t) => {
  const { system } = localSystem();
  const exits: ExitReason[] = [];
  const cell = system.spawn<string, string>(
    'n1/doomed',
    { receive: () => new Promise<string>(() => undefined) },
    { onExit: (reason) => exits.push(reason) },
  );
  const ref = system.ref<string, string>('n1/doomed');
  void settled(ref.ask('hang'));
  await quiet(2);
  const queued = settled(ref.ask('queued'));
  cell.kill();
  const result = await queued;
  t.equal(result.ok ? 'resolved' : result.error.code, 'E_UNAVAILABLE');
  t.same(exits, [{ kind: 'killed' }]);
  t.equal(system.cellAt('n1/doomed'), undefined);
  cell.kill();
  t.equal(exits.length, 1, 'killing twice exits once');
});

t.test('kill during a pending stop: the stopped hook does not run afterwards', async (t) => {
  const { system } = localSystem();
  let hookRan = false;
  const exits: ExitReason[] = [];
  const cell = system.spawn<string, string>(
    'n1/stuck',
    {
      receive: () => new Promise<string>(() => undefined),
      stopped: () => void (hookRan = true),
    },
    { onExit: (reason) => exits.push(reason) },
  );
  void settled(system.ref<string, string>('n1/stuck').ask('hang'));
  await quiet(2);
  const stopping = cell.stop();
  cell.kill();
  await stopping;
  await quiet();
  t.same(exits, [{ kind: 'killed' }]);
  t.notOk(hookRan, 'nothing more runs after kill');
});

t.test('a stopped hook that throws still ends the actor and frees its path', async (t) => {
  const { system } = localSystem();
  const exits: ExitReason[] = [];
  const cell = system.spawn<string, string>(
    'n1/leaky',
    {
      receive: (message) => message,
      stopped() {
        throw new Error('flush failed');
      },
    },
    { onExit: (reason) => exits.push(reason) },
  );
  const stopped = await cell.stop().then(
    () => 'resolved',
    (error: unknown) => `rejected: ${(error as Error).message}`,
  );
  t.ok(stopped === 'resolved' || stopped === 'rejected: flush failed');
  t.equal(exits.length, 1, 'onExit is called once');
  t.not(cell.lifecycle, 'stopping', 'the actor does not stay stopping forever');
  t.doesNotThrow(() => system.spawn('n1/leaky', { receive: (message: string) => message }), 'the path can be spawned again');
});

// ---------------------------------------------------------------- ask deadlines

function askFromCallerXyz(ref: { ask(message: string, options: { timeoutMs: number }): Promise<unknown> }): Promise<unknown> {
  return ref.ask('never answered', { timeoutMs: 1000 });
}

t.test('an ask that times out rejects with E_TIMEOUT and a stack that points at its caller', async (t) => {
  const { system, clock } = localSystem();
  system.spawn<string, string>('n1/silent', { receive: () => new Promise<string>(() => undefined) });
  const ref = system.ref<string, string>('n1/silent');
  const result = settled(askFromCallerXyz(ref));
  let done = false;
  void result.then(() => (done = true));
  await clock.advance(999);
  t.notOk(done, 'not before the deadline');
  await clock.advance(1);
  const outcome = await result;
  t.equal(outcome.ok, false);
  if (!outcome.ok) {
    t.equal(outcome.error.code, 'E_TIMEOUT');
    t.match(outcome.error.message, /ask to n1\/silent timed out after 1000 ms/);
    t.match(outcome.error.stack, /^ProtocolError: ask to n1\/silent timed out/);
    t.match(outcome.error.stack, /askFromCallerXyz/, 'the stack names the function that asked');
    t.notMatch(outcome.error.stack, /callerStack|PendingAsk|src\/kernel\//, 'kernel frames are left out');
  }
});

t.test('an answer before the deadline wins and the timer is cancelled', async (t) => {
  const { system, clock } = localSystem();
  system.spawn<string, string>('n1/quick', { receive: (m) => m.toUpperCase() });
  t.equal(await system.ref<string, string>('n1/quick').ask('hi', { timeoutMs: 10 }), 'HI');
  t.equal(clock.pendingTimers, 0, 'no timer is left behind');
});

// ---------------------------------------------------------------- refs and restarts

t.test('a ref survives a restart of its actor', async (t) => {
  const clock = new ManualClock();
  const system = new ActorSystem({ nodeId: 'n1', log: silentLogger, clock });
  let generation = 0;
  const sup = new Supervisor({
    path: 'n1/sup',
    system,
    children: [
      actorChild<string, string>({
        id: 'counter',
        behavior: () => {
          const mine = ++generation;
          let count = 0;
          return {
            receive(message) {
              if (message === 'crash') throw new Error('counter broke');
              count++;
              return `gen${mine}:${count}`;
            },
          };
        },
      }),
    ],
    flags: { intensity: 5, periodMs: 10_000, backoffBaseMs: 100, backoffMaxMs: 100 },
  });
  await sup.start();
  const ref = system.ref<string, string>('n1/sup/counter');
  t.equal(await ref.ask('inc'), 'gen1:1');
  t.equal(await ref.ask('inc'), 'gen1:2');
  await t.rejects(ref.ask('crash'), { code: 'E_INTERNAL' });
  await t.rejects(ref.ask('inc'), { code: 'E_UNAVAILABLE' }, 'during the backoff nobody is home');
  await clock.advance(100);
  await until(() => system.cellAt('n1/sup/counter') !== undefined, 'restart');
  t.equal(await ref.ask('inc'), 'gen2:1', 'the same ref reaches the new incarnation, with fresh state');
  ref.tell('inc');
  t.equal(await ref.ask('inc'), 'gen2:3', 'tell works through the old ref as well');
  await sup.stop();
});

// ---------------------------------------------------------------- remote addressing

function twoNodes(): { n1: ActorSystem; n2: ActorSystem; transport: EmbeddedTransport } {
  const transport = new EmbeddedTransport();
  const n1 = new ActorSystem({ nodeId: 'n1', log: silentLogger, transport, askTimeoutMs: 2000 });
  const n2 = new ActorSystem({ nodeId: 'n2', log: silentLogger, transport, askTimeoutMs: 2000 });
  n2.listen();
  return { n1, n2, transport };
}

/** Takes any body from the network as it is: these tests are about the transport, not about shapes. */
const anyBody: RemoteSchema<never> = { parse: (body) => body as never };

t.test('a remote ask works exactly like a local ask', async (t) => {
  const { n1, n2 } = twoNodes();
  let count = 0;
  const behavior = {
    receive(message: { op: string; value?: unknown }) {
      if (message.op === 'echo') return { echoed: message.value, count: ++count };
      if (message.op === 'refuse') throw new ProtocolError('E_CONFLICT', 'version is stale', { field: 'expected_version', details: { current_version: 7 } });
      if (message.op === 'crash') throw new Error('remote kaput');
      return null;
    },
  };
  n2.spawn('n2/echo', behavior, { remote: anyBody });
  const remote = n1.ref<{ op: string; value?: unknown }, unknown>('n2/echo');
  const local = n2.ref<{ op: string; value?: unknown }, unknown>('n2/echo');
  t.equal(remote.path, 'n2/echo');

  const value = { text: 'héllo', n: 42, list: [1, 2.5, -3], nested: { ok: true, none: null } };
  t.same(await remote.ask({ op: 'echo', value }), { echoed: value, count: 1 });
  t.same(await local.ask({ op: 'echo', value }), { echoed: value, count: 2 });
  t.equal(await remote.ask({ op: 'other' }), null);

  const remoteError = await errorOf(remote.ask({ op: 'refuse' }));
  const localError = await errorOf(local.ask({ op: 'refuse' }));
  t.ok(remoteError instanceof ProtocolError);
  for (const key of ['code', 'message', 'field'] as const) t.equal(remoteError[key], localError[key], `same ${key} remotely`);
  t.same(remoteError.details, { current_version: 7 });

  remote.tell({ op: 'echo', value: 'told' });
  await until(() => count === 3, 'remote tell delivered');

  const crash = await errorOf(remote.ask({ op: 'crash' }));
  t.equal(crash.code, 'E_INTERNAL');
  await t.rejects(remote.ask({ op: 'echo' }), { code: 'E_UNAVAILABLE' }, 'the crashed actor is gone remotely too');
});

t.test('a remote ask that times out points at its caller', async (t) => {
  // The caller's deadline runs on the transport's real timer; what is checked
  // is the answer and that it names the caller's 1000 ms (not n1's 2000 ms
  // default), never how long it took. The local test above pins "not before
  // the deadline" on a manual clock.
  const { n1, n2 } = twoNodes();
  n2.spawn('n2/silent', { receive: () => new Promise<never>(() => undefined) }, { remote: anyBody });
  const ref = n1.ref<string, string>('n2/silent');
  const outcome = await within('the remote ask to n2/silent to time out', settled(askFromCallerXyz(ref)));
  t.equal(outcome.ok, false);
  if (!outcome.ok) {
    t.equal(outcome.error.code, 'E_TIMEOUT');
    t.match(outcome.error.message, /ask to n2\/silent timed out after 1000 ms/);
    t.match(outcome.error.stack, /askFromCallerXyz/);
  }
});

t.test("a remote ask honours the caller's timeoutMs, as a local ask does", async (t) => {
  // n2's own default ask timeout is short and runs on a clock the test moves;
  // the caller asks for far longer, and the answer waits on a gate.
  const transport = new EmbeddedTransport();
  const clock = new ManualClock();
  const n1 = new ActorSystem({ nodeId: 'n1', log: silentLogger, transport, askTimeoutMs: 100 });
  const n2 = new ActorSystem({ nodeId: 'n2', log: silentLogger, transport, askTimeoutMs: 100, clock });
  await n2.listen();
  const received: string[] = [];
  let answer = gate();
  n2.spawn<string, string>('n2/slow', {
    async receive(message) {
      received.push(message);
      await answer.promise;
      return `slow ${message}`;
    },
  }, { remote: anyBody });
  const callerTimeoutMs = 60_000;
  const askThenPassDefault = async (ref: { ask(message: string, options: { timeoutMs: number }): Promise<string> }, message: string) => {
    const reply = settled(ref.ask(message, { timeoutMs: callerTimeoutMs }));
    let done = false;
    void reply.then(() => (done = true));
    await waitFor(`n2/slow to receive the ${message} ask`, () => received.includes(message), { describe: () => received });
    await clock.advance(callerTimeoutMs - 1);
    t.notOk(done, `${message}ly, still waiting past n2's 100 ms default, just before the caller's deadline`);
    answer.open();
    const outcome = await within(`the ${message} reply from n2/slow`, reply);
    answer = gate();
    return outcome.ok ? outcome.value : outcome.error.code;
  };
  t.equal(await askThenPassDefault(n2.ref<string, string>('n2/slow'), 'local'), 'slow local');
  t.equal(await askThenPassDefault(n1.ref<string, string>('n2/slow'), 'remote'), 'slow remote');
});

t.test('asking a node that does not listen gives E_UNAVAILABLE', async (t) => {
  // At once, not at the deadline: the ask's deadline is ten minutes, far past
  // what `within` waits, so an answer only at the deadline fails the test.
  const { n1 } = twoNodes();
  await t.rejects(within('E_UNAVAILABLE for n3/anything, well before its ten-minute ask deadline', n1.ref('n3/anything').ask('hi', { timeoutMs: 600_000 })), {
    code: 'E_UNAVAILABLE',
    message: /node n3 does not answer for n3\/anything/,
  });
  const lonely = new ActorSystem({ nodeId: 'n9', log: silentLogger });
  await t.rejects(lonely.ref('n2/echo').ask('hi'), { code: 'E_UNAVAILABLE', message: /no transport/ });
  t.throws(() => lonely.ref('n2/echo').tell('hi'), { code: 'E_UNAVAILABLE' });
});

t.test('asking a missing actor on a listening node gives E_UNAVAILABLE', async (t) => {
  // The code answers E_UNAVAILABLE (nothing running at the path, as for a
  // local ask), not E_NOT_FOUND: the path may come back after a restart.
  const { n1 } = twoNodes();
  await t.rejects(n1.ref('n2/missing').ask('hi'), { code: 'E_UNAVAILABLE', message: /no actor is running at n2\/missing/ });
});

t.test('a body from the network reaches an actor only through its remote schema', async (t) => {
  const { n1, n2 } = twoNodes();
  const seen: unknown[] = [];
  const schema: RemoteSchema<{ n: number }> = {
    parse(body) {
      const n = (body as { n?: unknown } | null)?.n;
      if (typeof n !== 'number') throw new ProtocolError('E_BAD_REQUEST', 'n must be a number', { field: 'n' });
      return { n };
    },
  };
  n2.spawn('n2/counted', { receive: (m: { n: number }) => (seen.push(m), m.n) }, { remote: schema });
  n2.spawn('n2/private', { receive: (m: unknown) => void seen.push(m) });
  const counted = n1.ref<unknown, number>('n2/counted');
  await t.rejects(counted.ask({ n: 'x' }), { code: 'E_BAD_REQUEST', field: 'n' }, 'a body the schema refuses is answered E_BAD_REQUEST');
  counted.tell({ n: null });
  await t.rejects(n1.ref('n2/private').ask({}), { code: 'E_BAD_REQUEST', field: 'to', message: /n2\/private takes no messages from the network/ }, 'no schema: refused');
  n1.ref('n2/private').tell({});
  t.equal(await counted.ask({ n: 3, extra: 'dropped by the schema' }), 3, 'a good body still arrives, as the schema returned it');
  t.same(seen, [{ n: 3 }], 'no refused body reached an actor');
  t.same(await n2.ref<unknown, unknown>('n2/private').ask('local'), undefined, 'local asks are not checked');
  t.same(seen, [{ n: 3 }, 'local']);
});

t.test('after unlisten a node no longer answers', async (t) => {
  const { n1, n2 } = twoNodes();
  n2.spawn('n2/echo', { receive: (m: string) => m }, { remote: anyBody });
  t.equal(await n1.ref<string, string>('n2/echo').ask('a'), 'a');
  n2.unlisten();
  await t.rejects(n1.ref('n2/echo').ask('b'), { code: 'E_UNAVAILABLE' });
});

t.test('an actor cannot be spawned on another node or twice at one path', async (t) => {
  const { system } = localSystem();
  t.throws(() => system.spawn('n2/x', { receive: () => 1 }), /cannot spawn n2\/x on node n1/);
  system.spawn('n1/x', { receive: () => 1 });
  t.throws(() => system.spawn('n1/x', { receive: () => 2 }), /already running at n1\/x/);
  t.throws(() => new ActorSystem({ nodeId: 'bad node', log: silentLogger }), /node id/);
});
