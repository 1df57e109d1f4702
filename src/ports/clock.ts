// The clock port: every timer and timestamp in the runtime comes through here,
// so a test can run a supervisor or a shard on a clock it moves by hand.

export interface TimerHandle {
  cancel(): void;
}

export interface Clock {
  /** Wall-clock epoch milliseconds. */
  now(): number;
  /** Monotonic milliseconds, for durations. */
  monotonicMs(): number;
  setTimer(delayMs: number, fire: () => void): TimerHandle;
  /** Resolves after delayMs on this clock. */
  sleep(delayMs: number): Promise<void>;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  monotonicMs: () => performance.now(),
  setTimer(delayMs, fire) {
    const timer = setTimeout(fire, delayMs);
    timer.unref?.();
    return { cancel: () => clearTimeout(timer) };
  },
  sleep: (delayMs) => new Promise((resolve) => setTimeout(resolve, delayMs)),
};

interface PendingTimer {
  dueMs: number;
  order: number;
  fire: () => void;
}

/**
 * A clock that only moves when told. Timers fire in due order during
 * `advance`, each followed by a turn of the microtask queue so that async
 * work they start can settle before the next one fires.
 */
export class ManualClock implements Clock {
  private nowMs: number;
  private monoMs = 0;
  private order = 0;
  private timers = new Set<PendingTimer>();

  constructor(startMs = Date.UTC(2026, 0, 1)) {
    this.nowMs = startMs;
  }

  now(): number {
    return this.nowMs;
  }

  monotonicMs(): number {
    return this.monoMs;
  }

  setTimer(delayMs: number, fire: () => void): TimerHandle {
    const timer: PendingTimer = { dueMs: this.monoMs + Math.max(0, delayMs), order: this.order++, fire };
    this.timers.add(timer);
    return { cancel: () => this.timers.delete(timer) };
  }

  sleep(delayMs: number): Promise<void> {
    return new Promise((resolve) => this.setTimer(delayMs, resolve));
  }

  get pendingTimers(): number {
    return this.timers.size;
  }

  async advance(deltaMs: number): Promise<void> {
    const targetMs = this.monoMs + deltaMs;
    for (;;) {
      const next = this.nextDue(targetMs);
      if (next === undefined) break;
      this.timers.delete(next);
      this.nowMs += next.dueMs - this.monoMs;
      this.monoMs = next.dueMs;
      next.fire();
      await settle();
    }
    this.nowMs += targetMs - this.monoMs;
    this.monoMs = targetMs;
    await settle();
  }

  private nextDue(limitMs: number): PendingTimer | undefined {
    let next: PendingTimer | undefined;
    for (const timer of this.timers) {
      if (timer.dueMs > limitMs) continue;
      if (!next || timer.dueMs < next.dueMs || (timer.dueMs === next.dueMs && timer.order < next.order)) next = timer;
    }
    return next;
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
  await new Promise<void>((resolve) => setImmediate(resolve));
}
