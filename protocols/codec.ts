// Body codec of protocol v1: msgpack by default (plain maps, no msgpackr records,
// so any msgpack library decodes it), JSON when the request says
// `Content-Type: application/json`; the reply uses the request's encoding.
// Decoding is bounded: size first, then nesting depth.

import { Packr } from 'msgpackr';
import { ProtocolError } from './errors.js';
import { DEFAULT_LIMITS, type ProtocolLimits } from './limits.js';
import { JSON_CONTENT_TYPE } from './subjects.js';

export type Encoding = 'msgpack' | 'json';

// int64AsType 'number': other languages write epoch milliseconds as int64/uint64.
const packr = new Packr({ useRecords: false, mapsAsObjects: true, variableMapSize: true, int64AsType: 'number' });
const textDecoder = new TextDecoder('utf-8', { fatal: true });
const textEncoder = new TextEncoder();

export function encodingOf(contentType: string | null | undefined): Encoding {
  if (!contentType) return 'msgpack';
  const mediaType = contentType.split(';', 1)[0]!.trim().toLowerCase();
  return mediaType === JSON_CONTENT_TYPE ? 'json' : 'msgpack';
}

export function encode(value: unknown, encoding: Encoding = 'msgpack'): Uint8Array {
  if (encoding === 'json') return textEncoder.encode(JSON.stringify(value));
  return packr.pack(toWire(value));
}

/** Encodes for another node of ours: no wire normalisation, both ends are msgpackr. */
export function encodeInternal(value: unknown): Uint8Array {
  return packr.pack(value);
}

const INT32_LIMIT = 2 ** 32;

/**
 * Shapes a value for any msgpack reader: integers beyond 32 bits become
 * int64/uint64 (msgpackr would write float64, which typed decoders refuse),
 * and keys whose value is undefined are left out, as JSON does.
 */
function toWire(value: unknown): unknown {
  if (typeof value === 'number') {
    return Number.isSafeInteger(value) && (value >= INT32_LIMIT || value < -INT32_LIMIT) ? BigInt(value) : value;
  }
  if (value === null || typeof value !== 'object' || value instanceof Uint8Array || value instanceof Date) return value;
  // Copy on write: a map or list is copied only when something inside it changes.
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const child = toWire(value[i]);
      if (child !== value[i]) (out ??= value.slice())[i] = child;
    }
    return out ?? value;
  }
  let out: Record<string, unknown> | undefined;
  for (const key in value) {
    if (!Object.hasOwn(value, key)) continue;
    const original = (value as Record<string, unknown>)[key];
    const child = original === undefined ? undefined : toWire(original);
    if (child === original && original !== undefined) continue;
    out ??= { ...(value as Record<string, unknown>) };
    if (child === undefined) delete out[key];
    else out[key] = child;
  }
  return out ?? value;
}

/**
 * Decodes a request body. An empty body is `{}` so that humans can send
 * `nats req usage.v1.admin.status ''`. Throws ProtocolError E_TOO_LARGE or E_BAD_REQUEST.
 */
export function decode(
  bytes: Uint8Array,
  encoding: Encoding = 'msgpack',
  limits: Pick<ProtocolLimits, 'payloadBytesMax' | 'nestingDepthMax'> = DEFAULT_LIMITS,
): unknown {
  if (bytes.byteLength > limits.payloadBytesMax) {
    throw new ProtocolError('E_TOO_LARGE', `body is ${bytes.byteLength} bytes; the limit is ${limits.payloadBytesMax}`, {
      details: { limit_bytes: limits.payloadBytesMax },
    });
  }
  if (bytes.byteLength === 0) return {};
  let value: unknown;
  try {
    value = encoding === 'json' ? JSON.parse(textDecoder.decode(bytes)) : unpackWhole(bytes);
  } catch (error) {
    throw new ProtocolError('E_BAD_REQUEST', `body is not valid ${encoding === 'json' ? 'JSON' : 'msgpack'}`, { cause: error });
  }
  const shape = { replaced: false };
  checkShape(value, limits.nestingDepthMax, limits.nestingDepthMax, shape);
  if (shape.replaced && encoding === 'msgpack' && !containsReplacementBytes(bytes)) {
    throw new ProtocolError('E_BAD_REQUEST', 'body has a string that is not valid UTF-8');
  }
  return value;
}

/**
 * msgpackr turns invalid UTF-8 into U+FFFD silently. A decoded U+FFFD whose
 * encoding (EF BF BD) is nowhere in the bytes can only come from such a repair.
 */
function containsReplacementBytes(bytes: Uint8Array): boolean {
  for (let i = bytes.indexOf(0xef); i !== -1 && i + 2 < bytes.length; i = bytes.indexOf(0xef, i + 1)) {
    if (bytes[i + 1] === 0xbf && bytes[i + 2] === 0xbd) return true;
  }
  return false;
}


/** Decodes exactly one msgpack value; msgpackr throws on trailing bytes (a corrupt or concatenated body). */
function unpackWhole(bytes: Uint8Array): unknown {
  return packr.unpack(bytes);
}

/**
 * Bounds nesting and admits only plain data: maps, arrays, strings, numbers,
 * booleans, null, binary and timestamps. msgpack extension types and reserved
 * bytes (0xc1) decode to other objects and are refused.
 */
function checkShape(value: unknown, depthLeft: number, depthMax: number, shape: { replaced: boolean }): void {
  if (typeof value === 'string') {
    if (value.includes('\ufffd')) shape.replaced = true;
    return;
  }
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'bigint') throw new ProtocolError('E_BAD_REQUEST', 'integer out of the 64-bit float range');
    return;
  }
  if (value instanceof Uint8Array || value instanceof Date) return;
  const proto = Object.getPrototypeOf(value);
  if (!Array.isArray(value) && proto !== Object.prototype && proto !== null) {
    throw new ProtocolError('E_BAD_REQUEST', 'body contains an unsupported msgpack type (extension or reserved byte)');
  }
  if (depthLeft <= 0) throw new ProtocolError('E_BAD_REQUEST', `body nests deeper than ${depthMax} levels`);
  if (Array.isArray(value)) {
    for (const child of value) checkShape(child, depthLeft - 1, depthMax, shape);
    return;
  }
  for (const [key, child] of Object.entries(value)) {
    if (key.includes('\ufffd')) shape.replaced = true;
    checkShape(child, depthLeft - 1, depthMax, shape);
  }
}
