// Logging: one pino root per node, one child per actor bound to its path, so
// every line says which actor wrote it. Lines are JSON (one object a line,
// for machines), or readable text for a person at a terminal (pino-pretty,
// formatted in-process and written synchronously, so nothing is lost when
// the process exits right after a fatal line). `auto` picks text when the
// destination is a terminal. See docs/configuration.md (log). An error the
// caller caused (a ProtocolError such as E_VALIDATION) is logged as its code
// and message without a stack: the stack would point into the node, while
// the fault is in the request.

import { destination as fdDestination, pino, type DestinationStream, type Logger, type LevelWithSilent } from 'pino';
import { prettyFactory, type PrettyOptions } from 'pino-pretty';
import { ProtocolError, type ErrorCode } from '../protocols/errors.js';

export type { Logger };

export type LogFormat = 'auto' | 'json' | 'pretty';

export interface LogOptions {
  level?: LevelWithSilent;
  /** Default json; `auto` is pretty when the destination is a terminal. */
  format?: LogFormat;
  /** Where lines go; defaults to stdout. Tests pass a stream to read them. */
  destination?: NodeJS.WritableStream;
  /** Whether the destination is a terminal (default: whether stdout is, when writing there). */
  isTTY?: boolean;
  /** Colours in pretty lines (default: on a terminal, unless NO_COLOR is set). */
  colorize?: boolean;
}

/** What `auto` means: readable lines for a person at a terminal, JSON for a pipe or a file. */
export function chooseLogFormat(format: LogFormat, isTTY: boolean): 'json' | 'pretty' {
  if (format === 'auto') return isTTY ? 'pretty' : 'json';
  return format;
}

/** How a pretty line reads: local time, level, the actor's path, the message, then the other fields indented below. */
export function prettyOptions(colorize: boolean): PrettyOptions {
  return {
    colorize,
    translateTime: 'SYS:yyyy-mm-dd HH:MM:ss.l',
    ignore: 'actor',
    messageFormat: '{if actor}{actor}: {end}{msg}',
  };
}

/** Codes that say the request was at fault, not the node. */
const CALLER_CODES: ReadonlySet<ErrorCode> = new Set(['E_BAD_REQUEST', 'E_VALIDATION', 'E_TOO_LARGE', 'E_CONFLICT', 'E_NOT_FOUND', 'E_UNAUTHORIZED', 'E_FORBIDDEN']);

/** `err` in a log line: a caller's error as code and message, anything else with its stack (pino's own serializer). */
export function serializeError(error: unknown): unknown {
  if (error instanceof ProtocolError && CALLER_CODES.has(error.code)) {
    return { type: error.name, code: error.code, message: error.message, ...(error.field !== undefined ? { field: error.field } : {}) };
  }
  return pino.stdSerializers.err(error as Error);
}

const serializers = { err: serializeError };

export function createLogger(options: LogOptions = {}): Logger {
  const level = options.level ?? 'info';
  const isTTY = options.isTTY ?? (options.destination === undefined && process.stdout.isTTY === true);
  const format = chooseLogFormat(options.format ?? 'json', isTTY);
  if (format === 'json') {
    if (options.destination) return pino({ level, base: null, serializers }, options.destination);
    return pino({ level, base: null, serializers });
  }
  const colorize = options.colorize ?? (isTTY && !process.env.NO_COLOR);
  const prettify = prettyFactory(prettyOptions(colorize));
  const out: NodeJS.WritableStream | DestinationStream = options.destination ?? fdDestination({ dest: 1, sync: true });
  const stream: DestinationStream = { write: (line: string) => void out.write(prettify(line)) };
  return pino({ level, base: null, serializers }, stream);
}

export function actorLogger(root: Logger, path: string): Logger {
  return root.child({ actor: path });
}

/** A logger that writes nothing, for benches and tests that do not read logs. */
export const silentLogger: Logger = pino({ level: 'silent' });
