// Paging of `usage.v1.query.records`, independent of storage. Promises:
//
// - One stable total order: `ts` ascending, then `shard` ascending, then `id`
//   in UTF-16 code-unit order. A shard holds an `id` at most once (dedup), so
//   (ts, shard, id) names one record and pages never overlap or skip, even
//   when many records share a millisecond. Records ingested behind a cursor
//   (an older `ts`) are not seen by pages after it: a cursor is a position.
// - An opaque cursor: base64url of the JSON `{"ts":…,"shard":…,"id":…}` of the
//   last record of the page. Clients must not build or read it; it is valid
//   with any filters (it is only a position). Anything that is not exactly a
//   cursor this module wrote fails with E_VALIDATION naming field `cursor`.
// - Scatter and gather:
//     shard:     createShardPageSelection(query), fed each record of a scan
//                (or selectShardPage(records, query) for records in hand):
//                the shard's matching records after the cursor, sorted, at
//                most `limit + 1` of them (one lookahead record says whether
//                another page exists). Its memory is bounded by
//                2 * (limit + 1) records whatever the input's size or order.
//     gatherer:  mergePages(shardLists, limit)  k-way merge into the first
//                `limit` records, with `next_cursor` exactly when at least one
//                more matching record exists after the page.
//   Correct because each of the global first `limit + 1` records is among its
//   own shard's first `limit + 1`. `pageRecords(records, query)` does both for
//   records in hand (one node, tests).

import { ProtocolError } from '../../protocols/errors.js';
import type { StoredRecord } from '../../protocols/record.js';
import type { RecordsQuery } from '../../protocols/requests.js';
import { matches } from './filter.js';

/** A record's position in the page order. */
export interface RecordKey {
  ts: number;
  shard: number;
  id: string;
}

export interface RecordsPage {
  records: StoredRecord[];
  /** Present exactly when more matching records follow this page. */
  next_cursor?: string;
}

/** Negative, zero or positive as `a` comes before, at or after `b` in the page order. */
export function compareRecordKeys(a: RecordKey, b: RecordKey): number {
  if (a.ts !== b.ts) return a.ts - b.ts;
  if (a.shard !== b.shard) return a.shard - b.shard;
  if (a.id === b.id) return 0;
  return a.id < b.id ? -1 : 1;
}

export function encodeCursor(key: RecordKey): string {
  return Buffer.from(JSON.stringify({ ts: key.ts, shard: key.shard, id: key.id }), 'utf8').toString('base64url');
}

/** The position a cursor names; E_VALIDATION (field `cursor`) for anything this module did not write. */
export function decodeCursor(cursor: string): RecordKey {
  const bad = () => new ProtocolError('E_VALIDATION', 'cursor: not a cursor from a previous page', { field: 'cursor' });
  if (!/^[A-Za-z0-9_-]{1,1024}$/.test(cursor)) throw bad();
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw bad();
  }
  if (value === null || typeof value !== 'object') throw bad();
  const { ts, shard, id } = value as Record<string, unknown>;
  if (!Number.isSafeInteger(ts) || !Number.isSafeInteger(shard) || (shard as number) < 0) throw bad();
  if (typeof id !== 'string' || id.length === 0) throw bad();
  const key: RecordKey = { ts: ts as number, shard: shard as number, id };
  // Only the exact bytes we write: no extra fields, no trailing bits, no re-ordered JSON.
  if (encodeCursor(key) !== cursor) throw bad();
  return key;
}

export interface ShardPageSelection {
  /** Offers one record (in any order); keeps it only if it may make the page. Returns whether it matched. */
  add(record: StoredRecord): boolean;
  /** The kept records in page order, at most `limit + 1`. */
  records(): StoredRecord[];
}

/**
 * A shard's part of a page, fed one record at a time (so an async scan can
 * feed it): its records that match the query's filters and come after the
 * query's cursor, in page order, at most `query.limit + 1`, in memory bounded
 * by 2 * (limit + 1) records. Throws E_VALIDATION for a bad cursor, at once.
 */
export function createShardPageSelection(query: RecordsQuery): ShardPageSelection {
  assertLimit(query.limit);
  const after = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
  const keep = query.limit + 1;
  let kept: StoredRecord[] = [];
  // Once `kept` was cut to `keep`, nothing after its last record can make the page.
  let ceiling: StoredRecord | undefined;
  return {
    add(record) {
      if (after !== undefined && compareRecordKeys(record, after) <= 0) return false;
      if (!matches(record, query)) return false;
      if (ceiling !== undefined && compareRecordKeys(record, ceiling) >= 0) return true;
      kept.push(record);
      if (kept.length >= 2 * keep) {
        kept = kept.sort(compareRecordKeys).slice(0, keep);
        ceiling = kept[keep - 1];
      }
      return true;
    },
    records() {
      return kept.sort(compareRecordKeys).slice(0, keep);
    },
  };
}

/** createShardPageSelection over records in hand, in any order. */
export function selectShardPage(records: Iterable<StoredRecord>, query: RecordsQuery): StoredRecord[] {
  const selection = createShardPageSelection(query);
  for (const record of records) selection.add(record);
  return selection.records();
}

/**
 * Merges the shards' lists (each from selectShardPage, so sorted and already
 * past the cursor) into one page of at most `limit` records.
 */
export function mergePages(lists: readonly (readonly StoredRecord[])[], limit: number): RecordsPage {
  assertLimit(limit);
  for (const list of lists) assertSorted(list);
  const heads = lists.map(() => 0);
  const merged: StoredRecord[] = [];
  while (merged.length <= limit) {
    let best = -1;
    for (let i = 0; i < lists.length; i++) {
      const candidate = lists[i]![heads[i]!];
      if (candidate === undefined) continue;
      if (best === -1 || compareRecordKeys(candidate, lists[best]![heads[best]!]!) < 0) best = i;
    }
    if (best === -1) break;
    merged.push(lists[best]![heads[best]!]!);
    heads[best] = heads[best]! + 1;
  }
  if (merged.length <= limit) return { records: merged };
  const records = merged.slice(0, limit);
  return { records, next_cursor: encodeCursor(records[limit - 1]!) };
}

/** Both halves over records in hand: the page the query asks for. */
export function pageRecords(records: Iterable<StoredRecord>, query: RecordsQuery): RecordsPage {
  return mergePages([selectShardPage(records, query)], query.limit);
}

function assertLimit(limit: number): void {
  if (!Number.isSafeInteger(limit) || limit < 1) throw new Error(`page limit must be a whole number of at least 1, got ${limit}`);
}

function assertSorted(list: readonly StoredRecord[]): void {
  for (let i = 1; i < list.length; i++) {
    if (compareRecordKeys(list[i - 1]!, list[i]!) >= 0) throw new Error(`shard page not strictly in page order at index ${i}`);
  }
}
