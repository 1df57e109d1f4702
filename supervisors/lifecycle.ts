// The lifecycle of one supervised child as an xstate machine. The supervisor
// sends it events; a transition the machine does not allow is a broken
// invariant of the supervisor and throws. xstate runs lifecycles only, never
// the per-message path.

import { createActor, setup, type Actor } from 'xstate';

export type LifecycleState = 'starting' | 'running' | 'restarting' | 'stopping' | 'stopped' | 'failed';

export type LifecycleEvent =
  | { type: 'STARTED' }
  | { type: 'START_FAILED' }
  | { type: 'CRASHED' }
  | { type: 'RESTART' }
  | { type: 'STOP' }
  | { type: 'STOPPED' }
  | { type: 'EXITED' }
  | { type: 'GIVE_UP' };

export const lifecycleMachine = setup({
  types: { events: {} as LifecycleEvent },
}).createMachine({
  id: 'lifecycle',
  initial: 'starting',
  states: {
    starting: { on: { STARTED: 'running', START_FAILED: 'restarting', CRASHED: 'restarting', STOP: 'stopping', GIVE_UP: 'failed' } },
    running: { on: { CRASHED: 'restarting', EXITED: 'stopped', STOP: 'stopping', GIVE_UP: 'failed' } },
    restarting: { on: { RESTART: 'starting', STOP: 'stopping', GIVE_UP: 'failed', EXITED: 'stopped' } },
    stopping: { on: { STOPPED: 'stopped' } },
    stopped: { on: { RESTART: 'starting' } },
    failed: { on: { RESTART: 'starting' } },
  },
});

export class Lifecycle {
  private readonly actor: Actor<typeof lifecycleMachine>;

  constructor(readonly path: string) {
    this.actor = createActor(lifecycleMachine).start();
  }

  get state(): LifecycleState {
    return this.actor.getSnapshot().value as LifecycleState;
  }

  can(type: LifecycleEvent['type']): boolean {
    return this.actor.getSnapshot().can({ type } as LifecycleEvent);
  }

  send(type: LifecycleEvent['type']): void {
    if (!this.can(type)) throw new Error(`lifecycle of ${this.path}: ${type} is not allowed in state ${this.state}`);
    this.actor.send({ type } as LifecycleEvent);
  }
}
