// What the NATS services framework's discovery subjects say about a node.
// `$SRV.INFO` agrees with docs/configuration.md (transport.nats.queue_group):
// every cluster-wide endpoint is in the configured queue group, and so is
// every per-node one, since the framework gives one queue group to all of a
// service's endpoints. `$SRV.STATS` counts error replies (num_errors,
// last_error), which the framework alone would not (src/transport/service-errors.ts).

import t from 'tap';
import { ENDPOINTS, type EndpointName } from '../../protocols/subjects.js';
import { startTestNode, uniqueName, type TestNode } from '../helpers/node.js';

const WAIT_MS = 30_000;

interface InfoEndpoint {
  name: string;
  subject: string;
  queue_group: string;
  metadata: Record<string, string>;
}

/** This node's answer to `$SRV.<verb>.usage-tracker` (other nodes on this server answer too). */
function srvAnswer<T>(tn: TestNode, verb: 'INFO' | 'STATS'): Promise<T> {
  const inbox = `_INBOX.${uniqueName('srv')}`;
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      sub.unsubscribe();
      reject(new Error(`no $SRV.${verb} answer from node ${tn.config.node.id} within ${WAIT_MS} ms`));
    }, WAIT_MS);
    const sub = tn.client.subscribe(inbox, (msg) => {
      const body = JSON.parse(new TextDecoder().decode(msg.data)) as T & { metadata?: Record<string, string> };
      if (body.metadata?.node_id !== tn.config.node.id) return;
      clearTimeout(timer);
      sub.unsubscribe();
      resolve(body);
    });
    tn.client.connection.publish(`$SRV.${verb}.usage-tracker`, new Uint8Array(), { reply: inbox });
  });
}

t.test('$SRV.INFO shows transport.nats.queue_group on every endpoint, cluster-wide and per node', async (t) => {
  const queueGroup = uniqueName('qg');
  const tn = await startTestNode(`transport:\n  nats:\n    queue_group: ${queueGroup}\n`);
  t.teardown(() => tn.stop());
  const info = await srvAnswer<{ endpoints: InfoEndpoint[] }>(tn, 'INFO');
  const names = Object.keys(ENDPOINTS) as EndpointName[];
  t.equal(info.endpoints.length, names.length * 2, 'each endpoint twice: cluster-wide and per node');
  for (const name of names) {
    const cluster = info.endpoints.find((endpoint) => endpoint.subject === tn.subjects.endpoint(name));
    const perNode = info.endpoints.find((endpoint) => endpoint.subject === tn.subjects.nodeEndpoint(tn.config.node.id, name));
    t.equal(cluster?.queue_group, queueGroup, `${name}: cluster-wide endpoint in the configured queue group`);
    t.equal(perNode?.queue_group, queueGroup, `${name}: per-node endpoint in the same group, as the docs say`);
  }
});

interface StatsEndpoint {
  name: string;
  num_requests: number;
  num_errors: number;
  last_error?: string;
}

t.test('$SRV.STATS counts error replies, with the last one, and not the successful ones', async (t) => {
  const tn = await startTestNode();
  t.teardown(() => tn.stop());
  const ok = await tn.call('query.aggregate', {});
  t.equal(ok.ok, true, 'a good request is answered ok');
  for (const limit of ['many', -1]) {
    const bad = await tn.call('query.records', { limit });
    t.equal(bad.error?.code, 'E_VALIDATION', `limit ${JSON.stringify(limit)} is refused`);
  }
  const missing = await tn.call('record.get', { user_id: 'u-nobody', id: 'r-none' });
  t.equal(missing.error?.code, 'E_NOT_FOUND', 'a get of no record is E_NOT_FOUND');
  const stats = await srvAnswer<{ endpoints: StatsEndpoint[] }>(tn, 'STATS');
  const endpoint = (name: string) => stats.endpoints.find((e) => e.name === name);
  t.match(endpoint('query-aggregate'), { num_requests: 1, num_errors: 0 }, 'the good request is no error');
  t.match(endpoint('query-records'), { num_requests: 2, num_errors: 2, last_error: /^E_VALIDATION: .*limit/ }, 'both refusals counted, the last one shown');
  t.match(endpoint('record-get'), { num_errors: 1, last_error: /^E_NOT_FOUND: / }, 'an E_NOT_FOUND answer is an error reply too');
  t.match(endpoint('node-query-records'), { num_requests: 0, num_errors: 0 }, 'the per-node copy saw nothing');
});
