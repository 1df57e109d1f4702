// Error codes of protocol v1 and the typed error that carries them.
// A code is stable: clients branch on it. The message is for humans and may change.

export const ERROR_CODES = [
  'E_BAD_REQUEST',
  'E_VALIDATION',
  'E_TOO_LARGE',
  'E_CONFLICT',
  'E_NOT_FOUND',
  'E_UNAUTHORIZED',
  'E_FORBIDDEN',
  'E_UNAVAILABLE',
  'E_TIMEOUT',
  'E_INTERNAL',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export interface ErrorBody {
  code: ErrorCode;
  message: string;
  field?: string;
  [extra: string]: unknown;
}

export interface ErrorReply {
  ok: false;
  error: ErrorBody;
}

const codeSet: ReadonlySet<string> = new Set(ERROR_CODES);

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && codeSet.has(value);
}

/**
 * An expected failure with a protocol code. Thrown inside the runtime and
 * turned into `{ok: false, error}` at the wire; never a reason to crash an actor.
 */
export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
  readonly code: ErrorCode;
  readonly field: string | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options: { field?: string; details?: Record<string, unknown>; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.field = options.field;
    this.details = options.details;
  }

  toBody(): ErrorBody {
    const body: ErrorBody = { ...this.details, code: this.code, message: this.message };
    if (this.field !== undefined) body.field = this.field;
    return body;
  }

  static fromBody(body: ErrorBody): ProtocolError {
    const { code, message, field, ...details } = body;
    const options: { field?: string; details?: Record<string, unknown> } = {};
    if (typeof field === 'string') options.field = field;
    if (Object.keys(details).length > 0) options.details = details;
    return new ProtocolError(isErrorCode(code) ? code : 'E_INTERNAL', String(message), options);
  }
}

export function errorReply(error: ProtocolError): ErrorReply {
  return { ok: false, error: error.toBody() };
}

/** Maps anything thrown to a protocol error; unknown failures become E_INTERNAL without leaking internals. */
export function toProtocolError(error: unknown): ProtocolError {
  if (error instanceof ProtocolError) return error;
  return new ProtocolError('E_INTERNAL', 'internal error', { cause: error });
}
