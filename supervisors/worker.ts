// A supervised actor: the child spec that spawns a behaviour in its own
// mailbox at the child's path and reports its exits to the supervisor.
// `remote` is what the actor accepts over the internal actor subject
// (src/kernel/message-schema.ts); without it the network cannot reach it.

import type { ActorContext, Behavior } from '../src/kernel/actor.js';
import type { RemoteSchema } from '../src/kernel/message-schema.js';
import type { ActorSystem } from '../src/kernel/system.js';
import type { ChildSpec, RestartType } from './spec.js';

export interface ActorChildOptions<M, R> {
  id: string;
  /** Builds the behaviour (and its initial state) at every start and restart. */
  behavior: (ctx: ActorContext, system: ActorSystem) => Behavior<M, R> | Promise<Behavior<M, R>>;
  restart?: RestartType;
  shutdownMs?: number | 'infinity';
  mailboxCapacity?: number;
  /** The schema bodies from other nodes are checked against; absent: refused. */
  remote?: RemoteSchema<M>;
  /** Extra facts for the status tree. */
  detail?: () => Record<string, unknown>;
}

export function actorChild<M, R>(options: ActorChildOptions<M, R>): ChildSpec {
  const spec: ChildSpec = {
    id: options.id,
    kind: 'worker',
    async start(ctx) {
      const actorCtx: ActorContext = { path: ctx.path, log: ctx.log, clock: ctx.system.clock };
      const behavior = await options.behavior(actorCtx, ctx.system);
      const cell = ctx.system.spawn(ctx.path, behavior, {
        ...(options.mailboxCapacity !== undefined ? { mailboxCapacity: options.mailboxCapacity } : {}),
        ...(options.remote !== undefined ? { remote: options.remote } : {}),
        onExit: (reason) => ctx.exit(reason),
      });
      return {
        stop: () => cell.stop(),
        kill: () => cell.kill(),
        status: () => ({
          kind: 'worker',
          mailbox_depth: cell.mailboxDepth,
          ...(options.detail ? { detail: options.detail() } : {}),
        }),
      };
    },
  };
  if (options.restart !== undefined) spec.restart = options.restart;
  if (options.shutdownMs !== undefined) spec.shutdownMs = options.shutdownMs;
  return spec;
}
