// Bounded concurrency for the CLI's streams of requests (ingest, demo): at
// most `max` requests in flight, and the first failure stops the stream.
// A failed request never becomes an unhandled rejection: it is kept here
// for the caller, who stops sending and abandons what is still in flight
// instead of waiting out each request's timeout.

export class InFlight {
  private readonly pending = new Set<Promise<void>>();
  private failure: { error: unknown } | undefined;

  constructor(private readonly max: number) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`in-flight bound must be a whole number of at least 1, got ${max}`);
  }

  /** The first failure, once one request has failed. */
  get failed(): { error: unknown } | undefined {
    return this.failure;
  }

  get size(): number {
    return this.pending.size;
  }

  /** Tracks one request; resolves once there is room for another, or as soon as one has failed. */
  async add(work: Promise<void>): Promise<void> {
    const tracked: Promise<void> = work
      .then(
        () => undefined,
        (error: unknown) => {
          this.failure ??= { error };
        },
      )
      .finally(() => this.pending.delete(tracked));
    this.pending.add(tracked);
    while (this.pending.size >= this.max && !this.failure) await Promise.race(this.pending);
  }

  /** Waits until nothing is in flight, or until one request has failed. */
  async settle(): Promise<void> {
    while (this.pending.size > 0 && !this.failure) await Promise.race(this.pending);
  }
}
