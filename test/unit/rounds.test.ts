// The crash tests' round plans (test/helpers/rounds.ts): the variables under
// a stem, each bad value refused with an error naming its variable; an
// exact count against a floor and a budget; a timeout that holds the floor's
// worst case; and round i drawing the same numbers for a seed whatever ran
// before it.

import t from 'tap';
import { planTimeoutMs, roundPlan, roundSettings } from '../helpers/rounds.js';

const defaults = { floor: 10, budgetS: 45 };

t.test('the defaults, a given seed, floor and budget, an exact count', async (t) => {
  const unset = roundSettings('CRASH', {}, defaults);
  t.match(unset, { floor: 10, max: Infinity, budgetS: 45, exact: false });
  t.ok(Number.isSafeInteger(unset.seed) && unset.seed >= 0, 'a random seed when unset');
  t.match(roundSettings('CRASH', { CRASH_SEED: '', CRASH_ROUNDS_MIN: '' }, defaults), { floor: 10, exact: false }, 'empty counts as unset');
  t.same(roundSettings('CRASH', { CRASH_SEED: '7', CRASH_ROUNDS_MIN: '3', CRASH_BUDGET_S: '2.5' }, defaults), { seed: 7, floor: 3, max: Infinity, budgetS: 2.5, exact: false });
  t.same(roundSettings('CRASH', { CRASH_SEED: '0', CRASH_ROUNDS: '1000' }, defaults), { seed: 0, floor: 1000, max: 1000, budgetS: 0, exact: true });
  t.match(roundSettings('SYNC_CRASH', { CRASH_ROUNDS: '5' }, defaults), { floor: 10, exact: false }, "another stem's variables are not read");
});

t.test('each bad value is refused, naming its variable', async (t) => {
  const bad: [Record<string, string>, RegExp][] = [
    [{ CRASH_SEED: 'abc' }, /^CRASH_SEED must be a whole number from 0 to 4294967295, got "abc"$/],
    [{ CRASH_SEED: '-1' }, /^CRASH_SEED /],
    [{ CRASH_SEED: '4294967296' }, /^CRASH_SEED /],
    [{ CRASH_SEED: '1e3' }, /^CRASH_SEED /],
    [{ CRASH_ROUNDS_MIN: '0' }, /^CRASH_ROUNDS_MIN must be a whole number from 1 /],
    [{ CRASH_ROUNDS_MIN: '2.5' }, /^CRASH_ROUNDS_MIN /],
    [{ CRASH_ROUNDS_MIN: ' 4' }, /^CRASH_ROUNDS_MIN /],
    [{ CRASH_BUDGET_S: '-1' }, /^CRASH_BUDGET_S must be a number of seconds/],
    [{ CRASH_BUDGET_S: 'Infinity' }, /^CRASH_BUDGET_S /],
    [{ CRASH_BUDGET_S: '99999999' }, /^CRASH_BUDGET_S /],
    [{ CRASH_ROUNDS: 'x'.repeat(10_000) }, /^CRASH_ROUNDS must be /],
    [{ CRASH_ROUNDS: '0' }, /^CRASH_ROUNDS must be /],
    [{ CRASH_ROUNDS: '5', CRASH_BUDGET_S: '10' }, /^CRASH_ROUNDS sets an exact count of rounds; unset CRASH_ROUNDS_MIN and CRASH_BUDGET_S/],
    [{ CRASH_ROUNDS: '5', CRASH_ROUNDS_MIN: '2' }, /^CRASH_ROUNDS sets an exact count/],
  ];
  for (const [env, message] of bad) t.throws(() => roundSettings('CRASH', env, defaults), { message }, JSON.stringify(env).slice(0, 80));
});

t.test("the timeout holds the floor's worst case, or the budget and one more round", async (t) => {
  const settings = roundSettings('CRASH', { CRASH_SEED: '1' }, defaults);
  t.equal(planTimeoutMs(settings, 5000, 10_000), 10_000 + Math.max(10 * 5000, 45_000 + 5000));
  t.equal(planTimeoutMs(roundSettings('CRASH', { CRASH_ROUNDS: '20' }, defaults), 5000, 10_000), 10_000 + 20 * 5000);
});

t.test('round i draws the same numbers for a seed, and other ones for another round or seed', async (t) => {
  const draw = (random: () => number) => Array.from({ length: 4 }, random);
  const comments: string[] = [];
  const fake = { setTimeout: () => undefined, comment: (text: string) => comments.push(text) } as unknown as Parameters<typeof roundPlan>[0];
  const plan = (seed: string, rounds: string) => roundPlan(fake, { stem: 'X', file: 'f.test.ts', floor: 1, budgetS: 0, roundMsMax: 1, setupMsMax: 1, env: { X_SEED: seed, X_ROUNDS: rounds } });
  const a = plan('42', '3');
  t.same(draw(a.random(2)), draw(plan('42', '9').random(2)), 'round 2 of seed 42, whatever the count');
  t.not(JSON.stringify(draw(a.random(2))), JSON.stringify(draw(a.random(1))), 'another round draws other numbers');
  t.not(JSON.stringify(draw(a.random(2))), JSON.stringify(draw(plan('43', '3').random(2))), 'another seed draws other numbers');
  t.ok(draw(a.random(0)).every((x) => x >= 0 && x < 1));
  t.same([...a.rounds()], [0, 1, 2], 'an exact count runs exactly');
  a.end();
  t.match(comments.at(-1), /^3 rounds ran \(floor 3, budget 0 s, seed 42\); reproduce: X_SEED=42 X_ROUNDS=3 npx tap f\.test\.ts$/);
  const budgetless = roundPlan(fake, { stem: 'X', file: 'f.test.ts', floor: 2, budgetS: 0, roundMsMax: 1, setupMsMax: 1, env: {} });
  t.same([...budgetless.rounds()], [0, 1], 'with no budget the floor runs, and no more');
});
