// Logging: one pino root per node, one child per actor bound to its path, so
// every line says which actor wrote it.

import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

export interface LogOptions {
  level?: LevelWithSilent;
  /** Where lines go; defaults to stdout. Tests pass a stream to read them. */
  destination?: NodeJS.WritableStream;
}

export function createLogger(options: LogOptions = {}): Logger {
  const level = options.level ?? 'info';
  if (options.destination) return pino({ level, base: null }, options.destination);
  return pino({ level, base: null });
}

export function actorLogger(root: Logger, path: string): Logger {
  return root.child({ actor: path });
}

/** A logger that writes nothing, for benches and tests that do not read logs. */
export const silentLogger: Logger = pino({ level: 'silent' });
