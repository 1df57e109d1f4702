// The actor cell: a bounded mailbox processed one message at a time by a
// behaviour that owns its state. Expected failures (a thrown ProtocolError)
// go back to the asker and the actor carries on; anything else is a crash: the
// actor stops taking messages, its queued askers get E_UNAVAILABLE, and its
// supervisor is told through `onExit`.

import { ProtocolError } from '../../protocols/errors.js';
import type { Logger } from '../log.js';
import type { Clock, TimerHandle } from '../ports/clock.js';
import { PendingAsk } from './ask.js';
import { Mailbox } from './mailbox.js';

export interface ActorContext {
  readonly path: string;
  readonly log: Logger;
  readonly clock: Clock;
}

/**
 * An answer that will come later. A behaviour returns `later(promise)` to
 * let the mailbox move on while the answer settles (a shard waiting for a
 * group fsync keeps taking writes for the next group). A rejection with a
 * ProtocolError goes to the asker; any other rejection crashes the actor.
 */
export class Later<R> {
  constructor(readonly promise: Promise<R>) {}
}

export function later<R>(promise: Promise<R>): Later<R> {
  return new Later(promise);
}

/**
 * A crash that still owes its asker a precise answer: the actor stops (its
 * supervisor restarts it) and the asker gets `reply` instead of E_INTERNAL.
 */
export class CrashWithReply extends Error {
  override readonly name = 'CrashWithReply';
  constructor(
    message: string,
    readonly reply: ProtocolError,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface Behavior<M = unknown, R = unknown> {
  receive(message: M, ctx: ActorContext): R | Later<R> | Promise<R | Later<R>>;
  /** Runs once when the actor stops normally, after its mailbox is drained. */
  stopped?(ctx: ActorContext): void | Promise<void>;
}

export type ExitReason = { kind: 'normal' } | { kind: 'killed' } | { kind: 'error'; error: unknown };

export type CellState = 'running' | 'stopping' | 'stopped' | 'failed';

/** How long a crashed actor's cleanup may take before its supervisor is told anyway. */
export const CLEANUP_MS = 5000;

interface Envelope<M> {
  message: M;
  pending: PendingAsk<unknown> | undefined;
}

export interface CellOptions {
  path: string;
  mailboxCapacity: number;
  clock: Clock;
  log: Logger;
  onExit: (reason: ExitReason) => void;
}

export class ActorCell<M = unknown, R = unknown> {
  readonly path: string;
  private readonly mailbox: Mailbox<Envelope<M>>;
  private readonly ctx: ActorContext;
  private readonly onExit: (reason: ExitReason) => void;
  private state: CellState = 'running';
  private processing = false;
  private stopWaiter: (() => void) | undefined;
  processed = 0;

  constructor(
    private readonly behavior: Behavior<M, R>,
    options: CellOptions,
  ) {
    this.path = options.path;
    this.mailbox = new Mailbox(options.mailboxCapacity);
    this.ctx = { path: options.path, log: options.log, clock: options.clock };
    this.onExit = options.onExit;
  }

  get mailboxDepth(): number {
    return this.mailbox.depth;
  }

  get lifecycle(): CellState {
    return this.state;
  }

  get context(): ActorContext {
    return this.ctx;
  }

  /** Enqueues a message; throws E_UNAVAILABLE when the mailbox is full or the actor is not running. */
  tell(message: M): void {
    this.enqueue({ message, pending: undefined });
  }

  /** Enqueues a message whose answer settles `pending`. */
  ask(message: M, pending: PendingAsk<unknown>): void {
    this.enqueue({ message, pending });
  }

  private enqueue(envelope: Envelope<M>): void {
    if (this.state !== 'running') throw new ProtocolError('E_UNAVAILABLE', `actor ${this.path} is ${this.state}`);
    if (!this.mailbox.push(envelope)) {
      throw new ProtocolError('E_UNAVAILABLE', `mailbox of ${this.path} is full (${this.mailbox.capacity} messages); retry later`, {
        details: { mailbox_capacity: this.mailbox.capacity },
      });
    }
    if (!this.processing) {
      this.processing = true;
      queueMicrotask(() => void this.drain());
    }
  }

  private async drain(): Promise<void> {
    for (let envelope = this.mailbox.shift(); envelope !== undefined; envelope = this.mailbox.shift()) {
      let answer: R | Later<R>;
      try {
        const result = this.behavior.receive(envelope.message, this.ctx);
        answer = result instanceof Promise ? await result : result;
        if (answer instanceof Later) {
          this.settleLater(answer, envelope.pending);
          this.processed++;
          if (this.state === 'failed') return;
          continue;
        }
      } catch (error) {
        if (error instanceof ProtocolError) {
          envelope.pending?.reject(error);
          this.processed++;
          continue;
        }
        envelope.pending?.reject(
          error instanceof CrashWithReply ? error.reply : new ProtocolError('E_INTERNAL', `actor ${this.path} crashed while handling this message`, { cause: error }),
        );
        this.fail(error);
        return;
      }
      this.processed++;
      envelope.pending?.resolve(answer as R);
      if (this.state === 'failed') return;
    }
    this.processing = false;
    if (this.state === 'stopping') this.stopWaiter?.();
  }

  private settleLater(answer: Later<unknown>, pending: PendingAsk<unknown> | undefined): void {
    answer.promise.then(
      (value) => pending?.resolve(value),
      (error: unknown) => {
        if (error instanceof ProtocolError) {
          pending?.reject(error);
          return;
        }
        pending?.reject(
          error instanceof CrashWithReply ? error.reply : new ProtocolError('E_INTERNAL', `actor ${this.path} crashed while handling this message`, { cause: error }),
        );
        this.fail(error);
      },
    );
  }

  /**
   * Crash (also from outside the message loop: a timer or I/O callback the
   * behaviour owns). The behaviour's `stopped` hook still runs, bounded by
   * CLEANUP_MS, so that files it holds are closed before a new incarnation
   * opens them; only then is the supervisor told.
   */
  fail(error: unknown): void {
    if (this.state === 'failed' || this.state === 'stopped') return;
    this.state = 'failed';
    this.rejectQueued(`actor ${this.path} crashed and is being restarted`);
    this.stopWaiter?.();
    void this.cleanUp().then(() => this.onExit({ kind: 'error', error }));
  }

  private async cleanUp(): Promise<void> {
    if (!this.behavior.stopped) return;
    let timer: TimerHandle | undefined;
    const cleanup = Promise.resolve()
      .then(() => this.behavior.stopped!(this.ctx))
      .catch((error: unknown) => this.ctx.log.warn({ err: error }, 'cleanup after a crash failed'));
    await Promise.race([cleanup, new Promise<void>((resolve) => (timer = this.ctx.clock.setTimer(CLEANUP_MS, resolve)))]);
    timer?.cancel();
  }

  /**
   * Stops taking messages, lets the queued ones finish, then runs `stopped`.
   * Resolves when done; a supervisor that tires of waiting calls `kill`.
   */
  async stop(): Promise<void> {
    if (this.state !== 'running') return;
    this.state = 'stopping';
    if (this.processing) await new Promise<void>((resolve) => (this.stopWaiter = resolve));
    // A kill ends the actor without its stopped hook; a crash while draining runs it from fail().
    if ((this.state as CellState) !== 'stopping') return;
    try {
      await this.behavior.stopped?.(this.ctx);
    } catch (error) {
      this.ctx.log.warn({ err: error }, 'stopped hook failed');
    } finally {
      if ((this.state as CellState) === 'stopping') {
        this.state = 'stopped';
        this.onExit({ kind: 'normal' });
      }
    }
  }

  /** Abandons the actor at once: queued askers get E_UNAVAILABLE, nothing more runs. */
  kill(): void {
    if (this.state === 'stopped' || this.state === 'failed') return;
    this.state = 'stopped';
    this.rejectQueued(`actor ${this.path} was killed`);
    this.stopWaiter?.();
    this.onExit({ kind: 'killed' });
  }

  private rejectQueued(reason: string): void {
    for (const envelope of this.mailbox.takeAll()) envelope.pending?.reject(new ProtocolError('E_UNAVAILABLE', reason));
  }
}
