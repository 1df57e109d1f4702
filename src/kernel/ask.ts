// Asking with a deadline. The caller's stack is recorded when the ask is made,
// so a timeout that fires later still points at the code that asked.

import { ProtocolError } from '../../protocols/errors.js';
import type { Clock, TimerHandle } from '../ports/clock.js';

export interface AskOptions {
  timeoutMs?: number;
}

export const DEFAULT_ASK_TIMEOUT_MS = 5000;

/** The stack of whoever called `ask`, captured without the kernel's own frames. */
export function callerStack(skip: Function): string {
  const holder: { stack?: string } = {};
  Error.captureStackTrace(holder, skip);
  return holder.stack ?? '';
}

export function timeoutError(target: string, timeoutMs: number, stack: string): ProtocolError {
  const error = new ProtocolError('E_TIMEOUT', `ask to ${target} timed out after ${timeoutMs} ms`);
  error.stack = `${error.name}: ${error.message}\n${stack.split('\n').slice(1).join('\n')}`;
  return error;
}

/** A promise settled by whichever comes first: the answer or the deadline. */
export class PendingAsk<R> {
  readonly promise: Promise<R>;
  private resolveFn!: (value: R) => void;
  private rejectFn!: (error: unknown) => void;
  private timer: TimerHandle | undefined;
  private settled = false;

  constructor(clock: Clock, target: string, timeoutMs: number, stack: string) {
    this.promise = new Promise<R>((resolve, reject) => {
      this.resolveFn = resolve;
      this.rejectFn = reject;
    });
    this.timer = clock.setTimer(timeoutMs, () => this.reject(timeoutError(target, timeoutMs, stack)));
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
