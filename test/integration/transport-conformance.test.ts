// One conformance suite, run against every transport: the embedded
// (in-process) one and NATS against a real nats-server. Whatever a caller of
// the Transport port may rely on is checked here, the same way for both.

import { randomBytes } from 'node:crypto';
import t, { type Test } from 'tap';
import { ProtocolError } from '../../protocols/errors.js';
import { ActorSystem } from '../../src/kernel/system.js';
import type { RemoteSchema } from '../../src/kernel/message-schema.js';
import { silentLogger } from '../../src/log.js';
import { EmbeddedTransport } from '../../src/transport/embedded.js';
import { connectNats, NatsTransport } from '../../src/transport/nats.js';
import type { Transport, TransportMessage } from '../../src/transport/transport.js';
import { waitFor, within } from '../helpers/wait.js';

const NATS_URL = process.env.USAGE_TRACKER_NATS_URL ?? 'nats://127.0.0.1:4222';
const RUN_PREFIX = `conf.${process.pid}.${Date.now()}`;
/**
 * The deadline of a request that must be answered: generous for a loaded
 * machine, since what is checked is the answer, never how soon it came.
 */
const ANSWER_MS = 30_000;

/** Two endpoints on one bus: `client` asks, `server` answers. */
interface Bus {
  client: Transport;
  server: Transport;
}

interface TransportKind {
  name: string;
  /** Opens a fresh pair of endpoints; closing them is registered on `t`. */
  open(t: Test): Promise<Bus>;
}

/** Makes sure subscriptions made on `transport` are in force for every other endpoint. */
async function settle(transport: Transport): Promise<void> {
  if (transport instanceof NatsTransport && !transport.closed) await transport.flush();
  await new Promise<void>((resolve) => setImmediate(resolve));
}

function closeQuietly(transport: Transport): void {
  if (transport instanceof NatsTransport && !transport.closed) void transport.connection.close().catch(() => undefined);
}

const kinds: TransportKind[] = [
  {
    name: 'embedded',
    async open() {
      const transport = new EmbeddedTransport();
      return { client: transport, server: transport };
    },
  },
  {
    name: 'nats',
    async open(t) {
      const client = await connectNats({ servers: NATS_URL, name: 'conformance-client', connectTimeoutMs: 3000 });
      const server = await connectNats({ servers: NATS_URL, name: 'conformance-server', connectTimeoutMs: 3000 });
      t.teardown(() => {
        closeQuietly(client);
        closeQuietly(server);
      });
      return { client, server };
    },
  },
];

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const text = (bytes: Uint8Array) => decoder.decode(bytes);

async function failure(promise: Promise<unknown>): Promise<ProtocolError> {
  try {
    await promise;
  } catch (error) {
    return error as ProtocolError;
  }
  throw new Error('expected a failure, got a reply');
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

/** A gate the test opens by hand. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

let subjectCounter = 0;
function subjectBase(kind: string): string {
  return `${RUN_PREFIX}.${kind}.s${++subjectCounter}`;
}

function conformance(kind: TransportKind): void {
  t.test(`${kind.name}: request/reply carries binary payloads byte for byte`, async (t) => {
    const { client, server } = await kind.open(t);
    const subject = `${subjectBase(kind.name)}.bytes`;
    const received: Uint8Array[] = [];
    server.subscribe(subject, (msg) => {
      received.push(msg.data.slice());
      msg.respond(Uint8Array.from(msg.data).reverse());
    });
    await settle(server);
    const payloads = [new Uint8Array(0), Uint8Array.of(0), Uint8Array.of(0, 255, 0, 13, 10), randomBytes(4096), randomBytes(512 * 1024)];
    for (const payload of payloads) {
      const reply = await client.request(subject, payload, { timeoutMs: ANSWER_MS });
      const want = Uint8Array.from(payload).reverse();
      t.ok(sameBytes(received.at(-1)!, payload), `responder got the ${payload.byteLength} bytes sent`);
      t.ok(sameBytes(reply.data, want), `requester got the ${payload.byteLength} bytes replied`);
    }
    t.equal(received.length, payloads.length);
  });

  t.test(`${kind.name}: headers travel with the request and with the reply`, async (t) => {
    const { client, server } = await kind.open(t);
    const subject = `${subjectBase(kind.name)}.headers`;
    const seen: (Readonly<Record<string, string>> | undefined)[] = [];
    server.subscribe(subject, (msg) => {
      seen.push(msg.headers);
      const contentType = msg.headers?.['Content-Type'];
      if (contentType) msg.respond(encoder.encode('with'), { 'Content-Type': contentType, 'Usage-Protocol': '1' });
      else msg.respond(encoder.encode('without'));
    });
    await settle(server);
    const reply = await client.request(subject, encoder.encode('{}'), { timeoutMs: ANSWER_MS, headers: { 'Content-Type': 'application/json', 'X-Trace': 'abc 123' } });
    t.equal(text(reply.data), 'with');
    t.match(seen[0], { 'Content-Type': 'application/json', 'X-Trace': 'abc 123' });
    t.match(reply.headers, { 'Content-Type': 'application/json', 'Usage-Protocol': '1' });

    const plain = await client.request(subject, encoder.encode('{}'), { timeoutMs: ANSWER_MS });
    t.equal(text(plain.data), 'without');
    t.equal(seen[1], undefined, 'no headers sent, none received');
    t.equal(plain.headers, undefined, 'no headers replied, none received');
  });

  t.test(`${kind.name}: a queue group shares requests, each to exactly one member`, async (t) => {
    const { client, server } = await kind.open(t);
    const subject = `${subjectBase(kind.name)}.queue`;
    const byMember: number[][] = [[], [], []];
    byMember.forEach((got, member) =>
      server.subscribe(
        subject,
        (msg) => {
          got.push(Number(text(msg.data)));
          msg.respond(encoder.encode(String(member)));
        },
        { queue: 'workers' },
      ),
    );
    await settle(server);
    const replies = await Promise.all(
      Array.from({ length: 300 }, (_, i) => client.request(subject, encoder.encode(String(i)), { timeoutMs: ANSWER_MS }).then((r) => Number(text(r.data)))),
    );
    const all = byMember.flat().sort((a, b) => a - b);
    t.same(all, Array.from({ length: 300 }, (_, i) => i), 'every request delivered exactly once');
    t.ok(
      byMember.every((got) => got.length > 0),
      `every member got some (${byMember.map((got) => got.length).join('/')})`,
    );
    replies.forEach((member, i) => {
      if (!byMember[member]?.includes(i)) t.fail(`reply ${i} came from member ${member} that did not get it`);
    });
    t.equal(replies.length, 300);
  });

  t.test(`${kind.name}: plain subscribers each get a published message`, async (t) => {
    const { client, server } = await kind.open(t);
    const subject = `${subjectBase(kind.name)}.fanout`;
    const got: string[][] = [[], [], []];
    for (const box of got) server.subscribe(subject, (msg) => void box.push(`${text(msg.data)}:${msg.canRespond}`));
    await settle(server);
    // 'end' comes last from one publisher, so once every subscriber has it, nothing before it is still on its way.
    for (const word of ['one', 'two', 'end']) client.publish(subject, encoder.encode(word));
    await settle(client);
    await waitFor('every fan-out subscriber to get the end marker', () => got.every((box) => box.includes('end:false')), { describe: () => got });
    t.same(got, [
      ['one:false', 'two:false', 'end:false'],
      ['one:false', 'two:false', 'end:false'],
      ['one:false', 'two:false', 'end:false'],
    ]);
  });

  t.test(`${kind.name}: wildcard subscriptions a.* and a.>`, async (t) => {
    const { client, server } = await kind.open(t);
    const base = subjectBase(kind.name);
    const star: string[] = [];
    const tail: string[] = [];
    server.subscribe(`${base}.a.*`, (msg) => void star.push(msg.subject.slice(base.length + 1)));
    server.subscribe(`${base}.a.>`, (msg) => void tail.push(msg.subject.slice(base.length + 1)));
    await settle(server);
    for (const suffix of ['a', 'a.b', 'a.b.c', 'b.a', 'ab.c', 'a.end']) client.publish(`${base}.${suffix}`, encoder.encode(suffix));
    await settle(client);
    // a.end is published last, so once both subscriptions have it nothing earlier is still on its way.
    await waitFor('both wildcard subscriptions to get the a.end marker', () => star.includes('a.end') && tail.includes('a.end'), { describe: () => ({ star, tail }) });
    t.same(star, ['a.b', 'a.end'], 'a.* matches exactly one more token');
    t.same(tail, ['a.b', 'a.b.c', 'a.end'], 'a.> matches one or more tokens');
  });

  t.test(`${kind.name}: a payload over the bus limit is delivered whole or refused with E_TOO_LARGE`, async (t) => {
    // Never a raw library error, and never E_UNAVAILABLE: retrying cannot help.
    const { client, server } = await kind.open(t);
    const subject = `${subjectBase(kind.name)}.huge`;
    const received: number[] = [];
    server.subscribe(subject, (msg) => {
      received.push(msg.data.byteLength);
      msg.respond(encoder.encode('got it'));
    });
    await settle(server);
    const huge = randomBytes(2 * 1024 * 1024);
    t.equal(client.payloadBytesMax, 1024 * 1024, 'both transports carry at most 1 MiB (the NATS default max_payload)');
    t.throws(() => client.publish(subject, huge), { name: 'ProtocolError', code: 'E_TOO_LARGE' }, 'publish refuses with E_TOO_LARGE');
    const requested = await client.request(subject, huge, { timeoutMs: ANSWER_MS }).then(
      (reply) => text(reply.data),
      (error: unknown) => error,
    );
    t.match(requested, { name: 'ProtocolError', code: 'E_TOO_LARGE' }, 'request refuses with E_TOO_LARGE');
    t.same(received, [], 'nothing oversized was delivered');
    const fits = await client.request(subject, huge.subarray(0, 1024 * 1024 - 1024), { timeoutMs: ANSWER_MS });
    t.equal(text(fits.data), 'got it', 'a payload under the limit goes through');
  });

  t.test(`${kind.name}: no responders fails at once with E_UNAVAILABLE`, async (t) => {
    // At once, not at the deadline: the request's deadline is ten minutes, far
    // past what `within` waits, so an answer only at the deadline fails here.
    const { client } = await kind.open(t);
    const request = client.request(`${subjectBase(kind.name)}.nobody`, encoder.encode('?'), { timeoutMs: 600_000 });
    const error = await within('E_UNAVAILABLE for a subject nobody serves, well before the ten-minute request deadline', failure(request));
    t.ok(error instanceof ProtocolError);
    t.equal(error.code, 'E_UNAVAILABLE');
    t.match(error.message, /no responders/);
  });

  t.test(`${kind.name}: a responder that never answers gives E_TIMEOUT naming timeoutMs`, async (t) => {
    const { client, server } = await kind.open(t);
    const subject = `${subjectBase(kind.name)}.mute`;
    let heard = 0;
    server.subscribe(subject, () => void heard++);
    await settle(server);
    const error = await within('the request to a mute responder to time out', failure(client.request(subject, encoder.encode('hello?'), { timeoutMs: 300 })));
    t.equal(error.code, 'E_TIMEOUT');
    t.match(error.message, /timed out after 300 ms/);
    // On a loaded machine the deadline may pass before the responder's turn comes; it must still come, once.
    await waitFor('the mute responder to hear the request', () => heard > 0);
    t.equal(heard, 1, 'the request did reach the responder');
  });

  t.test(`${kind.name}: unsubscribe stops delivery`, async (t) => {
    const { client, server } = await kind.open(t);
    const subject = `${subjectBase(kind.name)}.unsub`;
    let heard = 0;
    const subscription = server.subscribe(subject, (msg) => {
      heard++;
      msg.respond(encoder.encode('here'));
    });
    t.equal(subscription.subject, subject);
    await settle(server);
    t.equal(text((await client.request(subject, encoder.encode('1'), { timeoutMs: ANSWER_MS })).data), 'here');
    subscription.unsubscribe();
    await settle(server);
    const error = await failure(client.request(subject, encoder.encode('2'), { timeoutMs: 1000 }));
    t.equal(error.code, 'E_UNAVAILABLE');
    // A witness subscribed now gets '3'; by then the old subscription would have had it too.
    const witnessed: string[] = [];
    server.subscribe(subject, (msg) => void witnessed.push(text(msg.data)));
    await settle(server);
    client.publish(subject, encoder.encode('3'));
    await settle(client);
    await waitFor("the witness subscription to get '3'", () => witnessed.includes('3'), { describe: () => witnessed });
    t.equal(heard, 1, 'nothing delivered after unsubscribe');
  });

  t.test(`${kind.name}: drain waits for a handler in flight, then refuses requests`, async (t) => {
    const { client, server } = await kind.open(t);
    const subject = `${subjectBase(kind.name)}.drain`;
    const order: string[] = [];
    const started = gate();
    const release = gate();
    server.subscribe(subject, async (msg: TransportMessage) => {
      order.push('handler started');
      started.open();
      await release.promise;
      order.push('handler responds');
      msg.respond(encoder.encode('late but here'));
    });
    await settle(server);
    const reply = client.request(subject, encoder.encode('x'), { timeoutMs: ANSWER_MS });
    await within('the drain handler to start', started.promise);
    const draining = server.drain().then(() => void order.push('drained'));
    // A round trip through the bus gives a drain that does not wait its chance to finish first.
    await settle(client);
    release.open();
    const answer = await within('the reply from the handler in flight', reply);
    await within('the drain to finish', draining);
    t.equal(text(answer.data), 'late but here', 'the request in flight was answered');
    t.same(order, ['handler started', 'handler responds', 'drained'], 'drain resolved only after the handler responded');
    t.ok(server.closed, 'closed after drain');
    const after = await failure(server.request(subject, encoder.encode('y'), { timeoutMs: 1000 }));
    t.equal(after.code, 'E_UNAVAILABLE', 'a request on the drained transport fails');
    t.throws(() => server.publish(subject, encoder.encode('z')), { code: 'E_UNAVAILABLE' });
    t.throws(() => server.subscribe(subject, () => undefined), { code: 'E_UNAVAILABLE' });
    if (client !== server) {
      const fromOther = await failure(client.request(subject, encoder.encode('y'), { timeoutMs: 1000 }));
      t.equal(fromOther.code, 'E_UNAVAILABLE', 'nobody answers the subject any more');
    }
    await server.drain();
    t.pass('a second drain is harmless');
  });

  t.test(`${kind.name}: an actor ask across two actor systems`, async (t) => {
    const { client, server } = await kind.open(t);
    const prefix = `${subjectBase(kind.name)}.actors`;
    const n1 = new ActorSystem({ nodeId: 'n1', log: silentLogger, transport: client, subjectPrefix: prefix, askTimeoutMs: ANSWER_MS });
    const n2 = new ActorSystem({ nodeId: 'n2', log: silentLogger, transport: server, subjectPrefix: prefix, askTimeoutMs: ANSWER_MS });
    let total = 0;
    n2.spawn<{ add?: number; fail?: boolean; blob?: Uint8Array }, unknown>('n2/echo', {
      receive(message) {
        if (message.fail) throw new ProtocolError('E_VALIDATION', 'add must be a number', { field: 'add' });
        if (message.blob) return { size: message.blob.byteLength, first: message.blob[0] };
        total += message.add ?? 0;
        return { total, from: 'n2/echo' };
      },
    }, { remote: { parse: (body) => body as { add?: number; fail?: boolean; blob?: Uint8Array } } satisfies RemoteSchema<{ add?: number; fail?: boolean; blob?: Uint8Array }> });
    n2.listen();
    await settle(server);
    const ref = n1.ref<{ add?: number; fail?: boolean; blob?: Uint8Array }, unknown>('n2/echo');
    t.same(await ref.ask({ add: 2 }), { total: 2, from: 'n2/echo' });
    t.same(await ref.ask({ add: 40 }), { total: 42, from: 'n2/echo' });
    t.same(await ref.ask({ blob: Uint8Array.of(9, 8, 7) }), { size: 3, first: 9 });
    const refused = await failure(ref.ask({ fail: true }));
    t.ok(refused instanceof ProtocolError);
    t.match(refused, { code: 'E_VALIDATION', field: 'add', message: 'add must be a number' });

    ref.tell({ add: 8 });
    await settle(client);
    await waitFor('the remote tell to add 8 (total 50)', () => total === 50, { describe: () => ({ total }) });
    t.equal(total, 50, 'a remote tell arrives');

    const answers = await Promise.all(Array.from({ length: 50 }, () => ref.ask({ add: 1 })));
    t.same((answers.at(-1) as { total: number }).total, 100, 'concurrent asks are each processed once');

    await t.rejects(n1.ref('n2/missing').ask({}), { code: 'E_UNAVAILABLE' });
    await t.rejects(n1.ref('n3/echo').ask({}, { timeoutMs: 2000 }), { code: 'E_UNAVAILABLE', message: /node n3 does not answer/ });
    n2.unlisten();
  });
}

for (const kind of kinds) conformance(kind);
