// The demo's closing table asks about exactly the window its records were
// generated in: fixed when the demo starts, not recomputed when the table is
// asked for (which once left out the records at the start of the range).

import t from 'tap';
import { demoQueries, demoWindow } from '../../bin/commands/demo.js';
import { queryBody } from '../../bin/commands/query.js';
import { createGenerator } from '../../src/demo/generate.js';

const HOUR_MS = 3_600_000;

t.test('every generated record lies in the window the closing queries ask about, however late they are asked', async (t) => {
  for (const [seed, days, count] of [[1, 1, 1], [7, 1, 20_000], [42, 3, 5000], [9, 30, 997]] as const) {
    const nowMs = Date.UTC(2026, 0, 15, 9, 30) + seed;
    const window = demoWindow(nowMs, days);
    const generator = createGenerator({ seed, users: 10, fromMs: window.fromMs, days, count, idPrefix: `demo-${seed}` });
    let first = Infinity;
    let last = -Infinity;
    for (let i = 0; i < count; i++) {
      const { ts } = generator.recordAt(i);
      first = Math.min(first, ts);
      last = Math.max(last, ts);
    }
    for (const query of demoQueries(window, { timeout: '1000' })) {
      // Asked an hour after the demo started: a window relative to the query's own clock would have moved.
      const body = queryBody(query, nowMs + HOUR_MS);
      t.ok(typeof body.from === 'number' && body.from <= first, `seed ${seed}: from ${String(body.from)} is at or before the first record (${first})`);
      t.ok(typeof body.to === 'number' && last < body.to, `seed ${seed}: to ${String(body.to)} is after the last record (${last})`);
    }
  }
});
