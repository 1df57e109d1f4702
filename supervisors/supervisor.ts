// An OTP-style supervisor. Children start in order and stop in reverse order,
// each within its shutdownMs or killed. When a child exits, its restart type
// (permanent, transient, temporary) decides whether it comes back, and the
// strategy decides who comes back with it: one_for_one (the child alone),
// one_for_all (every child), rest_for_one (the child and those started after
// it). Restarts wait an exponential backoff (backoffBaseMs doubling, capped at
// backoffMaxMs). More than `intensity` restarts within `periodMs` and the
// supervisor stops all its children and exits with an error: its own
// supervisor then decides (escalation). Operations run one at a time.

import type { ExitReason } from '../src/kernel/actor.js';
import type { ActorSystem } from '../src/kernel/system.js';
import { actorLogger, type Logger } from '../src/log.js';
import type { TimerHandle } from '../src/ports/clock.js';
import { Lifecycle } from './lifecycle.js';
import {
  checkChildSpecs,
  checkFlags,
  DEFAULT_WORKER_SHUTDOWN_MS,
  type ChildSpec,
  type RunningChild,
  type StartContext,
  type SupervisorFlags,
} from './spec.js';
import type { StatusNode } from './status.js';

/** What a supervisor reports to observers (tests, logs, metrics). */
export type SupervisorEvent =
  | { type: 'child_started'; path: string }
  | { type: 'child_exited'; path: string; reason: ExitReason['kind'] }
  | { type: 'restart_scheduled'; path: string; delayMs: number; restartsInWindow: number }
  | { type: 'child_stopped'; path: string; killed: boolean }
  | { type: 'intensity_exceeded'; path: string; restarts: number };

interface ChildRecord {
  spec: ChildSpec;
  path: string;
  lifecycle: Lifecycle;
  running: RunningChild | undefined;
  /** Bumped at every start so a late exit from an old incarnation is ignored. */
  generation: number;
  restarts: number;
  lastError: string | undefined;
  /** Removed from the tree (a temporary child that exited). */
  removed: boolean;
}

export interface SupervisorOptions {
  path: string;
  system: ActorSystem;
  children: readonly ChildSpec[];
  flags?: Partial<SupervisorFlags>;
  /** Called when the supervisor itself exits (escalation or stop). */
  onExit?: (reason: ExitReason) => void;
  onEvent?: (event: SupervisorEvent) => void;
}

export class Supervisor implements RunningChild {
  readonly path: string;
  readonly flags: SupervisorFlags;
  private readonly system: ActorSystem;
  private readonly log: Logger;
  private readonly records: ChildRecord[];
  private readonly onExit: (reason: ExitReason) => void;
  private readonly onEvent: (event: SupervisorEvent) => void;
  private readonly restartTimes: number[] = [];
  private operations: Promise<void> = Promise.resolve();
  private restartTimer: TimerHandle | undefined;
  private state: 'idle' | 'running' | 'stopping' | 'stopped' | 'failed' = 'idle';
  private lastError: string | undefined;

  constructor(options: SupervisorOptions) {
    this.path = options.path;
    this.system = options.system;
    this.flags = checkFlags(options.path, options.flags ?? {});
    this.log = actorLogger(options.system.log, options.path);
    this.onExit = options.onExit ?? (() => undefined);
    this.onEvent = options.onEvent ?? (() => undefined);
    this.records = checkChildSpecs(options.path, options.children).map((spec) => ({
      spec,
      path: `${options.path}/${spec.id}`,
      lifecycle: new Lifecycle(`${options.path}/${spec.id}`),
      running: undefined,
      generation: 0,
      restarts: 0,
      lastError: undefined,
      removed: false,
    }));
  }

  /** Starts every child in order. If one fails, those started are stopped in reverse and the error is thrown. */
  async start(): Promise<void> {
    if (this.state !== 'idle') throw new Error(`supervisor ${this.path} was already started`);
    this.state = 'running';
    for (const [index, record] of this.records.entries()) {
      try {
        await this.startChild(record);
      } catch (error) {
        this.log.error({ err: error, child: record.path }, 'child failed to start; stopping the children already started');
        await this.stopChildren(this.records.slice(0, index));
        record.lifecycle.send('GIVE_UP');
        for (const never of this.records.slice(index + 1)) {
          never.lifecycle.send('STOP');
          never.lifecycle.send('STOPPED');
        }
        this.state = 'failed';
        throw new Error(`supervisor ${this.path} could not start child ${record.spec.id}: ${messageOf(error)}`, { cause: error });
      }
    }
  }

  private async startChild(record: ChildRecord): Promise<void> {
    const generation = ++record.generation;
    const ctx: StartContext = {
      path: record.path,
      system: this.system,
      log: actorLogger(this.system.log, record.path),
      exit: (reason) => this.childExited(record, generation, reason),
    };
    record.running = await record.spec.start(ctx);
    // A child may report a crash before its start returned: it is then already restarting.
    if (record.generation !== generation || record.lifecycle.state !== 'starting') return;
    record.lifecycle.send('STARTED');
    this.onEvent({ type: 'child_started', path: record.path });
  }

  private childExited(record: ChildRecord, generation: number, reason: ExitReason): void {
    if (generation !== record.generation || this.state !== 'running') return;
    if (record.lifecycle.state === 'stopping' || record.lifecycle.state === 'stopped') return;
    record.running = undefined;
    this.onEvent({ type: 'child_exited', path: record.path, reason: reason.kind });
    if (reason.kind === 'error') {
      record.lastError = messageOf(reason.error);
      this.log.error({ err: reason.error, child: record.path }, 'child crashed');
    }
    const restart = record.spec.restart ?? 'permanent';
    const wanted = restart === 'permanent' || (restart === 'transient' && reason.kind !== 'normal');
    if (!wanted) {
      record.lifecycle.send('EXITED');
      if (restart === 'temporary') record.removed = true;
      return;
    }
    record.lifecycle.send('CRASHED');
    this.enqueue(() => this.restart(record, generation));
  }

  private enqueue(operation: () => Promise<void>): void {
    this.operations = this.operations.then(operation).catch((error: unknown) => this.escalate(error));
  }

  /**
   * Restarts `failed` (and its group), unless a group restart queued before
   * this one already brought it back: like OTP, an exit of an incarnation
   * that is gone is not counted twice.
   */
  private async restart(failed: ChildRecord, generation: number): Promise<void> {
    if (this.state !== 'running') return;
    if (failed.generation !== generation || failed.lifecycle.state !== 'restarting') return;
    const now = this.system.clock.monotonicMs();
    this.restartTimes.push(now);
    while (this.restartTimes.length > 0 && this.restartTimes[0]! <= now - this.flags.periodMs) this.restartTimes.shift();
    const inWindow = this.restartTimes.length;
    if (inWindow > this.flags.intensity) {
      this.onEvent({ type: 'intensity_exceeded', path: this.path, restarts: inWindow });
      throw new Error(`restart intensity exceeded: ${inWindow} restarts within ${this.flags.periodMs} ms (last: ${failed.spec.id}: ${failed.lastError ?? 'exited'})`);
    }
    const group = this.restartGroup(failed);
    const others = group.filter((record) => record !== failed && record.running);
    await this.stopChildren(others);
    if (this.state !== 'running') return;
    const delayMs = Math.min(this.flags.backoffMaxMs, this.flags.backoffBaseMs * 2 ** (inWindow - 1));
    this.onEvent({ type: 'restart_scheduled', path: failed.path, delayMs, restartsInWindow: inWindow });
    if (delayMs > 0) await this.backoff(delayMs);
    if (this.state !== 'running') return;
    for (const record of group) {
      if (record.removed || (record !== failed && (record.spec.restart ?? 'permanent') === 'temporary')) {
        record.removed = true;
        continue;
      }
      if (record.lifecycle.can('RESTART')) record.lifecycle.send('RESTART');
      record.restarts++;
      try {
        await this.startChild(record);
      } catch (error) {
        record.lastError = messageOf(error);
        this.log.error({ err: error, child: record.path }, 'child failed to restart');
        if (record.lifecycle.can('START_FAILED')) record.lifecycle.send('START_FAILED');
        const failedGeneration = record.generation;
        this.enqueue(() => this.restart(record, failedGeneration));
        return;
      }
    }
  }

  /** Waits out a restart backoff; `cancelBackoff` ends the wait early when the supervisor stops. */
  private backoff(delayMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = this.system.clock.setTimer(delayMs, () => {
        this.restartTimer = undefined;
        resolve();
      });
      this.restartTimer = {
        cancel: () => {
          timer.cancel();
          this.restartTimer = undefined;
          resolve();
        },
      };
    });
  }

  /** The children that restart together with `failed`, in start order. */
  private restartGroup(failed: ChildRecord): ChildRecord[] {
    const live = this.records.filter((record) => !record.removed);
    switch (this.flags.strategy) {
      case 'one_for_one':
        return [failed];
      case 'one_for_all':
        return live;
      case 'rest_for_one':
        return live.slice(live.indexOf(failed));
    }
  }

  private async escalate(error: unknown): Promise<void> {
    if (this.state !== 'running') return;
    this.lastError = messageOf(error);
    this.log.error({ err: error }, 'supervisor gives up; escalating');
    this.state = 'stopping';
    this.restartTimer?.cancel();
    await this.stopChildren(this.records);
    for (const record of this.records) if (record.lifecycle.can('GIVE_UP')) record.lifecycle.send('GIVE_UP');
    this.state = 'failed';
    this.onExit({ kind: 'error', error });
  }

  /** Stops the given children in reverse order, each within its shutdownMs or killed. */
  private async stopChildren(records: readonly ChildRecord[]): Promise<void> {
    for (const record of [...records].reverse()) {
      const running = record.running;
      if (!running) {
        if (record.lifecycle.can('STOP') && record.lifecycle.state !== 'stopping') {
          record.lifecycle.send('STOP');
          record.lifecycle.send('STOPPED');
        }
        continue;
      }
      record.lifecycle.send('STOP');
      const killed = await this.stopWithin(record, running);
      record.running = undefined;
      record.lifecycle.send('STOPPED');
      this.log.info({ child: record.path, killed }, killed ? 'child killed at its shutdown timeout' : 'child stopped');
      this.onEvent({ type: 'child_stopped', path: record.path, killed });
    }
  }

  private async stopWithin(record: ChildRecord, running: RunningChild): Promise<boolean> {
    const limit = record.spec.shutdownMs ?? (record.spec.kind === 'supervisor' ? 'infinity' : DEFAULT_WORKER_SHUTDOWN_MS);
    const stopped = running.stop().then(
      () => false,
      (error: unknown) => {
        this.log.warn({ err: error, child: record.path }, 'child failed while stopping');
        return false;
      },
    );
    if (limit === 'infinity') return stopped;
    let timer: TimerHandle | undefined;
    const expired = new Promise<true>((resolve) => (timer = this.system.clock.setTimer(limit, () => resolve(true))));
    const killed = await Promise.race([stopped, expired]);
    timer?.cancel();
    if (killed) {
      this.log.warn({ child: record.path, shutdownMs: limit }, 'child did not stop within its shutdown time; killed');
      running.kill();
    }
    return killed;
  }

  /** Stops every child in reverse start order, then the supervisor itself. */
  async stop(): Promise<void> {
    if (this.state !== 'running') return;
    this.state = 'stopping';
    this.restartTimer?.cancel();
    await this.operations.catch(() => undefined);
    await this.stopChildren(this.records);
    this.state = 'stopped';
    this.onExit({ kind: 'normal' });
  }

  kill(): void {
    if (this.state === 'stopped' || this.state === 'failed') return;
    this.state = 'stopped';
    this.restartTimer?.cancel();
    for (const record of [...this.records].reverse()) {
      record.running?.kill();
      record.running = undefined;
    }
  }

  status(): StatusNode {
    const node: StatusNode = {
      path: this.path,
      kind: 'supervisor',
      state: this.lifecycleOfSelf(),
      restarts: 0,
      strategy: this.flags.strategy,
      children: this.records.filter((record) => !record.removed).map((record) => this.childStatus(record)),
    };
    if (this.lastError) node.last_error = this.lastError;
    return node;
  }

  private lifecycleOfSelf(): StatusNode['state'] {
    switch (this.state) {
      case 'idle':
        return 'starting';
      case 'running':
        return 'running';
      case 'stopping':
        return 'stopping';
      case 'stopped':
        return 'stopped';
      case 'failed':
        return 'failed';
    }
  }

  private childStatus(record: ChildRecord): StatusNode {
    const own = record.running?.status() ?? {};
    const node: StatusNode = {
      kind: record.spec.kind ?? 'worker',
      ...own,
      path: record.path,
      state: record.lifecycle.state,
      restarts: record.restarts,
    };
    if (record.lastError !== undefined) node.last_error = record.lastError;
    return node;
  }
}

/** A supervisor as the child of another supervisor. */
export function supervisorChild(
  id: string,
  children: readonly ChildSpec[],
  flags: Partial<SupervisorFlags> = {},
  options: { restart?: ChildSpec['restart']; onEvent?: (event: SupervisorEvent) => void } = {},
): ChildSpec {
  return {
    id,
    kind: 'supervisor',
    shutdownMs: 'infinity',
    restart: options.restart ?? 'permanent',
    async start(ctx) {
      const supervisor = new Supervisor({
        path: ctx.path,
        system: ctx.system,
        children,
        flags,
        onExit: (reason) => ctx.exit(reason),
        ...(options.onEvent ? { onEvent: options.onEvent } : {}),
      });
      await supervisor.start();
      return supervisor;
    },
  };
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
