// Child specifications and supervisor flags are data, checked once when a
// supervisor is built. An error names the offending child and says what was
// expected, as OTP's supervisor does.

import type { ExitReason } from '../src/kernel/actor.js';
import type { ActorSystem } from '../src/kernel/system.js';
import type { Logger } from '../src/log.js';
import type { StatusNode } from './status.js';

export const RESTART_TYPES = ['permanent', 'transient', 'temporary'] as const;
export type RestartType = (typeof RESTART_TYPES)[number];
export const STRATEGIES = ['one_for_one', 'one_for_all', 'rest_for_one'] as const;
export type Strategy = (typeof STRATEGIES)[number];

/** What a started child gives its supervisor. */
export interface RunningChild {
  /** Orderly stop; the supervisor kills the child if it takes longer than its shutdownMs. */
  stop(): Promise<void>;
  /** Immediate stop; must not throw. */
  kill(): void;
  /** The child's part of the status tree (state and restarts are filled in by the supervisor). */
  status(): Partial<StatusNode>;
}

export interface StartContext {
  /** This child's actor path, `<parent path>/<id>`. */
  readonly path: string;
  readonly system: ActorSystem;
  readonly log: Logger;
  /** The child reports its own exit: a crash, or a normal end. */
  exit(reason: ExitReason): void;
}

export interface ChildSpec {
  id: string;
  start(ctx: StartContext): RunningChild | Promise<RunningChild>;
  /** permanent: always restarted; transient: only after an abnormal exit; temporary: never. Default permanent. */
  restart?: RestartType;
  /** How long an orderly stop may take before the child is killed. Default 5000 for workers, infinity for supervisors. */
  shutdownMs?: number | 'infinity';
  kind?: 'worker' | 'supervisor';
}

export interface SupervisorFlags {
  strategy: Strategy;
  /** Most restarts allowed within periodMs; one more and the supervisor gives up and escalates. */
  intensity: number;
  periodMs: number;
  /** Delay before the first restart in a window; doubles with each further restart, up to backoffMaxMs. */
  backoffBaseMs: number;
  backoffMaxMs: number;
}

export const DEFAULT_FLAGS: Readonly<SupervisorFlags> = Object.freeze({
  strategy: 'one_for_one',
  intensity: 1,
  periodMs: 5000,
  backoffBaseMs: 100,
  backoffMaxMs: 5000,
});

export const DEFAULT_WORKER_SHUTDOWN_MS = 5000;

const ID_PATTERN = /^[A-Za-z0-9_.:-]{1,64}$/;

export class ChildSpecError extends TypeError {
  override readonly name = 'ChildSpecError';
}

export function checkFlags(supervisor: string, flags: Partial<SupervisorFlags>): SupervisorFlags {
  const merged = { ...DEFAULT_FLAGS, ...flags };
  const fail = (message: string): never => {
    throw new ChildSpecError(`supervisor ${supervisor}: ${message}`);
  };
  if (!STRATEGIES.includes(merged.strategy)) fail(`strategy must be one of ${STRATEGIES.join(', ')} (got ${JSON.stringify(merged.strategy)})`);
  if (!Number.isInteger(merged.intensity) || merged.intensity < 0) fail(`intensity must be a whole number >= 0 (got ${merged.intensity})`);
  if (!Number.isInteger(merged.periodMs) || merged.periodMs < 1) fail(`periodMs must be a whole number >= 1 (got ${merged.periodMs})`);
  if (!Number.isInteger(merged.backoffBaseMs) || merged.backoffBaseMs < 0) fail(`backoffBaseMs must be a whole number >= 0 (got ${merged.backoffBaseMs})`);
  if (!Number.isInteger(merged.backoffMaxMs) || merged.backoffMaxMs < merged.backoffBaseMs) {
    fail(`backoffMaxMs must be a whole number >= backoffBaseMs (got ${merged.backoffMaxMs})`);
  }
  return merged;
}

export function checkChildSpecs(supervisor: string, specs: readonly ChildSpec[]): ChildSpec[] {
  if (!Array.isArray(specs)) throw new ChildSpecError(`supervisor ${supervisor}: children must be an array`);
  const seen = new Set<string>();
  return specs.map((spec, index) => {
    const name = spec && typeof spec === 'object' && typeof spec.id === 'string' ? JSON.stringify(spec.id) : `#${index}`;
    const fail = (message: string): never => {
      throw new ChildSpecError(`supervisor ${supervisor}, child ${name}: ${message}`);
    };
    if (!spec || typeof spec !== 'object') fail('a child spec must be an object');
    if (typeof spec.id !== 'string' || !ID_PATTERN.test(spec.id)) fail("id must be 1-64 letters, digits, '_', '.', ':' or '-'");
    if (seen.has(spec.id)) fail('id is used by another child of this supervisor');
    seen.add(spec.id);
    if (typeof spec.start !== 'function') fail('start must be a function');
    if (spec.restart !== undefined && !RESTART_TYPES.includes(spec.restart)) {
      fail(`restart must be one of ${RESTART_TYPES.join(', ')} (got ${JSON.stringify(spec.restart)})`);
    }
    const shutdown = spec.shutdownMs;
    if (shutdown !== undefined && shutdown !== 'infinity' && (!Number.isInteger(shutdown) || shutdown < 0)) {
      fail(`shutdownMs must be a whole number >= 0 or 'infinity' (got ${JSON.stringify(shutdown)})`);
    }
    if (spec.kind !== undefined && spec.kind !== 'worker' && spec.kind !== 'supervisor') {
      fail(`kind must be worker or supervisor (got ${JSON.stringify(spec.kind)})`);
    }
    return spec;
  });
}
