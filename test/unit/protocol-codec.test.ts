// The body codec as a client in any language sees it: what bytes the service
// writes, what bytes it accepts, and which error code each bad body earns.

import t from 'tap';
import { Packr, Unpackr, unpack } from 'msgpackr';
import { decode, encode, encodingOf } from '../../protocols/codec.js';
import { ProtocolError, errorReply, toProtocolError } from '../../protocols/errors.js';
import { DEFAULT_LIMITS } from '../../protocols/limits.js';

/**
 * A decoder that knows only the standard MessagePack types (nil, bool, int,
 * float, str, bin, array, map), as a library in another language does. It
 * throws on any extension type, on 0xc1 and on trailing bytes.
 */
function standardUnpack(bytes: Uint8Array): unknown {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  let at = 0;
  const take = (n: number): number => {
    if (at + n > bytes.length) throw new Error('truncated');
    const start = at;
    at += n;
    return start;
  };
  const str = (n: number) => utf8.decode(bytes.subarray(take(n), at));
  const array = (n: number) => Array.from({ length: n }, () => value());
  const map = (n: number) => {
    const out: Record<string, unknown> = {};
    for (let i = 0; i < n; i++) {
      const key = value();
      if (typeof key !== 'string') throw new Error('non-string map key');
      out[key] = value();
    }
    return out;
  };
  const value = (): unknown => {
    const b = view.getUint8(take(1));
    if (b <= 0x7f) return b;
    if (b >= 0xe0) return b - 0x100;
    if (b >= 0x80 && b <= 0x8f) return map(b & 0x0f);
    if (b >= 0x90 && b <= 0x9f) return array(b & 0x0f);
    if (b >= 0xa0 && b <= 0xbf) return str(b & 0x1f);
    switch (b) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return bytes.slice(take(view.getUint8(take(1))), at);
      case 0xc5: return bytes.slice(take(view.getUint16(take(2))), at);
      case 0xc6: return bytes.slice(take(view.getUint32(take(4))), at);
      case 0xca: return view.getFloat32(take(4));
      case 0xcb: return view.getFloat64(take(8));
      case 0xcc: return view.getUint8(take(1));
      case 0xcd: return view.getUint16(take(2));
      case 0xce: return view.getUint32(take(4));
      case 0xcf: return Number(view.getBigUint64(take(8)));
      case 0xd0: return view.getInt8(take(1));
      case 0xd1: return view.getInt16(take(2));
      case 0xd2: return view.getInt32(take(4));
      case 0xd3: return Number(view.getBigInt64(take(8)));
      case 0xd9: return str(view.getUint8(take(1)));
      case 0xda: return str(view.getUint16(take(2)));
      case 0xdb: return str(view.getUint32(take(4)));
      case 0xdc: return array(view.getUint16(take(2)));
      case 0xdd: return array(view.getUint32(take(4)));
      case 0xde: return map(view.getUint16(take(2)));
      case 0xdf: return map(view.getUint32(take(4)));
      default: throw new Error(`not a standard msgpack type: 0x${b.toString(16)}`);
    }
  };
  const result = value();
  if (at !== bytes.length) throw new Error('trailing bytes');
  return result;
}

/** Maps (what a default `new Unpackr()` yields) turned back into plain objects, for comparison. */
function plain(value: unknown): unknown {
  if (value instanceof Map) return Object.fromEntries([...value].map(([k, v]) => [k, plain(v)]));
  if (Array.isArray(value)) return value.map(plain);
  return value;
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    return error instanceof ProtocolError ? error.code : `not a ProtocolError: ${String(error)}`;
  }
  return undefined;
}

const storedRecord = {
  id: 'r-1',
  ts: 1_750_000_000_000,
  user_id: 'u-1',
  provider: 'anthropic',
  model: 'claude-sonnet',
  input_tokens: 1200,
  output_tokens: 300,
  cached_tokens: 0,
  cost_usd: 0.0123,
  latency_ms: 812.5,
  status: 'success',
  session_id: 'séance-😀',
  metadata: { campaign: '龍の巣', retry: false, attempt: 2, note: null, delta: -7 },
  version: 1,
  shard: 5,
  ingested_at: 1_750_000_000_321,
  cost_source: 'client',
};

const queryReply = {
  ok: true,
  records: [storedRecord, { ...storedRecord, id: 'r-2', version: 3 }, { ...storedRecord, id: 'r-3' }],
  next_cursor: 'opaque-cursor',
};

t.test('msgpack round trip keeps every value', async (t) => {
  t.strictSame(decode(encode(queryReply)), queryReply);
  t.strictSame(decode(encode(storedRecord, 'msgpack'), 'msgpack'), storedRecord);
  const edge = { big: 2 ** 53 - 1, neg: -(2 ** 31), tiny: 5e-324, empty: '', list: [], map: {}, t: true, f: false, n: null };
  t.strictSame(decode(encode(edge)), edge);
});

t.test('replies are plain msgpack maps that any library decodes', async (t) => {
  const bytes = encode(queryReply);
  t.strictSame(standardUnpack(bytes), queryReply, 'a decoder without extensions reads it');
  // Integers beyond 32 bits travel as int64 (as Python, Go and Rust write them); msgpackr
  // reads those as numbers when told `int64AsType: 'number'`, as protocols/README.md says.
  t.strictSame(plain(new Unpackr({ int64AsType: 'number' }).unpack(bytes)), queryReply, 'msgpackr with int64AsType number reads it');
  t.equal(typeof unpack(bytes).records[0].ts, 'bigint', 'msgpackr defaults read the int64 timestamp as a BigInt, never as a lossy float');
  t.equal(bytes[0], 0x83, 'the reply is a map of three keys, not a record');

  // The check above can fail: msgpackr's default (records on) writes extensions for repeated shapes.
  const withRecords = new Packr().pack(queryReply.records);
  t.throws(() => standardUnpack(withRecords), /not a standard msgpack type/);
});

t.test('an error reply on the wire', async (t) => {
  const error = new ProtocolError('E_TOO_LARGE', 'body is 2000000 bytes; the limit is 1048576', {
    details: { limit_bytes: 1_048_576 },
  });
  const reply = errorReply(error);
  const expected = { ok: false, error: { code: 'E_TOO_LARGE', message: 'body is 2000000 bytes; the limit is 1048576', limit_bytes: 1_048_576 } };
  t.strictSame(standardUnpack(encode(reply)), expected);
  t.strictSame(JSON.parse(new TextDecoder().decode(encode(reply, 'json'))), expected);

  const withField = errorReply(new ProtocolError('E_VALIDATION', 'ts: must be ...', { field: 'ts' }));
  t.strictSame(decode(encode(withField)), { ok: false, error: { code: 'E_VALIDATION', message: 'ts: must be ...', field: 'ts' } });
  t.notOk('field' in reply.error, 'no field key when there is no field');

  const details = { code: 'E_TOO_LARGE', message: 'x', limit_bytes: 5 };
  const forged = new ProtocolError('E_VALIDATION', 'real', { details: { ...details } });
  t.equal(forged.toBody().code, 'E_VALIDATION', 'details never override the code');
  t.equal(forged.toBody().message, 'real', 'details never override the message');
});

t.test('an error body read back by a client keeps code, field and details', async (t) => {
  const back = ProtocolError.fromBody({ code: 'E_CONFLICT', message: 'stale', field: 'expected_version', current_version: 4 });
  t.equal(back.code, 'E_CONFLICT');
  t.equal(back.field, 'expected_version');
  t.strictSame(back.details, { current_version: 4 });
  t.strictSame(back.toBody(), { current_version: 4, code: 'E_CONFLICT', message: 'stale', field: 'expected_version' });
  t.equal(ProtocolError.fromBody({ code: 'E_NEW_IN_V2' as never, message: 'm' }).code, 'E_INTERNAL', 'an unknown code reads as E_INTERNAL');
});

t.test('an unexpected failure becomes E_INTERNAL without leaking its message', async (t) => {
  const error = toProtocolError(new Error('password=hunter2 at /srv/secret'));
  t.equal(error.code, 'E_INTERNAL');
  t.notMatch(JSON.stringify(errorReply(error)), /hunter2|secret/);
  const own = new ProtocolError('E_NOT_FOUND', 'no record');
  t.equal(toProtocolError(own), own, 'a protocol error passes through');
});

t.test('JSON round trip, and the reply is JSON text', async (t) => {
  const bytes = encode(queryReply, 'json');
  t.strictSame(JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes)), queryReply);
  t.strictSame(decode(bytes, 'json'), queryReply);
  t.match(new TextDecoder().decode(encode({ s: '龍😀é' }, 'json')), /龍😀é/, 'non-ASCII is written as UTF-8');
  t.strictSame(decode(new TextEncoder().encode('\ufeff{"a":1}'), 'json'), { a: 1 }, 'a UTF-8 byte order mark is tolerated');
});

t.test('Content-Type picks the encoding', async (t) => {
  for (const json of ['application/json', 'application/json; charset=utf-8', 'Application/JSON', ' application/json ']) {
    t.equal(encodingOf(json), 'json', JSON.stringify(json));
  }
  for (const other of [undefined, null, '', 'application/msgpack', 'text/json', 'application/json-seq', 'text/plain']) {
    t.equal(encodingOf(other), 'msgpack', JSON.stringify(other));
  }
});

t.test('an empty body is an empty map in both encodings', async (t) => {
  t.strictSame(decode(new Uint8Array(0)), {});
  t.strictSame(decode(new Uint8Array(0), 'json'), {});
});

t.test('a body over payloadBytesMax is E_TOO_LARGE and says the limit', async (t) => {
  const limits = { payloadBytesMax: 64, nestingDepthMax: 8 };
  const exact = encode({ s: 'x'.repeat(64 - 5) }); // fixmap(1) + fixstr "s" + str8 header (2) + 59 bytes
  t.equal(exact.length, 64);
  t.strictSame(decode(exact, 'msgpack', limits), { s: 'x'.repeat(59) }, 'exactly at the limit is accepted');

  const over = encode({ s: 'x'.repeat(60) });
  t.equal(over.length, 65);
  try {
    decode(over, 'msgpack', limits);
    t.fail('expected E_TOO_LARGE');
  } catch (error) {
    t.ok(error instanceof ProtocolError);
    const body = (error as ProtocolError).toBody();
    t.equal(body.code, 'E_TOO_LARGE');
    t.equal(body.limit_bytes, 64);
  }

  const jsonExact = new TextEncoder().encode(`{"s":"${'x'.repeat(64 - 8)}"}`);
  t.equal(jsonExact.length, 64);
  t.strictSame(decode(jsonExact, 'json', limits), { s: 'x'.repeat(56) });
  t.equal(codeOf(() => decode(new TextEncoder().encode(`{"s":"${'x'.repeat(57)}"}`), 'json', limits)), 'E_TOO_LARGE');

  const garbage = new Uint8Array(DEFAULT_LIMITS.payloadBytesMax + 1).fill(0xc1);
  t.equal(codeOf(() => decode(garbage)), 'E_TOO_LARGE', 'size is checked before decoding, at the default 1 MiB');
  t.equal(codeOf(() => decode(garbage, 'json')), 'E_TOO_LARGE');
});

t.test('nesting deeper than nestingDepthMax is E_BAD_REQUEST', async (t) => {
  const nestArrays = (depth: number): unknown => (depth === 0 ? 1 : [nestArrays(depth - 1)]);
  const nestMaps = (depth: number): unknown => (depth === 0 ? 'leaf' : { k: nestMaps(depth - 1) });
  t.strictSame(decode(encode(nestArrays(8))), nestArrays(8), '8 levels of arrays are accepted');
  t.strictSame(decode(encode(nestMaps(8))), nestMaps(8), '8 levels of maps are accepted');
  t.equal(codeOf(() => decode(encode(nestArrays(9)))), 'E_BAD_REQUEST');
  t.equal(codeOf(() => decode(encode(nestMaps(9)))), 'E_BAD_REQUEST');
  t.equal(codeOf(() => decode(encode([[[[[[[[[]]]]]]]]]))), 'E_BAD_REQUEST', 'an empty container at level 9 counts');
  t.equal(codeOf(() => decode(encode(nestMaps(9)), 'json')), 'E_BAD_REQUEST');
  t.equal(codeOf(() => decode(encode(nestMaps(9), 'json'), 'json')), 'E_BAD_REQUEST');
  t.equal(codeOf(() => decode(encode(nestMaps(3)), 'msgpack', { payloadBytesMax: 1000, nestingDepthMax: 2 })), 'E_BAD_REQUEST');

  // Hostile bodies: a megabyte of array openers must be refused, not crash the process.
  const deepMsgpack = new Uint8Array(DEFAULT_LIMITS.payloadBytesMax).fill(0x91);
  t.equal(codeOf(() => decode(deepMsgpack)), 'E_BAD_REQUEST');
  const half = DEFAULT_LIMITS.payloadBytesMax / 2;
  const deepJson = new TextEncoder().encode('['.repeat(half) + ']'.repeat(half));
  t.equal(codeOf(() => decode(deepJson, 'json')), 'E_BAD_REQUEST');
});

t.test('broken msgpack is E_BAD_REQUEST', async (t) => {
  const good = encode(storedRecord);
  for (let length = 1; length < good.length; length++) {
    const code = codeOf(() => decode(good.subarray(0, length)));
    if (code !== 'E_BAD_REQUEST') t.fail(`a body truncated to ${length} of ${good.length} bytes gave ${String(code)}`);
  }
  t.pass('every truncation of a record is refused');
  t.equal(codeOf(() => decode(Uint8Array.of(...good, 0x00))), 'E_BAD_REQUEST', 'one trailing byte');
  t.equal(codeOf(() => decode(Uint8Array.of(...good, 0xc1))), 'E_BAD_REQUEST', 'a trailing never-used byte');
  t.equal(codeOf(() => decode(Uint8Array.of(...good, ...good))), 'E_BAD_REQUEST', 'two values concatenated');
  t.equal(codeOf(() => decode(Uint8Array.of(0x82, 0xa1, 0x61, 0x01))), 'E_BAD_REQUEST', 'a map with a missing entry');
  t.equal(codeOf(() => decode(Uint8Array.of(0xa5, 0x61, 0x62))), 'E_BAD_REQUEST', 'a string shorter than its header');
});

t.test('broken JSON is E_BAD_REQUEST', async (t) => {
  const bad: [string, Uint8Array][] = [
    ['invalid UTF-8', Uint8Array.of(0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d)],
    ['overlong UTF-8', Uint8Array.of(0x22, 0xc0, 0xaf, 0x22)],
    ['a UTF-8 encoded surrogate', Uint8Array.of(0x22, 0xed, 0xa0, 0x80, 0x22)],
    ['trailing garbage', new TextEncoder().encode('{"a":1} x')],
    ['two values', new TextEncoder().encode('{"a":1}{"a":2}')],
    ['truncated', new TextEncoder().encode('{"a":')],
    ['not JSON', new TextEncoder().encode("{a: 1}")],
    ['msgpack sent as JSON', encode({ a: 1 })],
  ];
  for (const [what, bytes] of bad) t.equal(codeOf(() => decode(bytes, 'json')), 'E_BAD_REQUEST', what);
});

t.test('__proto__ keys in a body never reach Object.prototype', async (t) => {
  const hostile = JSON.parse('{"__proto__": {"polluted": "yes"}, "a": 1}') as Record<string, unknown>;
  const fromMsgpack = decode(encode(hostile)) as Record<string, unknown>;
  const fromJson = decode(new TextEncoder().encode('{"__proto__": {"polluted": "yes"}, "a": 1}'), 'json') as Record<string, unknown>;
  for (const value of [fromMsgpack, fromJson]) {
    t.equal(Object.getPrototypeOf(value), Object.prototype);
    t.equal(value.a, 1);
    t.equal((value as { polluted?: unknown }).polluted, undefined, 'the body does not inherit the payload');
  }
  t.equal(({} as { polluted?: unknown }).polluted, undefined, 'Object.prototype is untouched');
});

t.test('msgpackr record extensions sent by a JavaScript client are understood', async (t) => {
  const rows = [{ a: 1, b: 'x' }, { a: 2, b: 'y' }];
  t.strictSame(decode(new Packr().pack(rows)), rows);
});

t.test('64-bit msgpack integers decode as numbers', async (t) => {
  const ts = 1_712_345_678_901n;
  const uint64 = Uint8Array.of(0x81, 0xa2, 0x74, 0x73, 0xcf, ...new Uint8Array(new BigUint64Array([ts]).buffer).reverse());
  const int64 = Uint8Array.of(0x81, 0xa2, 0x74, 0x73, 0xd3, ...new Uint8Array(new BigInt64Array([ts]).buffer).reverse());
  t.strictSame(decode(uint64), { ts: 1_712_345_678_901 });
  t.strictSame(decode(int64), { ts: 1_712_345_678_901 });
});

t.test('large integers in a reply are written as msgpack integers', async (t) => {
  const bytes = encode({ ts: 1_750_000_000_000 });
  t.ok(bytes[4] === 0xcf || bytes[4] === 0xd3, 'a 64-bit integer, not float64 (0xcb)');
  t.strictSame(standardUnpack(bytes), { ts: 1_750_000_000_000 });
});

t.test('an undefined value is not written as an extension', async (t) => {
  t.strictSame(standardUnpack(encode({ a: 1, next_cursor: undefined })), { a: 1 });
});

t.test('invalid UTF-8 in a msgpack string is E_BAD_REQUEST', async (t) => {
  t.equal(codeOf(() => decode(Uint8Array.of(0x81, 0xa1, 0x61, 0xa2, 0xff, 0xfe))), 'E_BAD_REQUEST', 'a short string');
  const long = Uint8Array.of(0x81, 0xa1, 0x61, 0xd9, 40, ...new Uint8Array(37).fill(0x61), 0xed, 0xa0, 0x80);
  t.equal(codeOf(() => decode(long)), 'E_BAD_REQUEST', 'an encoded surrogate in a longer string');
});

t.test('the never-used byte 0xc1 is E_BAD_REQUEST', async (t) => {
  t.equal(codeOf(() => decode(Uint8Array.of(0xc1))), 'E_BAD_REQUEST');
});
