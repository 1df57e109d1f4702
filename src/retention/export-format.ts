// The formats of retention's export and archive output. JSON lines: one
// stored record (every field, as kept in sealed files) per line. CSV
// (RFC 4180): a header row, then one row per record with the columns below;
// `ts` as ISO 8601 UTC, `metadata` as JSON text, absent values empty, a
// field quoted when it holds a comma, a quote or a line break.

import type { StoredRecord } from '../../protocols/record.js';

export const CSV_COLUMNS = [
  'id',
  'ts',
  'user_id',
  'provider',
  'model',
  'input_tokens',
  'output_tokens',
  'cached_tokens',
  'cost_usd',
  'cost_source',
  'latency_ms',
  'status',
  'error_code',
  'session_id',
  'campaign_id',
  'operation',
  'metadata',
  'version',
  'shard',
] as const;

export function recordsToJsonl(records: readonly StoredRecord[]): string {
  return records.map((record) => JSON.stringify(record)).join('\n') + (records.length > 0 ? '\n' : '');
}

function csvField(value: unknown): string {
  if (value === undefined || value === null) return '';
  const text = typeof value === 'object' ? JSON.stringify(value) : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

export function recordsToCsv(records: readonly StoredRecord[]): string {
  const lines = [CSV_COLUMNS.join(',')];
  for (const record of records) {
    const source = record as unknown as Record<string, unknown>;
    lines.push(CSV_COLUMNS.map((column) => csvField(column === 'ts' ? new Date(record.ts).toISOString() : source[column])).join(','));
  }
  return lines.join('\r\n') + '\r\n';
}

/** Parses what recordsToCsv wrote (for tests and for reading exports back). */
export function parseCsv(text: string): Record<string, string>[] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\r' && text[i + 1] === '\n') {
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
      i++;
    } else field += c;
  }
  const [header, ...body] = rows;
  if (!header) return [];
  return body.map((cells) => Object.fromEntries(header.map((name, i) => [name, cells[i] ?? ''])));
}
