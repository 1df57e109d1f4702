/**
 * Waiting in tests: on a condition polled until a generous deadline, on a
 * promise bounded by one, or for the clock to pass a moment. None asserts how long anything took; when the
 * deadline passes the error says what was awaited and what was last seen, so
 * a red test on a busy machine names its cause instead of "timeout".
 */

/** Deadline for a wait when the caller gives none: generous, for a loaded 2-core machine. */
export const WAIT_DEADLINE_MS = 60_000;

export interface WaitOptions {
  /** Fail after this long (default {@link WAIT_DEADLINE_MS}). */
  deadlineMs?: number;
  /** Poll interval (default 25 ms). */
  pollMs?: number;
}

/**
 * Polls `probe` until it returns something other than `undefined`, `false`
 * or `null`, and returns that. A probe that throws stops the wait with its
 * error. Past the deadline, throws "timed out after N ms waiting for <what>"
 * with the probe's last `describe()` when given.
 */
export async function waitFor<T>(
  what: string,
  probe: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  options: WaitOptions & { describe?: () => unknown } = {},
): Promise<T> {
  const deadlineMs = options.deadlineMs ?? WAIT_DEADLINE_MS;
  const pollMs = options.pollMs ?? 25;
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== null && value !== false) return value;
    if (Date.now() > deadline) {
      const last = options.describe ? `; last seen: ${JSON.stringify(options.describe())}` : '';
      throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}${last}`);
    }
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

/** Resolves as `promise` does, or fails naming `what` once the deadline passes. */
export async function within<T>(what: string, promise: Promise<T>, deadlineMs = WAIT_DEADLINE_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${deadlineMs} ms waiting for ${what}`)), deadlineMs);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The current millisecond, returned once the clock has moved past it: a
 * time T such that whatever finished before the call happened at or before
 * T, and whatever starts after it happens after T (a point-in-time restore's
 * `to_time` between two writes). Waits on the clock, never a fixed sleep.
 */
export async function clockMoment(): Promise<number> {
  const at = Date.now();
  while (Date.now() <= at) await new Promise((resolve) => setImmediate(resolve));
  return at;
}
