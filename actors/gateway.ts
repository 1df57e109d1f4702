// The request path of the public API: bytes in, bytes out. Checks the
// protocol header, decodes (msgpack, or JSON when asked), runs the endpoint's
// handler and encodes its answer in the request's encoding. Every failure
// becomes `{ok: false, error}` with a protocol code; nothing thrown here
// escapes to the transport, and bad input never reaches an actor.

import { decode, encode, encodingOf, type Encoding } from '../protocols/codec.js';
import { errorReply, ProtocolError, toProtocolError } from '../protocols/errors.js';
import type { ProtocolLimits } from '../protocols/limits.js';
import { CONTENT_TYPE_HEADER, JSON_CONTENT_TYPE, MSGPACK_CONTENT_TYPE, PROTOCOL_HEADER, PROTOCOL_VERSION, type EndpointName } from '../protocols/subjects.js';
import type { Logger } from '../src/log.js';
import type { Headers, TransportMessage } from '../src/transport/transport.js';

export type EndpointReply = { ok: true } & Record<string, unknown>;
export type EndpointHandler = (body: unknown) => EndpointReply | Promise<EndpointReply>;
export type EndpointHandlers = Record<EndpointName, EndpointHandler>;

export interface GatewayStats {
  requests: number;
  errors: Partial<Record<string, number>>;
}

export function headerValue(headers: Headers | undefined, name: string): string | undefined {
  if (!headers) return undefined;
  const direct = headers[name];
  if (direct !== undefined) return direct;
  const lower = name.toLowerCase();
  for (const [key, value] of Object.entries(headers)) if (key.toLowerCase() === lower) return value;
  return undefined;
}

const replyHeaders: Record<Encoding, Headers> = {
  msgpack: Object.freeze({ [PROTOCOL_HEADER]: String(PROTOCOL_VERSION), [CONTENT_TYPE_HEADER]: MSGPACK_CONTENT_TYPE }),
  json: Object.freeze({ [PROTOCOL_HEADER]: String(PROTOCOL_VERSION), [CONTENT_TYPE_HEADER]: JSON_CONTENT_TYPE }),
};

export class Gateway {
  readonly stats: GatewayStats = { requests: 0, errors: {} };

  constructor(
    private readonly handlers: EndpointHandlers,
    private readonly limits: ProtocolLimits,
    private readonly log: Logger,
  ) {}

  /** Answers one request; never throws. Resolves to the error it answered, if it answered one. */
  async handle(endpoint: EndpointName, msg: TransportMessage): Promise<ProtocolError | undefined> {
    this.stats.requests++;
    const encoding = encodingOf(headerValue(msg.headers, CONTENT_TYPE_HEADER));
    let reply: object;
    let failure: ProtocolError | undefined;
    try {
      const version = headerValue(msg.headers, PROTOCOL_HEADER);
      if (version !== undefined && version.trim() !== String(PROTOCOL_VERSION)) {
        throw new ProtocolError('E_BAD_REQUEST', `unsupported protocol version ${JSON.stringify(version)}; this node speaks ${PROTOCOL_VERSION}`);
      }
      const body = decode(msg.data, encoding, this.limits);
      reply = await this.handlers[endpoint](body);
    } catch (thrown) {
      failure = toProtocolError(thrown);
      if (failure.code === 'E_INTERNAL') this.log.error({ err: thrown, endpoint }, 'request failed');
      reply = errorReply(failure);
    }
    if (msg.canRespond) {
      const encoded = this.encodeReply(reply, encoding, endpoint);
      failure = encoded.failure ?? failure;
      msg.respond(encoded.bytes, replyHeaders[encoding]);
    }
    if (failure) this.stats.errors[failure.code] = (this.stats.errors[failure.code] ?? 0) + 1;
    return failure;
  }

  /** The reply's bytes; an error in place of a reply too large or impossible to encode, and that error. */
  private encodeReply(reply: object, encoding: Encoding, endpoint: EndpointName): { bytes: Uint8Array; failure?: ProtocolError } {
    try {
      const bytes = encode(reply, encoding);
      if (bytes.byteLength <= this.limits.payloadBytesMax) return { bytes };
      const failure = new ProtocolError('E_TOO_LARGE', `the reply would be ${bytes.byteLength} bytes; the limit is ${this.limits.payloadBytesMax}: ask for less (a smaller limit or a narrower filter)`);
      return { bytes: encode(errorReply(failure), encoding), failure };
    } catch (error) {
      this.log.error({ err: error, endpoint }, 'reply could not be encoded');
      const failure = new ProtocolError('E_INTERNAL', 'internal error');
      return { bytes: encode(errorReply(failure), encoding), failure };
    }
  }
}
