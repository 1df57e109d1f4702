// Bench of the kernel (issue 2): a raw NATS request/reply echo of a usage
// record beside the same payload asked of an echo actor on another node
// through the kernel, over the `nats` transport and over `embedded`. The
// echo actor takes network messages through a remote schema, as every actor
// reachable from another node must (src/kernel/message-schema.ts); this one
// checks only that the body is a map, so the row measures the kernel's path.

import { encode } from '../protocols/codec.js';
import { ProtocolError } from '../protocols/errors.js';
import { ActorSystem } from '../src/kernel/system.js';
import { silentLogger } from '../src/log.js';
import { EmbeddedTransport } from '../src/transport/embedded.js';
import { connectNats } from '../src/transport/nats.js';
import type { Transport } from '../src/transport/transport.js';
import { connect } from '@nats-io/transport-node';
import { closedLoop, type Row } from './measure.js';

const record = {
  id: 'bench-0001',
  ts: Date.UTC(2026, 10, 1, 12),
  user_id: 'user-42',
  provider: 'anthropic',
  model: 'claude-sonnet-4',
  input_tokens: 1234,
  output_tokens: 321,
  cached_tokens: 0,
  cost_usd: 0.0085,
  latency_ms: 812,
  status: 'success',
  session_id: 'session-7',
  operation: 'chat',
};

export interface KernelBenchOptions {
  natsUrl: string;
  warmupMs: number;
  durationMs: number;
  concurrencies: number[];
}

export async function kernelBench(options: KernelBenchOptions): Promise<Row[]> {
  const rows: Row[] = [];
  const payload = encode(record);
  const run = (call: () => Promise<unknown>, concurrency: number) =>
    closedLoop(call, { concurrency, warmupMs: options.warmupMs, durationMs: options.durationMs });
  const tag = `bench${process.pid}`;

  // The baseline is nats.js as a user gets it: default options.
  const server = await connect({ servers: options.natsUrl, name: 'bench-echo-server' });
  const client = await connect({ servers: options.natsUrl, name: 'bench-echo-client' });
  server.subscribe(`${tag}.echo`, { callback: (_error, msg) => void msg.respond(msg.data) });
  await server.flush();
  // The same echo with nats.js's per-request async stack traces off, as the kernel's transport runs it.
  const lean = await connectNats({ servers: options.natsUrl, name: 'bench-echo-client-lean' });

  const natsPair = await systemPair(tag, await connectNats({ servers: options.natsUrl }), await connectNats({ servers: options.natsUrl }));
  const embedded = new EmbeddedTransport();
  const embeddedPair = await systemPair(`${tag}e`, embedded, embedded);

  for (const concurrency of options.concurrencies) {
    const raw = await run(() => client.request(`${tag}.echo`, payload, { timeout: 5000 }), concurrency);
    rows.push({ group: 'kernel', name: 'raw NATS request/reply echo (nats.js defaults)', concurrency, measurement: raw });
    const rawLean = await run(() => lean.connection.request(`${tag}.echo`, payload, { timeout: 5000 }), concurrency);
    rows.push({ group: 'kernel', name: 'raw echo, nats.js async traces off', concurrency, measurement: rawLean, baseline: raw });
    const overNats = await run(() => natsPair.ask(record), concurrency);
    rows.push({ group: 'kernel', name: 'kernel ask, nats transport', concurrency, measurement: overNats, baseline: raw, target: '>= 0.85' });
    const overEmbedded = await run(() => embeddedPair.ask(record), concurrency);
    rows.push({ group: 'kernel', name: 'kernel ask, embedded transport', concurrency, measurement: overEmbedded, baseline: raw });
  }

  await Promise.all([server.drain(), client.drain(), lean.drain(), natsPair.close(), embeddedPair.close()]);
  return rows;
}

/** The echo actor's remote schema: any map. */
const aMap = {
  parse(body: unknown): unknown {
    if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new ProtocolError('E_BAD_REQUEST', 'echo takes a map', { field: 'body' });
    return body;
  },
};

/** Node a asks an echo actor on node b across the given transports. */
async function systemPair(tag: string, transportA: Transport, transportB: Transport) {
  const a = new ActorSystem({ nodeId: `${tag}-a`, log: silentLogger, transport: transportA, subjectPrefix: tag, mailboxCapacity: 4096 });
  const b = new ActorSystem({ nodeId: `${tag}-b`, log: silentLogger, transport: transportB, subjectPrefix: tag, mailboxCapacity: 4096 });
  b.spawn(`${tag}-b/echo`, { receive: (message: unknown) => message }, { remote: aMap });
  await b.listen();
  const echo = a.ref(`${tag}-b/echo`);
  return {
    ask: (message: unknown) => echo.ask(message, { timeoutMs: 5000 }),
    close: async () => {
      b.unlisten();
      await transportA.drain();
      if (transportB !== transportA) await transportB.drain();
    },
  };
}
