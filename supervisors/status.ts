// The status tree: one node per supervisor or worker, as `usage.v1.admin.status`
// returns it and `usage-tracker status` prints it.

import type { LifecycleState } from './lifecycle.js';

export interface StatusNode {
  path: string;
  kind: 'supervisor' | 'worker';
  state: LifecycleState;
  restarts: number;
  last_error?: string;
  mailbox_depth?: number;
  strategy?: string;
  /** Anything the child wants operators to see (shard health, pool size, ...). */
  detail?: Record<string, unknown>;
  children?: StatusNode[];
}

/** Renders a status tree as indented lines for humans. */
export function renderStatusTree(root: StatusNode): string {
  const lines: string[] = [];
  const walk = (node: StatusNode, prefix: string, last: boolean, top: boolean) => {
    const name = top ? node.path : node.path.slice(node.path.lastIndexOf('/') + 1);
    const facts: string[] = [node.state];
    if (node.strategy) facts.push(node.strategy);
    if (node.restarts > 0) facts.push(`restarts=${node.restarts}`);
    if (node.mailbox_depth !== undefined) facts.push(`mailbox=${node.mailbox_depth}`);
    // A shard: its health always, its record count when it knows it (a corrupt shard cannot, and says so).
    const detail = node.detail ?? {};
    if (typeof detail.health === 'string') facts.push(`health=${detail.health}`);
    if (typeof detail.records === 'number') facts.push(`records=${detail.records}`);
    else if (detail.health === 'corrupt') facts.push('records unknown');
    if (typeof detail.health === 'string' && detail.health !== 'serving' && typeof detail.reason === 'string') facts.push(`reason=${JSON.stringify(detail.reason)}`);
    if (node.last_error) facts.push(`last_error=${JSON.stringify(node.last_error)}`);
    lines.push(`${prefix}${top ? '' : last ? '└── ' : '├── '}${name} [${facts.join(', ')}]`);
    const children = node.children ?? [];
    const childPrefix = top ? '' : prefix + (last ? '    ' : '│   ');
    children.forEach((child, index) => walk(child, childPrefix, index === children.length - 1, false));
  };
  walk(root, '', true, true);
  return lines.join('\n');
}
