// Supervisor behaviour: strategies, restart types, intensity and escalation,
// backoff, ordered start and stop, shutdown timeouts, spec validation and the
// status tree. Timers run on a ManualClock so every delay is exact.

import t from 'tap';
import { ProtocolError } from '../../protocols/errors.js';
import type { ExitReason } from '../../src/kernel/actor.js';
import { ActorSystem } from '../../src/kernel/system.js';
import { silentLogger } from '../../src/log.js';
import { ManualClock } from '../../src/ports/clock.js';
import type { ChildSpec, RunningChild, StartContext, SupervisorFlags } from '../../supervisors/spec.js';
import { renderStatusTree, type StatusNode } from '../../supervisors/status.js';
import { Supervisor, supervisorChild, type SupervisorEvent } from '../../supervisors/supervisor.js';
import { actorChild } from '../../supervisors/worker.js';

// ---------------------------------------------------------------- helpers

/** Lets promise chains and immediates run until `done` holds (bounded). */
async function until(done: () => boolean, what: string, turns = 2000): Promise<void> {
  for (let i = 0; i < turns; i++) {
    if (done()) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** A few turns of the event loop, for asserting that something did NOT happen. */
async function quiet(turns = 30): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

interface ProbeOptions {
  restart?: ChildSpec['restart'];
  shutdownMs?: ChildSpec['shutdownMs'];
  /** Makes the stop of this child never resolve. */
  hangOnStop?: boolean;
  /** Makes start throw this error (from the given start number on, 1-based). */
  failStart?: { from: number; error: Error };
  /** Custom stop: returns the promise the child's stop resolves with. */
  stopWith?: () => Promise<void>;
}

/** A hand-made child that records what the supervisor does to it. */
class Probe {
  starts = 0;
  stops = 0;
  kills = 0;
  /** Incarnation of the currently running instance (0 when none). */
  live = 0;
  private exits: ((reason: ExitReason) => void)[] = [];
  readonly spec: ChildSpec;

  constructor(
    readonly id: string,
    private readonly journal: string[],
    options: ProbeOptions = {},
  ) {
    const spec: ChildSpec = {
      id,
      start: (ctx) => this.start(ctx, options),
    };
    if (options.restart !== undefined) spec.restart = options.restart;
    if (options.shutdownMs !== undefined) spec.shutdownMs = options.shutdownMs;
    this.spec = spec;
  }

  private start(ctx: StartContext, options: ProbeOptions): RunningChild {
    this.starts++;
    if (options.failStart && this.starts >= options.failStart.from) {
      this.journal.push(`start-failed:${this.id}`);
      throw options.failStart.error;
    }
    const incarnation = this.starts;
    this.live = incarnation;
    this.exits[incarnation] = (reason) => ctx.exit(reason);
    this.journal.push(`start:${this.id}`);
    return {
      stop: () => {
        this.stops++;
        this.journal.push(`stop:${this.id}`);
        if (options.hangOnStop) return new Promise<void>(() => undefined);
        const done = options.stopWith ? options.stopWith() : Promise.resolve();
        return done.then(() => {
          if (this.live === incarnation) this.live = 0;
        });
      },
      kill: () => {
        this.kills++;
        this.journal.push(`kill:${this.id}`);
        if (this.live === incarnation) this.live = 0;
      },
      status: () => ({ detail: { incarnation } }),
    };
  }

  /** The running incarnation reports a crash. */
  crash(message = `boom in ${this.id}`): void {
    const exit = this.exits[this.live];
    if (!exit) throw new Error(`${this.id} is not running`);
    this.live = 0;
    exit({ kind: 'error', error: new Error(message) });
  }

  /** The running incarnation reports a normal end. */
  finish(): void {
    const exit = this.exits[this.live];
    if (!exit) throw new Error(`${this.id} is not running`);
    this.live = 0;
    exit({ kind: 'normal' });
  }
}

interface Harness {
  clock: ManualClock;
  system: ActorSystem;
  journal: string[];
  events: SupervisorEvent[];
  exits: ExitReason[];
  sup: Supervisor;
}

function harness(children: (journal: string[]) => ChildSpec[], flags: Partial<SupervisorFlags>, path = 'n1/root'): Harness {
  const clock = new ManualClock();
  const system = new ActorSystem({ nodeId: 'n1', log: silentLogger, clock });
  const journal: string[] = [];
  const events: SupervisorEvent[] = [];
  const exits: ExitReason[] = [];
  const sup = new Supervisor({
    path,
    system,
    children: children(journal),
    flags,
    onExit: (reason) => exits.push(reason),
    onEvent: (event) => events.push(event),
  });
  return { clock, system, journal, events, exits, sup };
}

const NO_BACKOFF: Partial<SupervisorFlags> = { intensity: 10, periodMs: 10_000, backoffBaseMs: 0, backoffMaxMs: 0 };

function childStatus(root: StatusNode, id: string): StatusNode | undefined {
  return root.children?.find((child) => child.path.endsWith(`/${id}`));
}

// ---------------------------------------------------------------- strategies

t.test('one_for_one restarts only the crashed child', async (t) => {
  let probes: Probe[] = [];
  const h = harness((journal) => (probes = ['a', 'b', 'c'].map((id) => new Probe(id, journal))).map((p) => p.spec), {
    ...NO_BACKOFF,
    strategy: 'one_for_one',
  });
  const [a, b, c] = probes as [Probe, Probe, Probe];
  await h.sup.start();
  t.same(h.journal, ['start:a', 'start:b', 'start:c'], 'children start in order');
  h.journal.length = 0;

  b.crash();
  await until(() => b.starts === 2 && b.live === 2, 'b restarted');
  await quiet();
  t.same(h.journal, ['start:b'], 'nothing but b was stopped or started');
  t.same([a.starts, b.starts, c.starts], [1, 2, 1]);
  t.same([a.live, c.live], [1, 1], 'a and c kept their first incarnation');
  const status = h.sup.status();
  t.same(status.children?.map((n) => n.restarts), [0, 1, 0]);
  t.equal(childStatus(status, 'b')?.last_error, 'boom in b');
  await h.sup.stop();
});

t.test('one_for_all stops the others in reverse and restarts everyone in order', async (t) => {
  let probes: Probe[] = [];
  const h = harness((journal) => (probes = ['a', 'b', 'c'].map((id) => new Probe(id, journal))).map((p) => p.spec), {
    ...NO_BACKOFF,
    strategy: 'one_for_all',
  });
  const [a, b, c] = probes as [Probe, Probe, Probe];
  await h.sup.start();
  h.journal.length = 0;

  b.crash();
  await until(() => c.starts === 2, 'c restarted');
  await quiet();
  t.same(h.journal, ['stop:c', 'stop:a', 'start:a', 'start:b', 'start:c']);
  t.same([a.starts, b.starts, c.starts], [2, 2, 2]);
  t.same([a.live, b.live, c.live], [2, 2, 2], 'every child runs its second incarnation');
  t.equal(b.stops, 0, 'the crashed child is not stopped again');
  await h.sup.stop();
});

t.test('rest_for_one restarts the crashed child and those started after it', async (t) => {
  let probes: Probe[] = [];
  const h = harness((journal) => (probes = ['a', 'b', 'c', 'd'].map((id) => new Probe(id, journal))).map((p) => p.spec), {
    ...NO_BACKOFF,
    strategy: 'rest_for_one',
  });
  const [a, b, c, d] = probes as [Probe, Probe, Probe, Probe];
  await h.sup.start();
  h.journal.length = 0;

  b.crash();
  await until(() => d.starts === 2, 'd restarted');
  await quiet();
  t.same(h.journal, ['stop:d', 'stop:c', 'start:b', 'start:c', 'start:d']);
  t.same([a.starts, b.starts, c.starts, d.starts], [1, 2, 2, 2]);
  t.equal(a.live, 1, 'a kept its incarnation');
  t.equal(a.stops, 0);

  h.journal.length = 0;
  d.crash();
  await until(() => d.starts === 3, 'd restarted again');
  await quiet();
  t.same(h.journal, ['start:d'], 'the last child crashing restarts only itself');
  await h.sup.stop();
});

t.test('actor workers: a crash by a thrown Error restarts the actor, a ProtocolError does not', async (t) => {
  const clock = new ManualClock();
  const system = new ActorSystem({ nodeId: 'n1', log: silentLogger, clock });
  const incarnations: Record<string, number> = {};
  const worker = (id: string) =>
    actorChild<string, string>({
      id,
      behavior: () => {
        const incarnation = (incarnations[id] = (incarnations[id] ?? 0) + 1);
        return {
          receive(message) {
            if (message === 'crash') throw new Error(`${id} broke`);
            if (message === 'refuse') throw new ProtocolError('E_VALIDATION', 'refused');
            return `${id}#${incarnation}`;
          },
        };
      },
    });
  const sup = new Supervisor({
    path: 'n1/pool',
    system,
    children: [worker('a'), worker('b'), worker('c')],
    flags: { ...NO_BACKOFF, strategy: 'rest_for_one' },
  });
  await sup.start();
  const ask = (id: string, message: string) => system.ref<string, string>(`n1/pool/${id}`).ask(message);

  await t.rejects(ask('b', 'refuse'), { code: 'E_VALIDATION' });
  t.same(incarnations, { a: 1, b: 1, c: 1 }, 'an expected failure restarts nobody');

  await t.rejects(ask('b', 'crash'), { code: 'E_INTERNAL' });
  await until(() => incarnations.c === 2, 'c restarted');
  t.same(await Promise.all(['a', 'b', 'c'].map((id) => ask(id, 'who'))), ['a#1', 'b#2', 'c#2']);
  await sup.stop();
});

t.test('two children crashing together under one_for_all cause one group restart', async (t) => {
  // OTP flushes the exit of a child it is already restarting: one event, one restart.
  let probes: Probe[] = [];
  const h = harness((journal) => (probes = ['a', 'b', 'c'].map((id) => new Probe(id, journal))).map((p) => p.spec), {
    ...NO_BACKOFF,
    strategy: 'one_for_all',
  });
  const [a, b, c] = probes as [Probe, Probe, Probe];
  await h.sup.start();
  a.crash();
  b.crash();
  await until(() => c.starts >= 2, 'group restarted');
  await quiet(100);
  t.same([a.starts, b.starts, c.starts], [2, 2, 2], 'each child started once more');
  await h.sup.stop();
});

t.test('two children crashing together count as one restart toward intensity', async (t) => {
  let probes: Probe[] = [];
  const h = harness((journal) => (probes = ['a', 'b', 'c'].map((id) => new Probe(id, journal))).map((p) => p.spec), {
    strategy: 'one_for_all',
    intensity: 1,
    periodMs: 5000,
    backoffBaseMs: 0,
    backoffMaxMs: 0,
  });
  const [a, b, c] = probes as [Probe, Probe, Probe];
  await h.sup.start();
  a.crash();
  b.crash();
  await until(() => c.starts >= 2, 'group restarted');
  await quiet(100);
  t.same(h.exits, [], 'the supervisor does not give up');
  t.equal(h.sup.status().state, 'running', 'the supervisor is still running');
  await h.sup.stop();
});

// ---------------------------------------------------------------- intensity

t.test('more restarts than intensity within periodMs escalate', async (t) => {
  let probes: Probe[] = [];
  const h = harness((journal) => (probes = ['a', 'b'].map((id) => new Probe(id, journal))).map((p) => p.spec), {
    strategy: 'one_for_one',
    intensity: 2,
    periodMs: 1000,
    backoffBaseMs: 0,
    backoffMaxMs: 0,
  });
  const [a, b] = probes as [Probe, Probe];
  await h.sup.start();

  a.crash('first');
  await until(() => a.starts === 2, 'first restart');
  await h.clock.advance(100);
  a.crash('second');
  await until(() => a.starts === 3, 'second restart');
  t.equal(h.exits.length, 0, 'two restarts are within intensity 2');
  h.journal.length = 0;

  await h.clock.advance(100);
  a.crash('third');
  await until(() => h.exits.length === 1, 'supervisor exit');
  t.equal(a.starts, 3, 'the third crash is not restarted');
  const exit = h.exits[0]!;
  t.equal(exit.kind, 'error');
  const message = exit.kind === 'error' ? (exit.error as Error).message : '';
  t.match(message, /intensity/);
  t.match(message, /3 restarts within 1000 ms/);
  t.match(message, /third/, 'names the last error');
  t.same(h.journal, ['stop:b'], 'the remaining child is stopped');
  t.equal(b.live, 0);
  t.ok(h.events.some((e) => e.type === 'intensity_exceeded' && e.restarts === 3));
  const status = h.sup.status();
  t.equal(status.state, 'failed');
  t.match(status.last_error, /intensity/);
  t.same(status.children?.map((n) => n.state), ['stopped', 'stopped']);

  await quiet();
  t.equal(h.exits.length, 1, 'onExit is called once');
});

t.test('restarts older than periodMs leave the window', async (t) => {
  let probe!: Probe;
  const h = harness((journal) => [(probe = new Probe('a', journal)).spec], {
    intensity: 1,
    periodMs: 1000,
    backoffBaseMs: 0,
    backoffMaxMs: 0,
  });
  await h.sup.start();
  for (let i = 1; i <= 4; i++) {
    probe.crash();
    await until(() => probe.starts === i + 1, `restart ${i}`);
    await h.clock.advance(1000);
  }
  t.equal(h.exits.length, 0, 'one restart per period never exceeds intensity 1');
  probe.crash();
  await until(() => probe.starts === 6, 'restart 5');
  await h.clock.advance(999);
  probe.crash();
  await until(() => h.exits.length === 1, 'escalation');
  t.equal(h.exits[0]?.kind, 'error');
});

t.test('a nested supervisor that exceeds its intensity escalates; its parent restarts the subtree', async (t) => {
  const clock = new ManualClock();
  const system = new ActorSystem({ nodeId: 'n1', log: silentLogger, clock });
  const journal: string[] = [];
  const x = new Probe('x', journal);
  const a = new Probe('a', journal);
  const b = new Probe('b', journal);
  const innerEvents: SupervisorEvent[] = [];
  const rootEvents: SupervisorEvent[] = [];
  const rootExits: ExitReason[] = [];
  const root = new Supervisor({
    path: 'n1/root',
    system,
    children: [
      x.spec,
      supervisorChild('inner', [a.spec, b.spec], { strategy: 'one_for_one', intensity: 1, periodMs: 5000, backoffBaseMs: 0, backoffMaxMs: 0 }, { onEvent: (e) => innerEvents.push(e) }),
    ],
    flags: { ...NO_BACKOFF, strategy: 'one_for_one' },
    onEvent: (e) => rootEvents.push(e),
    onExit: (reason) => rootExits.push(reason),
  });
  await root.start();
  t.same(journal, ['start:x', 'start:a', 'start:b']);
  journal.length = 0;

  a.crash('a-1');
  await until(() => a.starts === 2, 'inner restarts a');
  t.same(journal, ['start:a']);
  journal.length = 0;

  a.crash('a-2');
  await until(() => a.starts === 3, 'subtree restarted by root');
  await quiet();
  t.same(journal, ['stop:b', 'start:a', 'start:b'], 'inner stops its children, root starts the subtree afresh');
  t.same([x.starts, a.starts, b.starts], [1, 3, 2]);
  t.equal(x.live, 1, 'the sibling of the subtree kept its incarnation');
  t.equal(rootExits.length, 0, 'the root stays up');
  t.ok(innerEvents.some((e) => e.type === 'intensity_exceeded' && e.path === 'n1/root/inner'));
  const crash = rootEvents.find((e) => e.type === 'child_exited' && e.path === 'n1/root/inner');
  t.same(crash, { type: 'child_exited', path: 'n1/root/inner', reason: 'error' });

  const status = root.status();
  const inner = childStatus(status, 'inner');
  t.equal(inner?.kind, 'supervisor');
  t.equal(inner?.state, 'running');
  t.equal(inner?.restarts, 1);
  t.match(inner?.last_error, /intensity/);
  t.same(
    inner?.children?.map((n) => [n.path, n.state, n.restarts]),
    [
      ['n1/root/inner/a', 'running', 0],
      ['n1/root/inner/b', 'running', 0],
    ],
    'the fresh subtree starts with clean counters',
  );
  await root.stop();
  t.same(rootExits, [{ kind: 'normal' }]);
});

// ---------------------------------------------------------------- backoff

t.test('restart backoff doubles from backoffBaseMs and is capped at backoffMaxMs', async (t) => {
  let probe!: Probe;
  const h = harness((journal) => [(probe = new Probe('a', journal)).spec], {
    intensity: 100,
    periodMs: 100_000,
    backoffBaseMs: 10,
    backoffMaxMs: 40,
  });
  await h.sup.start();
  const delays: number[] = [];
  for (let i = 1; i <= 5; i++) {
    probe.crash();
    await until(() => h.events.filter((e) => e.type === 'restart_scheduled').length === i, `restart ${i} scheduled`);
    const event = h.events.filter((e) => e.type === 'restart_scheduled').at(-1)!;
    if (event.type !== 'restart_scheduled') throw new Error('unreachable');
    delays.push(event.delayMs);
    t.equal(event.restartsInWindow, i);
    await h.clock.advance(event.delayMs - 1);
    t.equal(probe.starts, i, `restart ${i} waits the whole ${event.delayMs} ms`);
    await h.clock.advance(1);
    await until(() => probe.starts === i + 1, `restart ${i}`);
  }
  t.same(delays, [10, 20, 40, 40, 40]);

  await h.clock.advance(100_000);
  probe.crash();
  await until(() => h.events.filter((e) => e.type === 'restart_scheduled').length === 6, 'restart after a quiet period');
  const last = h.events.at(-1)!;
  t.same(last.type === 'restart_scheduled' ? last.delayMs : -1, 10, 'a quiet period resets the backoff');
  await h.clock.advance(10);
  await until(() => probe.starts === 7, 'last restart');
  await h.sup.stop();
});

t.test('stopping the supervisor during a backoff does not wait it out', async (t) => {
  let probe!: Probe;
  const h = harness((journal) => [(probe = new Probe('a', journal)).spec], {
    intensity: 5,
    periodMs: 10_000,
    backoffBaseMs: 1000,
    backoffMaxMs: 1000,
  });
  await h.sup.start();
  probe.crash();
  await until(() => h.events.some((e) => e.type === 'restart_scheduled'), 'restart scheduled');
  let done = false;
  const stopping = h.sup.stop().then(() => (done = true));
  await until(() => done, 'stop without moving the clock');
  await stopping;
  await h.clock.advance(2000);
  t.equal(probe.starts, 1, 'the pending restart never happens');
  t.same(h.exits, [{ kind: 'normal' }]);
});

t.test('stop called while a restart is stopping siblings does not wait out the backoff', async (t) => {
  let release!: () => void;
  let gate: Promise<void> | undefined;
  let a!: Probe;
  let b!: Probe;
  const h = harness(
    (journal) => {
      a = new Probe('a', journal);
      b = new Probe('b', journal, { stopWith: () => (gate ??= new Promise<void>((resolve) => (release = resolve))) });
      return [a.spec, b.spec];
    },
    { strategy: 'one_for_all', intensity: 5, periodMs: 10_000, backoffBaseMs: 1000, backoffMaxMs: 1000 },
  );
  await h.sup.start();
  a.crash();
  await until(() => gate !== undefined, 'b being stopped by the restart');
  let done = false;
  const stopping = h.sup.stop().then(() => (done = true));
  release();
  await quiet(100);
  t.ok(done, 'stop finished without the clock moving');
  await h.clock.advance(1000);
  await stopping;
  t.equal(a.starts, 1, 'nothing restarts after stop');
});

// ---------------------------------------------------------------- restart types

t.test('transient: restarted after an error exit, not after a normal exit', async (t) => {
  let probe!: Probe;
  const h = harness((journal) => [(probe = new Probe('tr', journal, { restart: 'transient' })).spec], NO_BACKOFF);
  await h.sup.start();
  probe.crash();
  await until(() => probe.starts === 2, 'restart after error');
  probe.finish();
  await quiet();
  t.equal(probe.starts, 2, 'not restarted after a normal exit');
  const node = childStatus(h.sup.status(), 'tr');
  t.equal(node?.state, 'stopped');
  t.equal(node?.restarts, 1);
  t.same(
    h.events.filter((e) => e.type === 'child_exited').map((e) => (e.type === 'child_exited' ? e.reason : '')),
    ['error', 'normal'],
  );
  await h.sup.stop();
  t.same(h.exits, [{ kind: 'normal' }]);
});

t.test('permanent: restarted after a normal exit too', async (t) => {
  let probe!: Probe;
  const h = harness((journal) => [(probe = new Probe('pm', journal, { restart: 'permanent' })).spec], NO_BACKOFF);
  await h.sup.start();
  probe.finish();
  await until(() => probe.starts === 2, 'restart after normal exit');
  probe.crash();
  await until(() => probe.starts === 3, 'restart after error');
  t.equal(childStatus(h.sup.status(), 'pm')?.state, 'running');
  t.equal(childStatus(h.sup.status(), 'pm')?.restarts, 2);
  await h.sup.stop();
});

t.test('default restart type is permanent', async (t) => {
  let probe!: Probe;
  const h = harness((journal) => [(probe = new Probe('d', journal)).spec], NO_BACKOFF);
  await h.sup.start();
  probe.finish();
  await until(() => probe.starts === 2, 'restart after normal exit');
  await h.sup.stop();
  t.pass();
});

t.test('temporary: never restarted and removed from the status tree', async (t) => {
  let keep!: Probe;
  let temp!: Probe;
  const h = harness(
    (journal) => {
      keep = new Probe('keep', journal);
      temp = new Probe('temp', journal, { restart: 'temporary' });
      return [keep.spec, temp.spec];
    },
    NO_BACKOFF,
  );
  await h.sup.start();
  t.same(h.sup.status().children?.map((n) => n.path), ['n1/root/keep', 'n1/root/temp']);
  temp.crash();
  await quiet();
  t.equal(temp.starts, 1);
  t.same(h.sup.status().children?.map((n) => n.path), ['n1/root/keep']);
  await h.sup.stop();
  t.equal(temp.stops, 0, 'an exited temporary child is not stopped again');
  t.same(h.journal, ['start:keep', 'start:temp', 'stop:keep']);
});

t.test('a temporary sibling is stopped but not restarted by one_for_all', async (t) => {
  let a!: Probe;
  let temp!: Probe;
  let c!: Probe;
  const h = harness(
    (journal) => {
      a = new Probe('a', journal);
      temp = new Probe('temp', journal, { restart: 'temporary' });
      c = new Probe('c', journal);
      return [a.spec, temp.spec, c.spec];
    },
    { ...NO_BACKOFF, strategy: 'one_for_all' },
  );
  await h.sup.start();
  h.journal.length = 0;
  c.crash();
  await until(() => c.starts === 2, 'group restarted');
  await quiet();
  t.same(h.journal, ['stop:temp', 'stop:a', 'start:a', 'start:c']);
  t.same(h.sup.status().children?.map((n) => n.path), ['n1/root/a', 'n1/root/c']);
  await h.sup.stop();
});

// ---------------------------------------------------------------- stopping

t.test('stop stops children in reverse start order and reports a normal exit', async (t) => {
  let probes: Probe[] = [];
  const h = harness((journal) => (probes = ['a', 'b', 'c', 'd'].map((id) => new Probe(id, journal))).map((p) => p.spec), NO_BACKOFF);
  await h.sup.start();
  await h.sup.stop();
  t.same(h.journal, ['start:a', 'start:b', 'start:c', 'start:d', 'stop:d', 'stop:c', 'stop:b', 'stop:a']);
  t.same(h.exits, [{ kind: 'normal' }]);
  t.same(probes.map((p) => p.live), [0, 0, 0, 0]);
  const status = h.sup.status();
  t.equal(status.state, 'stopped');
  t.same(status.children?.map((n) => n.state), ['stopped', 'stopped', 'stopped', 'stopped']);
  await h.sup.stop();
  t.equal(h.exits.length, 1, 'a second stop is a no-op');
});

t.test('a child whose stop never resolves is killed at its shutdownMs; the next sibling is still stopped', async (t) => {
  let a!: Probe;
  let b!: Probe;
  let c!: Probe;
  const h = harness(
    (journal) => {
      a = new Probe('a', journal);
      b = new Probe('b', journal, { hangOnStop: true, shutdownMs: 50 });
      c = new Probe('c', journal);
      return [a.spec, b.spec, c.spec];
    },
    NO_BACKOFF,
  );
  await h.sup.start();
  h.journal.length = 0;
  let done = false;
  const stopping = h.sup.stop().then(() => (done = true));
  await quiet();
  t.same(h.journal, ['stop:c', 'stop:b'], 'c stopped, b hanging');
  await h.clock.advance(49);
  t.equal(b.kills, 0, 'not killed before its shutdownMs');
  t.notOk(done);
  await h.clock.advance(1);
  await until(() => done, 'stop finishes');
  await stopping;
  t.same(h.journal, ['stop:c', 'stop:b', 'kill:b', 'stop:a']);
  t.same(
    h.events.filter((e) => e.type === 'child_stopped'),
    [
      { type: 'child_stopped', path: 'n1/root/c', killed: false },
      { type: 'child_stopped', path: 'n1/root/b', killed: true },
      { type: 'child_stopped', path: 'n1/root/a', killed: false },
    ],
  );
  t.same(h.exits, [{ kind: 'normal' }]);
});

t.test('an actor worker stuck in a message is killed at its shutdownMs', async (t) => {
  const clock = new ManualClock();
  const system = new ActorSystem({ nodeId: 'n1', log: silentLogger, clock });
  let stoppedHookRan = false;
  const sup = new Supervisor({
    path: 'n1/root',
    system,
    children: [
      actorChild<string, string>({
        id: 'stuck',
        shutdownMs: 100,
        behavior: () => ({
          receive: () => new Promise<string>(() => undefined),
          stopped: () => void (stoppedHookRan = true),
        }),
      }),
    ],
    flags: NO_BACKOFF,
  });
  await sup.start();
  const ref = system.ref<string, string>('n1/root/stuck');
  const first = ref.ask('hang', { timeoutMs: 60_000 }).catch((error: unknown) => error);
  const queued = ref.ask('queued', { timeoutMs: 60_000 }).then(
    () => undefined,
    (error: unknown) => error,
  );
  await quiet();
  let done = false;
  const stopping = sup.stop().then(() => (done = true));
  await quiet();
  await clock.advance(99);
  t.notOk(done, 'still waiting for the message in progress');
  await clock.advance(1);
  await until(() => done, 'killed');
  await stopping;
  t.match(await queued, { code: 'E_UNAVAILABLE' }, 'the queued asker is told');
  t.equal(system.cellAt('n1/root/stuck'), undefined, 'the path is free');
  await quiet();
  t.notOk(stoppedHookRan, 'the stopped hook does not run after a kill');
  void first;
});

t.test('a worker whose stopped hook throws can still be restarted with its group', async (t) => {
  const clock = new ManualClock();
  const system = new ActorSystem({ nodeId: 'n1', log: silentLogger, clock });
  const incarnations: Record<string, number> = {};
  const worker = (id: string, stoppedThrows: boolean) =>
    actorChild<string, string>({
      id,
      behavior: () => {
        const incarnation = (incarnations[id] = (incarnations[id] ?? 0) + 1);
        return {
          receive(message) {
            if (message === 'crash') throw new Error(`${id} broke`);
            return `${id}#${incarnation}`;
          },
          stopped() {
            if (stoppedThrows) throw new Error(`${id} could not flush`);
          },
        };
      },
    });
  const exits: ExitReason[] = [];
  const sup = new Supervisor({
    path: 'n1/root',
    system,
    children: [worker('a', true), worker('b', false)],
    flags: { ...NO_BACKOFF, strategy: 'one_for_all', intensity: 3 },
    onExit: (reason) => exits.push(reason),
  });
  await sup.start();
  await t.rejects(system.ref('n1/root/b').ask('crash'), { code: 'E_INTERNAL' });
  await quiet(100);
  const answer = await system
    .ref<string, string>('n1/root/a')
    .ask('who')
    .catch((error: unknown) => `failed: ${(error as Error).message}`);
  t.equal(answer, 'a#2', 'a answers from its second incarnation');
  t.same(exits, [], 'the supervisor did not give up');
  await sup.stop();
});

// ---------------------------------------------------------------- start failures and validation

t.test('a child that fails to start makes start() throw and stops the started siblings in reverse', async (t) => {
  let a!: Probe;
  let b!: Probe;
  let c!: Probe;
  let d!: Probe;
  const h = harness(
    (journal) => {
      a = new Probe('a', journal);
      b = new Probe('b', journal);
      c = new Probe('c', journal, { failStart: { from: 1, error: new Error('disk on fire') } });
      d = new Probe('d', journal);
      return [a.spec, b.spec, c.spec, d.spec];
    },
    NO_BACKOFF,
  );
  await t.rejects(h.sup.start(), { message: /could not start child c: disk on fire/ });
  t.same(h.journal, ['start:a', 'start:b', 'start-failed:c', 'stop:b', 'stop:a']);
  t.equal(d.starts, 0, 'children after the failed one never start');
  const status = h.sup.status();
  t.equal(status.state, 'failed');
  t.same(status.children?.slice(0, 3).map((n) => n.state), ['stopped', 'stopped', 'failed']);
  await t.rejects(h.sup.start(), /already started/);
});

t.test('an async start that rejects is a start failure too', async (t) => {
  const clock = new ManualClock();
  const system = new ActorSystem({ nodeId: 'n1', log: silentLogger, clock });
  const journal: string[] = [];
  const a = new Probe('a', journal);
  const sup = new Supervisor({
    path: 'n1/root',
    system,
    children: [
      a.spec,
      {
        id: 'async-bad',
        start: async () => {
          await Promise.resolve();
          throw new Error('no such port');
        },
      },
    ],
    flags: NO_BACKOFF,
  });
  await t.rejects(sup.start(), { message: /async-bad: no such port/ });
  t.same(journal, ['start:a', 'stop:a']);
});

t.test('a child that keeps failing to restart escalates through intensity', async (t) => {
  let probe!: Probe;
  const h = harness((journal) => [(probe = new Probe('a', journal, { failStart: { from: 2, error: new Error('still broken') } })).spec], {
    intensity: 3,
    periodMs: 10_000,
    backoffBaseMs: 0,
    backoffMaxMs: 0,
  });
  await h.sup.start();
  probe.crash();
  await until(() => h.exits.length === 1, 'escalation');
  t.equal(probe.starts, 4, 'one restart attempt per allowed restart');
  t.equal(h.exits[0]?.kind, 'error');
  t.equal(childStatus(h.sup.status(), 'a')?.last_error, 'still broken');
});

t.test('a crash reported while the child is still starting is a crash, not an exception', async (t) => {
  // A child can die between creating its resource and its start promise
  // settling (an actor asked in that gap, a socket that fails at once).
  const clock = new ManualClock();
  const system = new ActorSystem({ nodeId: 'n1', log: silentLogger, clock });
  let starts = 0;
  let exitThrew: unknown;
  const sup = new Supervisor({
    path: 'n1/root',
    system,
    children: [
      {
        id: 'early',
        async start(ctx) {
          starts++;
          if (starts === 1) {
            try {
              ctx.exit({ kind: 'error', error: new Error('died young') });
            } catch (error) {
              exitThrew = error;
            }
          }
          return { stop: async () => undefined, kill: () => undefined, status: () => ({}) };
        },
      },
    ],
    flags: NO_BACKOFF,
  });
  await sup.start().catch(() => undefined);
  await quiet();
  t.equal((exitThrew as Error | undefined)?.message, undefined, 'ctx.exit does not throw');
  t.equal(starts, 2, 'the child is restarted');
  await sup.stop();
});

t.test('child spec validation names the child and the problem', async (t) => {
  const clock = new ManualClock();
  const system = new ActorSystem({ nodeId: 'n1', log: silentLogger, clock });
  const ok = (id: string): ChildSpec => ({ id, start: () => ({ stop: async () => undefined, kill: () => undefined, status: () => ({}) }) });
  const build = (children: unknown[], flags: Partial<SupervisorFlags> = {}) =>
    new Supervisor({ path: 'n1/root', system, children: children as ChildSpec[], flags });

  const cases: [string, unknown[], RegExp][] = [
    ['duplicate id', [ok('a'), ok('b'), ok('a')], /supervisor n1\/root, child "a": id is used by another child/],
    ['bad id (space)', [ok('has space')], /child "has space": id must be 1-64 letters/],
    ['bad id (empty)', [ok('')], /child "": id must be/],
    ['bad id (too long)', [ok('x'.repeat(65))], /id must be 1-64/],
    ['id not a string', [ok('a'), { id: 7, start: () => undefined }], /child #1: id must be/],
    ['bad restart type', [{ ...ok('w'), restart: 'sometimes' }], /child "w": restart must be one of permanent, transient, temporary \(got "sometimes"\)/],
    ['negative shutdownMs', [{ ...ok('w'), shutdownMs: -1 }], /child "w": shutdownMs must be a whole number >= 0 or 'infinity' \(got -1\)/],
    ['fractional shutdownMs', [{ ...ok('w'), shutdownMs: 1.5 }], /child "w": shutdownMs .*got 1\.5/],
    ['string shutdownMs', [{ ...ok('w'), shutdownMs: 'forever' }], /child "w": shutdownMs .*got "forever"/],
    ['missing start', [{ id: 'nostart' }], /child "nostart": start must be a function/],
    ['bad kind', [{ ...ok('w'), kind: 'manager' }], /child "w": kind must be worker or supervisor/],
    ['not an object', [ok('a'), null], /child #1: a child spec must be an object/],
  ];
  for (const [name, children, pattern] of cases) {
    t.throws(() => build(children), { name: 'ChildSpecError', message: pattern }, name);
  }

  const flagCases: [string, Partial<SupervisorFlags>, RegExp][] = [
    ['strategy', { strategy: 'one_for_none' as never }, /supervisor n1\/root: strategy must be one of one_for_one, one_for_all, rest_for_one \(got "one_for_none"\)/],
    ['intensity', { intensity: -1 }, /intensity must be a whole number >= 0 \(got -1\)/],
    ['fractional intensity', { intensity: 0.5 }, /intensity must be a whole number/],
    ['periodMs', { periodMs: 0 }, /periodMs must be a whole number >= 1 \(got 0\)/],
    ['backoffBaseMs', { backoffBaseMs: -5 }, /backoffBaseMs must be a whole number >= 0/],
    ['backoffMaxMs below base', { backoffBaseMs: 100, backoffMaxMs: 50 }, /backoffMaxMs must be a whole number >= backoffBaseMs \(got 50\)/],
  ];
  for (const [name, flags, pattern] of flagCases) {
    t.throws(() => build([ok('a')], flags), { name: 'ChildSpecError', message: pattern }, `bad flag: ${name}`);
  }

  t.doesNotThrow(() => build([ok('a'), { ...ok('b'), restart: 'temporary', shutdownMs: 'infinity', kind: 'supervisor' }, { ...ok('c.d:e-f_9'), shutdownMs: 0 }]));

  const parent = new Supervisor({
    path: 'n1/top',
    system,
    children: [supervisorChild('inner', [ok('x'), ok('x')])],
    flags: NO_BACKOFF,
  });
  await t.rejects(parent.start(), { message: /child inner: supervisor n1\/top\/inner, child "x": id is used by another child/ }, 'a nested spec error surfaces through the parent start');
});

// ---------------------------------------------------------------- status tree

t.test('the status tree after crashes', async (t) => {
  const clock = new ManualClock();
  const system = new ActorSystem({ nodeId: 'n1', log: silentLogger, clock });
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const sup = new Supervisor({
    path: 'n1/root',
    system,
    children: [
      actorChild<string, string>({
        id: 'w',
        mailboxCapacity: 8,
        behavior: () => ({
          async receive(message) {
            if (message === 'crash') throw new Error('kaboom');
            if (message === 'block') await gate;
            return 'ok';
          },
        }),
      }),
      supervisorChild('inner', [actorChild({ id: 'leaf', behavior: () => ({ receive: () => 'leaf' }) })], { strategy: 'one_for_all' }),
    ],
    flags: { ...NO_BACKOFF, strategy: 'one_for_one' },
  });
  await sup.start();
  const ref = system.ref<string, string>('n1/root/w');
  await t.rejects(ref.ask('crash'), { code: 'E_INTERNAL' });
  await until(() => system.cellAt('n1/root/w') !== undefined && sup.status().children?.[0]?.state === 'running', 'w restarted');

  const blocked = ref.ask('block');
  await quiet(2);
  const queued = [ref.ask('q1'), ref.ask('q2')];
  const status = sup.status();
  t.same(status, {
    path: 'n1/root',
    kind: 'supervisor',
    state: 'running',
    restarts: 0,
    strategy: 'one_for_one',
    children: [
      { kind: 'worker', mailbox_depth: 2, path: 'n1/root/w', state: 'running', restarts: 1, last_error: 'kaboom' },
      {
        kind: 'supervisor',
        path: 'n1/root/inner',
        state: 'running',
        restarts: 0,
        strategy: 'one_for_all',
        children: [{ kind: 'worker', mailbox_depth: 0, path: 'n1/root/inner/leaf', state: 'running', restarts: 0 }],
      },
    ],
  });
  t.equal(
    renderStatusTree(status),
    [
      'n1/root [running, one_for_one]',
      '├── w [running, restarts=1, mailbox=2, last_error="kaboom"]',
      '└── inner [running, one_for_all]',
      '    └── leaf [running, mailbox=0]',
    ].join('\n'),
  );
  release();
  t.same(await Promise.all([blocked, ...queued]), ['ok', 'ok', 'ok']);
  t.equal(sup.status().children?.[0]?.mailbox_depth, 0);
  await sup.stop();
});

t.test('renderStatusTree draws nesting, last children and facts', async (t) => {
  const tree: StatusNode = {
    path: 'n1/node',
    kind: 'supervisor',
    state: 'running',
    restarts: 0,
    strategy: 'one_for_one',
    children: [
      {
        path: 'n1/node/shards',
        kind: 'supervisor',
        state: 'restarting',
        restarts: 2,
        strategy: 'rest_for_one',
        last_error: 'disk "full"',
        children: [
          { path: 'n1/node/shards/p0', kind: 'worker', state: 'running', restarts: 0, mailbox_depth: 3 },
          { path: 'n1/node/shards/p1', kind: 'worker', state: 'failed', restarts: 5 },
        ],
      },
      { path: 'n1/node/sync', kind: 'supervisor', state: 'stopped', restarts: 0, strategy: 'one_for_one', children: [{ path: 'n1/node/sync/pg', kind: 'worker', state: 'stopped', restarts: 0 }] },
    ],
  };
  t.equal(
    renderStatusTree(tree),
    [
      'n1/node [running, one_for_one]',
      '├── shards [restarting, rest_for_one, restarts=2, last_error="disk \\"full\\""]',
      '│   ├── p0 [running, mailbox=3]',
      '│   └── p1 [failed, restarts=5]',
      '└── sync [stopped, one_for_one]',
      '    └── pg [stopped]',
    ].join('\n'),
  );
  t.equal(renderStatusTree({ path: 'n1/lone', kind: 'worker', state: 'starting', restarts: 0 }), 'n1/lone [starting]');
});
