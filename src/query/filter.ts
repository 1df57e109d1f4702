// The record filter of `usage.v1.query.records` and `usage.v1.query.aggregate`.
// Owns one promise: a record matches when every filter that is present holds.
// Text filters are exact (the request schema has already lower-cased
// `provider`, as the record validator did when the record was stored). The
// time range is half-open on `ts`: `from` is inclusive, `to` is exclusive, so
// `[from, to)`; consecutive ranges (a day, then the next) never count a record
// twice. An absent bound is open. Pure: no clock, no I/O.

import type { StoredRecord } from '../../protocols/record.js';
import type { QueryFilters } from '../../protocols/requests.js';

/** True when `record` satisfies every filter present in `filters` (`ts` in `[from, to)`). */
export function matches(record: StoredRecord, filters: QueryFilters): boolean {
  if (filters.user_id !== undefined && record.user_id !== filters.user_id) return false;
  if (filters.provider !== undefined && record.provider !== filters.provider) return false;
  if (filters.model !== undefined && record.model !== filters.model) return false;
  if (filters.status !== undefined && record.status !== filters.status) return false;
  if (filters.from !== undefined && record.ts < filters.from) return false;
  if (filters.to !== undefined && record.ts >= filters.to) return false;
  return true;
}
