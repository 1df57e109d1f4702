// Asking with a deadline. The caller's stack is recorded when the ask is made,
// so a timeout that fires later still points at the code that asked.

import { ProtocolError } from '../../protocols/errors.js';
import type { Clock, TimerHandle } from '../ports/clock.js';

export interface AskOptions {
  timeoutMs?: number;
  /**
   * Names the asker in a timeout error instead of its captured stack. Hot
   * paths inside the runtime pass one: capturing a stack on every ask costs
   * more than the ask itself.
   */
  caller?: string;
}

export const DEFAULT_ASK_TIMEOUT_MS = 5000;
/** The longest deadline an ask may carry to another node. */
export const ASK_TIMEOUT_MS_MAX = 10 * 60 * 1000;

/**
 * The stack of whoever called `ask`, without the kernel's own frames.
 * Capturing is cheap; V8 formats `stack` only when it is read, which
 * happens only if the ask times out.
 */
export interface CallerStack {
  stack?: string;
}

/** Frames kept: enough to name the caller and its callers, few enough to stay cheap on every ask. */
const CALLER_FRAMES = 6;

export function captureCaller(skip: Function): CallerStack {
  const holder: CallerStack = {};
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = CALLER_FRAMES;
  Error.captureStackTrace(holder, skip);
  Error.stackTraceLimit = limit;
  return holder;
}

/** A caller named by a label rather than by its stack. */
export function namedCaller(name: string): CallerStack {
  return { stack: `Error\n    at ${name}` };
}

export function timeoutError(target: string, timeoutMs: number, caller: CallerStack): ProtocolError {
  const error = new ProtocolError('E_TIMEOUT', `ask to ${target} timed out after ${timeoutMs} ms`);
  const frames = (caller.stack ?? '').split('\n').slice(1).join('\n');
  error.stack = `${error.name}: ${error.message}\n${frames}`;
  return error;
}

/** A promise settled by whichever comes first: the answer or the deadline. */
export class PendingAsk<R> {
  readonly promise: Promise<R>;
  private resolveFn!: (value: R) => void;
  private rejectFn!: (error: unknown) => void;
  private timer: TimerHandle | undefined;
  private settled = false;

  constructor(clock: Clock, target: string, timeoutMs: number, caller: CallerStack) {
    this.promise = new Promise<R>((resolve, reject) => {
      this.resolveFn = resolve;
      this.rejectFn = reject;
    });
    this.timer = clock.setTimer(timeoutMs, () => this.reject(timeoutError(target, timeoutMs, caller)));
  }

  resolve(value: R): void {
    if (this.settled) return;
    this.settled = true;
    this.timer?.cancel();
    this.resolveFn(value);
  }

  reject(error: unknown): void {
    if (this.settled) return;
    this.settled = true;
    this.timer?.cancel();
    this.rejectFn(error);
  }
}
