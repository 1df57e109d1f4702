// A node with both mirrors on, against a real PostgreSQL and a real Chroma
// server: both end up holding exactly the local records at their versions;
// the Chroma server SIGKILLed and restarted under load never stalls ingest,
// and the Chroma mirror catches up with nothing lost or doubled.

import t from 'tap';
import { ChromaClient } from 'chromadb';
import pg from 'pg';
import { createGenerator } from '../../src/demo/generate.js';
import { startChroma } from '../helpers/chroma.js';
import { caughtUp, compareMirror, localRecords, mirroredRows, mirrorReaches } from '../helpers/mirror.js';
import { startTestNode, uniqueName, type TestNode } from '../helpers/node.js';
import { WAIT_DEADLINE_MS, within } from '../helpers/wait.js';

const POSTGRES_URL = process.env.USAGE_TRACKER_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const DAY_MS = 86_400_000;

/** Every item of a Chroma collection: id to metadata. */
async function chromaItems(url: string, name: string): Promise<Map<string, Record<string, unknown>>> {
  const { hostname, port, protocol } = new URL(url);
  const client = new ChromaClient({ host: hostname, port: Number(port), ssl: protocol === 'https:' });
  const collection = await client.getCollection({ name });
  const items = new Map<string, Record<string, unknown>>();
  for (let offset = 0; ; offset += 1000) {
    const page = await collection.get({ limit: 1000, offset, include: ['metadatas'] });
    page.ids.forEach((id, index) => items.set(id, (page.metadatas[index] ?? {}) as Record<string, unknown>));
    if (page.ids.length < 1000) return items;
  }
}

function records(count: number, seed: number) {
  const generator = createGenerator({ seed, users: 40, fromMs: Date.now() - 2 * DAY_MS, days: 2, idPrefix: uniqueName('m') });
  return Array.from({ length: count }, (_, i) => generator.recordAt(i));
}

t.test('PostgreSQL and Chroma hold exactly the local records; a Chroma crash under load stalls nothing', async (t) => {
  const chroma = await startChroma({ own: true });
  t.teardown(() => chroma.stop());
  const schema = uniqueName('mirrors');
  const prefix = `${uniqueName('m')}_`;
  const admin = new pg.Pool({ connectionString: POSTGRES_URL, max: 2 });
  t.teardown(async () => {
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
    await admin.end();
  });
  const yaml =
    `cluster:\n  shards: 3\nbackends:\n  postgres:\n    url: ${POSTGRES_URL}\n    schema: ${schema}\n    window_ms: 20\n` +
    `  chroma:\n    url: ${chroma.url}\n    collection_prefix: ${prefix}\n    window_ms: 20\n    retry_base_ms: 50\n    retry_max_ms: 500\n    request_timeout_ms: 5000\n`;
  const node = await startTestNode(yaml);
  t.teardown(() => node.stop());

  await node.call('ingest', { records: records(500, 1) });
  const target = (await node.call('query.records', { limit: 1 })).records[0];
  t.equal((await node.call('record.update', { id: target.id, user_id: target.user_id, expected_version: 1, patch: { output_tokens: 7 } })).version, 2);
  await caughtUp(node, 2);

  const check = async (label: string) => {
    const local = await localRecords(node);
    compareMirror(t, local, await mirroredRows(admin, schema));
    for (const name of ['usage_patterns', 'cost_optimization', 'performance_metrics']) {
      const items = await chromaItems(chroma.url, `${prefix}${name}`);
      t.equal(items.size, local.size, `${label}: ${name} holds every record`);
      let wrong = 0;
      for (const record of local.values()) {
        const item = items.get(`${record.shard}:${record.id}`);
        if (!item || item.version !== record.version || item.user_id !== record.user_id) wrong++;
      }
      t.equal(wrong, 0, `${label}: ${name} has each record at its version`);
    }
  };
  await check('after ingest');

  await chroma.kill();
  // Chroma stays down until every ingest below is acknowledged, so an ingest
  // that waited on the mirror would never be: the wait fails naming it (the
  // request's own timeout is longer, so that the wait is what fails).
  let stored = 0;
  for (let round = 0; round < 5; round++) {
    const ingest = node.call('ingest', { records: records(100, 10 + round) }, { timeoutMs: 2 * WAIT_DEADLINE_MS });
    stored += (await within(`ingest round ${round + 1} of 5 acknowledged while Chroma is down`, ingest)).results.filter((r: any) => r.status === 'stored').length;
  }
  t.equal(stored, 500, 'every record ingested while Chroma was down was stored');
  const during = await mirrorReaches(node, 'chroma', "Chroma's mirror out of real time", (status) => status.state !== 'realtime');
  t.not(during.state, 'realtime', `Chroma's mirror knows it is behind (${during.state})`);
  await chroma.restart();
  await caughtUp(node, 2);
  await check('after the Chroma crash');
  const verify = await node.call('admin.sync.verify', { backend: 'chroma' });
  t.equal(verify.error?.code, 'E_VALIDATION', 'verify is not offered for Chroma yet, and says so');
});
