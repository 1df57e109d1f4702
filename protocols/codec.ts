// Body codec of protocol v1: msgpack by default (plain maps, no msgpackr records,
// so any msgpack library decodes it), JSON when the request says
// `Content-Type: application/json`; the reply uses the request's encoding.
// Decoding is bounded: size first, then nesting depth.

import { Packr } from 'msgpackr';
import { ProtocolError } from './errors.js';
import { DEFAULT_LIMITS, type ProtocolLimits } from './limits.js';
import { JSON_CONTENT_TYPE } from './subjects.js';

export type Encoding = 'msgpack' | 'json';

const packr = new Packr({ useRecords: false, mapsAsObjects: true, variableMapSize: true });
const textDecoder = new TextDecoder('utf-8', { fatal: true });
const textEncoder = new TextEncoder();

export function encodingOf(contentType: string | null | undefined): Encoding {
  if (!contentType) return 'msgpack';
  const mediaType = contentType.split(';', 1)[0]!.trim().toLowerCase();
  return mediaType === JSON_CONTENT_TYPE ? 'json' : 'msgpack';
}

export function encode(value: unknown, encoding: Encoding = 'msgpack'): Uint8Array {
  if (encoding === 'json') return textEncoder.encode(JSON.stringify(value));
  return packr.pack(value);
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
  if (!withinDepth(value, limits.nestingDepthMax)) {
    throw new ProtocolError('E_BAD_REQUEST', `body nests deeper than ${limits.nestingDepthMax} levels`);
  }
  return value;
}

/** Decodes exactly one msgpack value; trailing bytes mean a corrupt or concatenated body. */
function unpackWhole(bytes: Uint8Array): unknown {
  const values = packr.unpackMultiple(bytes);
  if (values.length !== 1) throw new Error(`expected one msgpack value, found ${values.length}`);
  return values[0];
}

function withinDepth(value: unknown, depthMax: number): boolean {
  if (value === null || typeof value !== 'object') return true;
  if (depthMax <= 0) return false;
  if (value instanceof Uint8Array || value instanceof Date) return true;
  const children = Array.isArray(value) ? value : Object.values(value);
  for (const child of children) {
    if (!withinDepth(child, depthMax - 1)) return false;
  }
  return true;
}
