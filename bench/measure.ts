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
  return { requests, errors, seconds, perSecond: requests / seconds, p50Ms: percentile(sorted, 0.5), p99Ms: percentile(sorted, 0.99) };
}

export interface Row {
  group: string;
  name: string;
  concurrency: number;
  measurement: Measurement;
  baseline?: Measurement;
  target?: string;
}

export function renderRows(rows: Row[]): string {
  const headers = ['bench', 'concurrency', 'req/s', 'p50 ms', 'p99 ms', 'errors', 'ratio to baseline', 'target'];
  return renderTable(
    headers,
    rows.map((row) => [
      row.name,
      String(row.concurrency),
      Math.round(row.measurement.perSecond).toLocaleString('en-US'),
      row.measurement.p50Ms.toFixed(3),
      row.measurement.p99Ms.toFixed(3),
      String(row.measurement.errors),
      row.baseline ? (row.measurement.perSecond / row.baseline.perSecond).toFixed(2) : 'baseline',
      row.target ?? '',
    ]),
  );
}
