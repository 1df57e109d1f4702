// Loads generated records into a node through its embedded transport, in
// 1,000-record batches with 8 in flight: how the dataset and restart benches
// fill a node before they measure it.

import { decode, encode } from '../protocols/codec.js';
import { subjects } from '../protocols/subjects.js';
import { createGenerator } from '../src/demo/generate.js';
import type { EmbeddedTransport } from '../src/transport/embedded.js';

const DAY_MS = 86_400_000;

/** Loads the dataset through the embedded transport in 1,000-record batches. */
export async function load(bench: { embedded: EmbeddedTransport; prefix: string }, total: number, users: number, days: number, seed: number, log: (line: string) => void): Promise<number> {
  const generator = createGenerator({ seed, users, fromMs: Date.now() - days * DAY_MS, days, count: total, idPrefix: `ds${seed}` });
  const subject = subjects(bench.prefix).endpoint('ingest');
  const started = performance.now();
  const inFlight = new Set<Promise<void>>();
  for (let sent = 0; sent < total; ) {
    const size = Math.min(1000, total - sent);
    const records = Array.from({ length: size }, (_, i) => generator.recordAt(sent + i));
    sent += size;
    const task = bench.embedded.request(subject, encode({ records }), { timeoutMs: 120_000 }).then((reply) => {
      const body = decode(reply.data, 'msgpack', { payloadBytesMax: 64 << 20, nestingDepthMax: 16 }) as { ok: boolean };
      if (!body.ok) throw new Error(`load refused: ${JSON.stringify(body).slice(0, 200)}`);
    });
    const tracked = task.finally(() => inFlight.delete(tracked));
    inFlight.add(tracked);
    if (inFlight.size >= 8) await Promise.race(inFlight);
    if (sent % 500_000 === 0) log(`storage: loaded ${sent.toLocaleString('en-US')} records`);
  }
  await Promise.all(inFlight);
  return (performance.now() - started) / 1000;
}
