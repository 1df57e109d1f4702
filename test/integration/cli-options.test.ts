// Options that would do nothing in a combination are usage errors: the CLI
// names both options in one line, exits as for any other usage error (1,
// commander's code, as for an unknown option) and sends nothing. A listener
// on the run's subject prefix sees every message that would have gone out.

import t from 'tap';
import { connectNats } from '../../src/transport/nats.js';
import { cli } from '../helpers/cli.js';
import { NATS_URL, uniqueName } from '../helpers/node.js';
import { waitFor } from '../helpers/wait.js';

// Fourteen child processes, each compiling the CLI through tsx: seconds each on a loaded machine.
t.setTimeout(600_000);

const CASES: [string[], string][] = [
  [['query', '--limit', '5'], "option '--limit <n>' cannot be used without option '--records'"],
  [['query', '--cursor', 'abc'], "option '--cursor <cursor>' cannot be used without option '--records'"],
  [['query', '--records', '--group-by', 'model'], "option '--group-by <keys>' cannot be used with option '--records'"],
  [['query', '--records', '--metrics', 'count'], "option '--metrics <names>' cannot be used with option '--records'"],
  [['query', '--days', '1', '--from', '0'], "option '--days <n>' cannot be used with option '--from <time>'"],
  [['sync', 'resync', 'postgres', '--no-wait', '--quiet'], "option '--quiet' cannot be used with option '--no-wait'"],
  [['sync', 'verify', 'postgres', '--json', '--quiet'], "option '--quiet' cannot be used with option '--json'"],
  [['retention', 'run', '--json', '--quiet'], "option '--quiet' cannot be used with option '--json'"],
  [['migration', 'apply', '--dry-run', '--quiet'], "option '--quiet' cannot be used with option '--dry-run'"],
  [['migration', 'rollback', '--json', '--quiet'], "option '--quiet' cannot be used with option '--json'"],
];

t.test('an option that does nothing beside another is refused in one line, and nothing is sent', async (t) => {
  const prefix = uniqueName('opts');
  const listener = await connectNats({ servers: NATS_URL, name: 'usage-tracker-options-listener' });
  t.teardown(() => listener.drain());
  const seen: string[] = [];
  listener.subscribe(`${prefix}.>`, (message) => void seen.push(message.subject));
  await listener.flush();

  for (const [args, reason] of CASES) {
    const result = await cli(args, prefix);
    t.equal(result.code, 1, `${args.join(' ')} exits 1, as an unknown option does`);
    t.equal(result.stdout, '');
    t.same(result.stderr.split('\n'), [`error: ${reason}`, '(run with --help for usage)', ''], `${args.join(' ')}: one line naming both options`);
  }

  // A marker sent after every run: once it arrives, anything a run had sent has arrived before it.
  const marker = `${prefix}.marker`;
  listener.publish(marker, new Uint8Array());
  await waitFor('the marker published after the runs', () => seen.includes(marker), { deadlineMs: 10_000, describe: () => `seen: ${seen.join(', ')}` });
  t.same(seen, [marker], 'no run sent a request');
});

t.test('the same options in combinations where they work are accepted', async (t) => {
  // No node listens on this prefix: getting as far as the request proves the options were accepted.
  const prefix = uniqueName('optsok');
  for (const args of [
    ['query', '--records', '--limit', '5', '--cursor', 'abc'],
    ['query', '--group-by', 'model', '--metrics', 'count', '--days', '1', '--to', '0'],
    ['sync', 'resync', 'postgres', '--quiet'],
    ['retention', 'run', '--dry-run', '--quiet'],
  ]) {
    const result = await cli(args, prefix);
    t.equal(result.code, 1, `${args.join(' ')}: fails only for want of a node`);
    t.match(result.stderr, /^usage-tracker: no node answers on /, `${args.join(' ')} got as far as sending`);
  }
});
