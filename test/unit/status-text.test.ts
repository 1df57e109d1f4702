// The text `usage-tracker status` prints, from admin.status replies of every
// shape the node sends: the transport and its NATS link in each state, a
// directory created empty or restored (to a point in time), and shards that
// serve or are corrupt. The reply shapes are those of supervisors/node.ts.

import t from 'tap';
import { renderStatus, transportPhrase } from '../../bin/commands/status-text.js';
import type { StatusReply } from '../../supervisors/node.js';

const reply = (overrides: Partial<StatusReply>): StatusReply => ({
  node_id: 'n1',
  cluster_id: 'default',
  incarnation: '3f9a2c1b7d0e4a66',
  lineage: null,
  version: '0.1.0',
  protocol: 1,
  started_at: '2026-11-26T10:00:00.000Z',
  uptime_ms: 5_400,
  transport: { kind: 'nats', nats: 'connected', subject_prefix: 'usage' },
  tree: { path: 'n1', kind: 'supervisor', state: 'running', restarts: 0, strategy: 'one_for_one', children: [] },
  ...overrides,
});

t.test('the transport line names the kind and the NATS link as the node knows it', async (t) => {
  t.equal(transportPhrase({ kind: 'nats', nats: 'connected', subject_prefix: 'usage' }), 'nats (connected)');
  t.equal(transportPhrase({ kind: 'nats', nats: 'reconnecting', subject_prefix: 'usage' }), 'nats (reconnecting)');
  t.equal(transportPhrase({ kind: 'nats', nats: 'disconnected', subject_prefix: 'usage' }), 'nats (disconnected)');
  t.equal(transportPhrase({ kind: 'embedded', nats: 'off', subject_prefix: 'usage' }), 'embedded');
  t.equal(transportPhrase({ kind: 'embedded', nats: 'connected', subject_prefix: 'usage' }), 'embedded, also on nats (connected)');
  t.equal(renderStatus(reply({})).split('\n')[1], 'transport nats (connected), subjects usage.v1.*');
});

t.test('the data directory line gives the incarnation, and the lineage of a restored one', async (t) => {
  t.equal(renderStatus(reply({})).split('\n')[2], 'this data directory: incarnation 3f9a2c1b7d0e4a66');
  const lineage = { parent_incarnation: '00000000deadbeef', backup_id: '20261126T020000000Z-full', to_time: '2026-11-26T02:09:00.000Z', restored_at: '2026-11-26T09:00:00.000Z' };
  t.equal(
    renderStatus(reply({ lineage })).split('\n')[2],
    'this data directory: incarnation 3f9a2c1b7d0e4a66, restored 2026-11-26T09:00:00.000Z from backup 20261126T020000000Z-full of incarnation 00000000deadbeef as of 2026-11-26T02:09:00.000Z',
  );
});

t.test('every shard shows its health; a corrupt one says its count is unknown', async (t) => {
  const shard = (n: number, detail: Record<string, unknown>) => ({ path: `n1/shards/partition-${n}`, kind: 'worker' as const, state: 'running' as const, restarts: 0, mailbox_depth: 0, detail });
  const tree = {
    path: 'n1',
    kind: 'supervisor' as const,
    state: 'running' as const,
    restarts: 0,
    strategy: 'one_for_one',
    children: [{ path: 'n1/shards', kind: 'supervisor' as const, state: 'running' as const, restarts: 0, strategy: 'one_for_one', children: [shard(0, { health: 'serving', records: 1200 }), shard(1, { health: 'corrupt', reason: 'metadata.json: bad JSON' })] }],
  };
  const lines = renderStatus(reply({ tree })).split('\n');
  t.equal(lines[6], '    ├── partition-0 [running, mailbox=0, health=serving, records=1200]');
  t.equal(lines[7], '    └── partition-1 [running, mailbox=0, health=corrupt, records unknown, reason="metadata.json: bad JSON"]');
});
