// `usage-tracker query`: usage and cost questions to a running node, printed
// as a table (aggregate by default, `--records` for the records themselves),
// or as the raw reply with --json. A reply missing shards says so.

import { RECORDS_PAGE_MAX } from '../../protocols/requests.js';
import { renderTable } from '../../src/text-table.js';
import { CliError, withClient, type ConnectionOptions } from '../client.js';

export interface QueryOptions extends ConnectionOptions {
  user?: string;
  provider?: string;
  model?: string;
  status?: string;
  from?: string;
  to?: string;
  days?: string;
  groupBy?: string;
  metrics?: string;
  records?: boolean;
  limit?: string;
  cursor?: string;
  timeout: string;
  json?: boolean;
}

const DAY_MS = 86_400_000;

/** A timestamp option: digits are epoch milliseconds, anything else goes to the server as ISO 8601. */
const timestamp = (text: string) => (/^\d+$/.test(text) ? Number(text) : text);
const list = (text: string) => text.split(',').map((part) => part.trim()).filter(Boolean);

/** --limit as the node takes it, checked here so that "abc" is named as typed rather than arriving as NaN. */
function pageLimit(text: string): number {
  const limit = Number(text);
  if (text.trim() === '' || !Number.isInteger(limit) || limit < 1 || limit > RECORDS_PAGE_MAX) {
    throw new CliError(`--limit must be a whole number from 1 to ${RECORDS_PAGE_MAX}, got ${JSON.stringify(text)}`);
  }
  return limit;
}

export function queryBody(options: QueryOptions, now = Date.now()): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  if (options.user) body.user_id = options.user;
  if (options.provider) body.provider = options.provider;
  if (options.model) body.model = options.model;
  if (options.status) body.status = options.status;
  if (options.days !== undefined) {
    const days = Number(options.days);
    if (!Number.isFinite(days) || days <= 0) throw new CliError(`--days must be a positive number, got ${options.days}`);
    body.from = now - Math.round(days * DAY_MS);
  }
  if (options.from) body.from = timestamp(options.from);
  if (options.to) body.to = timestamp(options.to);
  if (options.records) {
    if (options.limit !== undefined) body.limit = pageLimit(options.limit);
    if (options.cursor) body.cursor = options.cursor;
  } else {
    if (options.groupBy) body.group_by = list(options.groupBy);
    if (options.metrics) body.metrics = list(options.metrics);
  }
  return body;
}

const money = (value: unknown) => (typeof value === 'number' ? `$${value.toFixed(4)}` : 'unknown');
const number = (value: unknown) => (typeof value === 'number' ? value.toLocaleString('en-US') : '');
const ms = (value: unknown) => (typeof value === 'number' ? value.toFixed(0) : '');

export async function runQuery(options: QueryOptions): Promise<string> {
  const timeoutMs = Number(options.timeout);
  const body = queryBody(options);
  return withClient(options, timeoutMs, async (client) => {
    const reply = await client.expect<Record<string, unknown>>(options.records ? 'query.records' : 'query.aggregate', body, timeoutMs);
    if (options.json) return `${JSON.stringify(reply, null, 2)}\n`;
    const missing = reply.complete === false ? `\nWARNING: incomplete answer, shards missing: ${JSON.stringify(reply.missing_shards)}\n` : '';
    return (options.records ? recordsTable(reply) : aggregateTable(reply)) + missing;
  });
}

function aggregateTable(reply: Record<string, unknown>): string {
  const rows = (reply.rows ?? []) as Record<string, unknown>[];
  if (rows.length === 0) return 'no matching records\n';
  const keys = Object.keys(rows[0]!);
  const headers = keys.map((key) => (key === 'cost_usd' ? 'cost (USD)' : key.replace(/_/g, ' ')));
  const format = (key: string, value: unknown) => {
    if (key === 'cost_usd') return money(value);
    if (key.startsWith('latency')) return ms(value);
    return typeof value === 'number' ? number(value) : String(value ?? '');
  };
  const numeric = keys.map((key) => (typeof rows[0]![key] === 'number' || key === 'cost_usd' || key.startsWith('latency') ? 'right' : 'left') as 'left' | 'right');
  return `${renderTable(headers, rows.map((row) => keys.map((key) => format(key, row[key]))), numeric)}\n`;
}

function recordsTable(reply: Record<string, unknown>): string {
  const records = (reply.records ?? []) as Record<string, unknown>[];
  if (records.length === 0) return 'no matching records\n';
  const headers = ['time (UTC)', 'user', 'provider', 'model', 'in', 'out', 'cost', 'latency ms', 'status', 'id'];
  const rows = records.map((r) => [
    new Date(Number(r.ts)).toISOString().replace('T', ' ').slice(0, 19),
    String(r.user_id),
    String(r.provider),
    String(r.model),
    number(r.input_tokens),
    number(r.output_tokens),
    r.cost_source === 'unknown' ? 'unknown' : money(r.cost_usd),
    ms(r.latency_ms),
    String(r.status),
    String(r.id),
  ]);
  const next = reply.next_cursor ? `\nmore: --cursor ${String(reply.next_cursor)}\n` : '';
  return `${renderTable(headers, rows, ['left', 'left', 'left', 'left', 'right', 'right', 'right', 'right', 'left', 'left'])}\n${next}`;
}
