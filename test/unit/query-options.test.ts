// `usage-tracker query` options as the CLI turns them into a request body
// (bin/commands/query.ts queryBody): a bad --limit is named as typed, before
// anything is sent, rather than reaching the node as NaN.

import t from 'tap';
import { CliError } from '../../bin/client.js';
import { queryBody, type QueryOptions } from '../../bin/commands/query.js';

const base: QueryOptions = { timeout: '1000', records: true };

t.test('--limit with --records: a whole number from 1 to 1000, or one line naming it', async (t) => {
  t.equal(queryBody({ ...base, limit: '50' }).limit, 50);
  t.equal(queryBody({ ...base, limit: '1000' }).limit, 1000);
  for (const limit of ['abc', '0', '1001', '2.5', '', ' ', 'NaN', '1e3x']) {
    t.throws(() => queryBody({ ...base, limit }), new CliError(`--limit must be a whole number from 1 to 1000, got ${JSON.stringify(limit)}`), `--limit ${JSON.stringify(limit)}`);
  }
});
