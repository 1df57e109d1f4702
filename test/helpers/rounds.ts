/**
 * How many rounds a round-based test (the crash tests) runs, read from the
 * environment under a stem of its own. For the stem `CRASH`:
 *
 * - `CRASH_SEED`: the seed (random when unset). Round i draws from
 *   `random(i)`, a generator seeded by the seed and i alone, so round i
 *   makes the same choices in every run of that seed, however many ran.
 * - `CRASH_ROUNDS_MIN`: the floor, the rounds that always run.
 * - `CRASH_BUDGET_S`: after the floor, further rounds start while this many
 *   seconds have not passed since the first round started. The budget is
 *   checked between rounds: a round under way is never cut.
 * - `CRASH_ROUNDS`: an exact count instead (floor = maximum = N, no budget),
 *   as scripts/crash-soak.sh and a reproduction use it.
 *
 * An empty variable counts as unset; any other value that is not a whole
 * number (the budget: a number) of the right range stops the test with an
 * error naming the variable. The plan sets the file's tap timeout to the
 * worst case of what it may run (unless tap runs with --timeout=0), and
 * says at the start and at the end what it ran, with a command that
 * reproduces it.
 */

import type { Test } from 'tap';
import { seededRandom } from '../crash/fixture-writer.js';

export interface RoundSettings {
  seed: number;
  floor: number;
  /** Rounds at most: the exact count of `<STEM>_ROUNDS`, else unbounded. */
  max: number;
  /** Seconds after the first round during which rounds beyond the floor may start; 0 with an exact count. */
  budgetS: number;
  exact: boolean;
}

const SEED_MAX = 2 ** 32 - 1;
const ROUNDS_MAX = 1_000_000;
const BUDGET_S_MAX = 86_400;

function whole(name: string, text: string, min: number, max: number): number {
  const value = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) throw new Error(`${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(text)}`);
  return value;
}

/** The settings under `stem` in `env`, with the test's defaults for the floor and the budget. Throws naming the offending variable. */
export function roundSettings(stem: string, env: NodeJS.ProcessEnv, defaults: { floor: number; budgetS: number }): RoundSettings {
  const read = (suffix: string) => {
    const text = env[`${stem}_${suffix}`];
    return text === undefined || text === '' ? undefined : text;
  };
  const seedText = read('SEED');
  const seed = seedText === undefined ? Math.floor(Math.random() * SEED_MAX) : whole(`${stem}_SEED`, seedText, 0, SEED_MAX);
  const exactText = read('ROUNDS');
  const floorText = read('ROUNDS_MIN');
  const budgetText = read('BUDGET_S');
  if (exactText !== undefined) {
    if (floorText !== undefined || budgetText !== undefined) {
      throw new Error(`${stem}_ROUNDS sets an exact count of rounds; unset ${stem}_ROUNDS_MIN and ${stem}_BUDGET_S or unset ${stem}_ROUNDS`);
    }
    const rounds = whole(`${stem}_ROUNDS`, exactText, 1, ROUNDS_MAX);
    return { seed, floor: rounds, max: rounds, budgetS: 0, exact: true };
  }
  const floor = floorText === undefined ? defaults.floor : whole(`${stem}_ROUNDS_MIN`, floorText, 1, ROUNDS_MAX);
  let budgetS = defaults.budgetS;
  if (budgetText !== undefined) {
    budgetS = /^\d+(\.\d+)?$/.test(budgetText) ? Number(budgetText) : NaN;
    if (!(budgetS >= 0 && budgetS <= BUDGET_S_MAX)) throw new Error(`${stem}_BUDGET_S must be a number of seconds from 0 to ${BUDGET_S_MAX}, got ${JSON.stringify(budgetText)}`);
  }
  return { seed, floor, max: Infinity, budgetS, exact: false };
}

export interface RoundPlanOptions {
  /** The variables' stem: `CRASH` reads CRASH_SEED, CRASH_ROUNDS_MIN, CRASH_BUDGET_S and CRASH_ROUNDS. */
  stem: string;
  /** The test file from the repository root, for the reproduce line. */
  file: string;
  /** The floor and the budget when the environment sets neither. */
  floor: number;
  budgetS: number;
  /** The worst case of one round, and of everything before the first round and after the last, on a loaded 2-core machine. */
  roundMsMax: number;
  setupMsMax: number;
  /** Default: process.env. */
  env?: NodeJS.ProcessEnv;
}

export interface RoundPlan extends RoundSettings {
  /** The round numbers to run, 0 up: the floor, then more while the budget lasts (checked before each), never beyond max. */
  rounds(): Generator<number, void, undefined>;
  /** Uniform numbers in [0, 1) for round `round`, the same sequence for every run of this seed. */
  random(round: number): () => number;
  /** Whether round `round` may follow the ones before it (always within the floor; else while budget and max allow). */
  mayRun(round: number): boolean;
  /** Rounds started so far. */
  readonly ran: number;
  /** Says how many rounds ran, with the command that runs exactly those again. */
  end(): void;
}

/** The tap timeout (ms) the worst case of a plan needs: the setup, then the floor's rounds or the budget and one more round, whichever is longer. */
export function planTimeoutMs(settings: RoundSettings, roundMsMax: number, setupMsMax: number): number {
  return setupMsMax + Math.max(settings.floor * roundMsMax, settings.budgetS * 1000 + roundMsMax);
}

/** splitmix32-style mixing of the seed and a round number into the round's own seed. */
function roundSeed(seed: number, round: number): number {
  let h = Math.imul((seed ^ 0x9e3779b9) >>> 0, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h ^ (round >>> 0), 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Reads the plan of a test whose root is `t`, sets the file's timeout and prints the plan. */
export function roundPlan(t: Test, options: RoundPlanOptions): RoundPlan {
  const env = options.env ?? process.env;
  const settings = roundSettings(options.stem, env, { floor: options.floor, budgetS: options.budgetS });
  const timeoutMs = planTimeoutMs(settings, options.roundMsMax, options.setupMsMax);
  // tap --timeout=0 asks for none (a soak); otherwise the worst case must fit.
  if (env.TAP_TIMEOUT !== '0') t.setTimeout(timeoutMs);
  const { stem, file } = options;
  const vars = settings.exact ? `${stem}_SEED=${settings.seed} ${stem}_ROUNDS=${settings.max}` : `${stem}_SEED=${settings.seed} ${stem}_ROUNDS_MIN=${settings.floor} ${stem}_BUDGET_S=${settings.budgetS}`;
  t.comment(
    `${file}: seed ${settings.seed}, ` +
      (settings.exact ? `exactly ${settings.max} rounds` : `floor ${settings.floor} rounds, then more for up to ${settings.budgetS} s`) +
      `; timeout ${env.TAP_TIMEOUT === '0' ? 'none' : `${Math.ceil(timeoutMs / 1000)} s`} (reproduce: ${vars} npx tap ${file})`,
  );
  let firstAt: number | undefined;
  let ran = 0;
  const mayRun = (round: number) => {
    if (round < settings.floor) return true;
    if (round >= settings.max) return false;
    return firstAt === undefined || Date.now() - firstAt < settings.budgetS * 1000;
  };
  return {
    ...settings,
    get ran() {
      return ran;
    },
    mayRun,
    random: (round) => seededRandom(roundSeed(settings.seed, round)),
    *rounds() {
      for (let round = 0; mayRun(round); round++) {
        firstAt ??= Date.now();
        ran = round + 1;
        yield round;
      }
    },
    end() {
      t.comment(
        `${ran} rounds ran (floor ${settings.floor}, budget ${settings.budgetS} s, seed ${settings.seed}); ` +
          `reproduce: ${stem}_SEED=${settings.seed} ${stem}_ROUNDS=${ran} npx tap ${file}`,
      );
    },
  };
}
