// What `usage-tracker status` prints from an admin.status reply: who the
// node is, its transport as the node knows it (`transport nats (connected)`,
// `transport embedded`, or embedded and also on NATS), which history its
// data directory is (incarnation and lineage), then the supervision tree
// with every shard's health. The start banner names the transport the same way.

import type { StatusReply } from '../../supervisors/node.js';
import { renderStatusTree } from '../../supervisors/status.js';
import { lineageLine } from './backup.js';

/** `nats (connected)`, `embedded`, or `embedded, also on nats (reconnecting)`. */
export function transportPhrase(transport: StatusReply['transport']): string {
  if (transport.kind === 'nats') return `nats (${transport.nats})`;
  return transport.nats === 'off' ? 'embedded' : `embedded, also on nats (${transport.nats})`;
}

export function renderStatus(body: StatusReply): string {
  const uptime = `${Math.round(body.uptime_ms / 1000)} s`;
  return (
    `node ${body.node_id} (cluster ${body.cluster_id}), usage-tracker ${body.version}, protocol v${body.protocol}, up ${uptime}\n` +
    `transport ${transportPhrase(body.transport)}, subjects ${body.transport.subject_prefix}.v1.*\n` +
    `${lineageLine(body.incarnation, body.lineage)}\n\n` +
    `${renderStatusTree(body.tree)}\n`
  );
}
