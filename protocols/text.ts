// The primitives of record validation that both the schema (record.ts) and
// its fast path (record-fast.ts) use: statuses, clean text, ISO timestamps.

export const RECORD_STATUSES = ['success', 'error', 'timeout', 'cancelled'] as const;

// C0 and C1 control characters, and bidirectional overrides that make text lie about its order.
const HOSTILE_CHARS = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;
const ISO_8601 = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:?\d{2})?)?$/;

/**
 * Epoch milliseconds of an ISO 8601 date or date-time, or NaN. Impossible
 * calendar days (2024-02-30) are refused, not rolled over, and a date-time
 * without an offset is UTC, whatever the server's time zone.
 */
export function parseIsoTimestamp(text: string): number {
  const match = ISO_8601.exec(text);
  if (!match) return Number.NaN;
  const [, year, month, day, hour, minute, second, , offset] = match;
  const y = Number(year);
  const m = Number(month);
  const d = Number(day);
  const probe = new Date(Date.UTC(y, m - 1, d));
  if (probe.getUTCFullYear() !== y || probe.getUTCMonth() !== m - 1 || probe.getUTCDate() !== d) return Number.NaN;
  if (hour === undefined) return probe.getTime();
  if (Number(hour) > 23 || Number(minute) > 59 || Number(second ?? 0) > 59) return Number.NaN;
  return Date.parse(offset === undefined ? `${text}Z` : text);
}

export function isCleanText(value: string): boolean {
  return value.isWellFormed() && !HOSTILE_CHARS.test(value);
}

