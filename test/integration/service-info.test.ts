// What `$SRV.INFO` says about a node's endpoints agrees with
// docs/configuration.md (transport.nats.queue_group): every cluster-wide
// endpoint is in the configured queue group, and so is every per-node one,
// since the NATS services framework gives one queue group to all of a
// service's endpoints.

import t from 'tap';
import { ENDPOINTS, type EndpointName } from '../../protocols/subjects.js';
import { startTestNode, uniqueName } from '../helpers/node.js';

const WAIT_MS = 30_000;

interface InfoEndpoint {
  name: string;
  subject: string;
  queue_group: string;
  metadata: Record<string, string>;
}

t.test('$SRV.INFO shows transport.nats.queue_group on every endpoint, cluster-wide and per node', async (t) => {
  const queueGroup = uniqueName('qg');
  const tn = await startTestNode(`transport:\n  nats:\n    queue_group: ${queueGroup}\n`);
  t.teardown(() => tn.stop());
  const inbox = `_INBOX.${uniqueName('srv')}`;
  // Other nodes on this server answer too; wait for this node's answer.
  const info = await new Promise<{ endpoints: InfoEndpoint[] }>((resolve, reject) => {
    const timer = setTimeout(() => {
      sub.unsubscribe();
      reject(new Error(`no $SRV.INFO answer from node ${tn.config.node.id} within ${WAIT_MS} ms`));
    }, WAIT_MS);
    const sub = tn.client.subscribe(inbox, (msg) => {
      const body = JSON.parse(new TextDecoder().decode(msg.data)) as { metadata?: Record<string, string>; endpoints: InfoEndpoint[] };
      if (body.metadata?.node_id !== tn.config.node.id) return;
      clearTimeout(timer);
      sub.unsubscribe();
      resolve(body);
    });
    tn.client.connection.publish('$SRV.INFO.usage-tracker', new Uint8Array(), { reply: inbox });
  });
  const names = Object.keys(ENDPOINTS) as EndpointName[];
  t.equal(info.endpoints.length, names.length * 2, 'each endpoint twice: cluster-wide and per node');
  for (const name of names) {
    const cluster = info.endpoints.find((endpoint) => endpoint.subject === tn.subjects.endpoint(name));
    const perNode = info.endpoints.find((endpoint) => endpoint.subject === tn.subjects.nodeEndpoint(tn.config.node.id, name));
    t.equal(cluster?.queue_group, queueGroup, `${name}: cluster-wide endpoint in the configured queue group`);
    t.equal(perNode?.queue_group, queueGroup, `${name}: per-node endpoint in the same group, as the docs say`);
  }
});
