// Closed-loop load: `concurrency` callers each issue the next request as soon
// as the previous one answers, for a fixed time after a warm-up. Reports
// throughput and latency percentiles.

import { renderTable } from '../src/text-table.js';

export interface Measurement {
  requests: number;
  errors: number;
  seconds: number;
  perSecond: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
}

export function percentile(sorted: Float64Array, fraction: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))]!;
}

export async function closedLoop(
  call: () => Promise<unknown>,
  options: { concurrency: number; warmupMs: number; durationMs: number },
): Promise<Measurement> {
  let phase: 'warmup' | 'measure' | 'done' = 'warmup';
  const latencies: number[] = [];
  let errors = 0;
  let started = 0;
  const loop = async () => {
    for (let turn = 1; phase !== 'done'; turn++) {
      // A caller that never leaves the microtask queue would starve the timers that end the phases.
      if (turn % 64 === 0) await new Promise((resolve) => setImmediate(resolve));
      const t0 = performance.now();
      try {
        await call();
      } catch {
        if (phase === 'measure') errors++;
        continue;
      }
      if (phase === 'measure') latencies.push(performance.now() - t0);
    }
  };
  const loops = Array.from({ length: options.concurrency }, loop);
  await new Promise((resolve) => setTimeout(resolve, options.warmupMs));
  phase = 'measure';
  started = performance.now();
  await new Promise((resolve) => setTimeout(resolve, options.durationMs));
  const seconds = (performance.now() - started) / 1000;
  phase = 'done';
  const requests = latencies.length;
  await Promise.all(loops);
  const sorted = Float64Array.from(latencies).sort();
  return { requests, errors, seconds, perSecond: requests / seconds, p50Ms: percentile(sorted, 0.5), p95Ms: percentile(sorted, 0.95), p99Ms: percentile(sorted, 0.99) };
}

/**
 * Open loop: starts `ratePerSecond` calls a second whatever the answers do,
 * for durationMs, and measures each from its scheduled start (so a stall
 * shows as latency, not as a lower offered rate). Calls in flight are bounded.
 */
export async function openLoop(
  call: () => Promise<unknown>,
  options: { ratePerSecond: number; durationMs: number; inFlightMax?: number },
): Promise<Measurement & { offeredPerSecond: number; dropped: number }> {
  const latencies: number[] = [];
  let errors = 0;
  let dropped = 0;
  let inFlight = 0;
  const inFlightMax = options.inFlightMax ?? 10_000;
  const started = performance.now();
  const pending = new Set<Promise<void>>();
  let issued = 0;
  while (performance.now() - started < options.durationMs) {
    const due = Math.floor(((performance.now() - started) / 1000) * options.ratePerSecond);
    for (; issued < due; issued++) {
      const scheduled = started + (issued / options.ratePerSecond) * 1000;
      if (inFlight >= inFlightMax) {
        dropped++;
        continue;
      }
      inFlight++;
      const task = call().then(
        () => void latencies.push(performance.now() - scheduled),
        () => void errors++,
      );
      const tracked = task.finally(() => {
        inFlight--;
        pending.delete(tracked);
      });
      pending.add(tracked);
    }
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  await Promise.all(pending);
  const seconds = (performance.now() - started) / 1000;
  const sorted = Float64Array.from(latencies).sort();
  return {
    requests: latencies.length,
    errors,
    dropped,
    seconds,
    perSecond: latencies.length / seconds,
    offeredPerSecond: issued / seconds,
    p50Ms: percentile(sorted, 0.5),
    p95Ms: percentile(sorted, 0.95),
    p99Ms: percentile(sorted, 0.99),
  };
}

export interface Row {
  group: string;
  name: string;
  /** Concurrency, or a description of the load such as '10k/s offered'. */
  concurrency: number | string;
  measurement: Measurement;
  baseline?: Measurement;
  target?: string;
  /** Shown instead of req/s when the unit is not requests (records/s, ms, MB). */
  value?: string;
}

export function renderRows(rows: Row[]): string {
  const headers = ['bench', 'load', 'result', 'p50 ms', 'p95 ms', 'p99 ms', 'errors', 'ratio to baseline', 'target'];
  const ms = (value: number | undefined) => (value === undefined || Number.isNaN(value) ? '' : value.toFixed(3));
  return renderTable(
    headers,
    rows.map((row) => [
      row.name,
      String(row.concurrency),
      row.value ?? `${Math.round(row.measurement.perSecond).toLocaleString('en-US')} req/s`,
      ms(row.measurement.p50Ms),
      ms(row.measurement.p95Ms),
      ms(row.measurement.p99Ms),
      String(row.measurement.errors),
      row.baseline ? (row.measurement.perSecond / row.baseline.perSecond).toFixed(2) : 'baseline',
      row.target ?? '',
    ]),
  );
}
