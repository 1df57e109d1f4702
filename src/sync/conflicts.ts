// What to do with a mirror row written outside usage-tracker (seed §3): the
// configured strategy decides between the local version and the edit, and
// the mirror then converges to the winner everywhere:
//
// - `local`  the row is overwritten with the local version;
// - `remote` the edit's fields become a new local version (a record.update,
//            so the version vector and the change feed carry it), which the
//            mirror then receives like any change;
// - `remove` the row has no local record (inserted outside, or its id or
//            user changed): it is deleted;
// - `park`   left as it is and listed in sync_conflicts for an admin.
//
// Strategies:
// - latest_wins:     the later of the edit (edited_outside_at) and the local
//                    version (updated_at) wins;
// - merge:           field by field against the last version the mirror
//                    wrote (synced_record): a field only the edit changed is
//                    taken from it; a field both changed keeps the local value;
// - manual:          everything is parked;
// - source_priority: the first of `priority` that has the record wins.
//
// Only the fields record.update may change are ever taken from an edit
// (PATCHABLE_FIELDS), and only if they pass the record validator; an edit
// that is not a valid record is parked, whatever the strategy.

import { PATCHABLE_FIELDS, type StoredRecord, type UsageRecord } from '../../protocols/record.js';

export const CONFLICT_STRATEGIES = ['latest_wins', 'merge', 'manual', 'source_priority'] as const;
export type ConflictStrategy = (typeof CONFLICT_STRATEGIES)[number];
export const SOURCES = ['local', 'mirror'] as const;
export type Source = (typeof SOURCES)[number];

type Patchable = (typeof PATCHABLE_FIELDS)[number];
export type PatchableValues = Partial<Record<Patchable, unknown>>;

/** A row found written outside usage-tracker. */
export interface OutsideEdit {
  shard: number;
  id: string;
  user_id: string;
  /** The row's patchable fields as they are now. */
  fields: PatchableValues;
  /** The patchable fields as usage-tracker last wrote them, if it ever did. */
  base: PatchableValues | undefined;
  /** When the outside write happened (epoch ms). */
  editedAt: number;
}

export type Resolution =
  | { take: 'local'; why: string }
  | { take: 'remote'; patch: Partial<UsageRecord>; why: string }
  | { take: 'remove'; why: string }
  | { take: 'park'; why: string };

/** Plain-data equality (numbers, strings, null, flat maps). */
export function sameValue(a: unknown, b: unknown): boolean {
  const normal = (value: unknown) => (value === undefined ? null : value);
  const x = normal(a);
  const y = normal(b);
  if (x === y) return true;
  if (x === null || y === null || typeof x !== 'object' || typeof y !== 'object') return false;
  const xs = Object.entries(x as Record<string, unknown>).sort(([k1], [k2]) => k1.localeCompare(k2));
  const ys = Object.entries(y as Record<string, unknown>).sort(([k1], [k2]) => k1.localeCompare(k2));
  return xs.length === ys.length && xs.every(([key, value], index) => key === ys[index]![0] && sameValue(value, ys[index]![1]));
}

/** The fields of `fields` that differ from the local record's, as a patch (null removes an optional field). */
function patchFrom(local: StoredRecord, fields: PatchableValues): Partial<UsageRecord> {
  const patch: Record<string, unknown> = {};
  for (const field of PATCHABLE_FIELDS) {
    if (!(field in fields)) continue;
    if (!sameValue(fields[field], local[field])) patch[field] = fields[field] ?? null;
  }
  return patch as Partial<UsageRecord>;
}

export function resolveConflict(strategy: ConflictStrategy, priority: readonly Source[], local: StoredRecord | undefined, edit: OutsideEdit): Resolution {
  if (strategy === 'manual') return { take: 'park', why: 'strategy manual: an admin decides' };
  if (!local) {
    if (strategy === 'source_priority' && priority[0] === 'mirror') return { take: 'park', why: 'the mirror has priority but the row has no local record to update' };
    return { take: 'remove', why: 'no local record has this id and user' };
  }
  const remotePatch = patchFrom(local, edit.fields);
  if (Object.keys(remotePatch).length === 0) return { take: 'local', why: 'the edit left every field as the local version has it' };
  switch (strategy) {
    case 'latest_wins':
      return edit.editedAt > local.updated_at
        ? { take: 'remote', patch: remotePatch, why: `the edit (${new Date(edit.editedAt).toISOString()}) is later than the local version (${new Date(local.updated_at).toISOString()})` }
        : { take: 'local', why: `the local version (${new Date(local.updated_at).toISOString()}) is later than the edit (${new Date(edit.editedAt).toISOString()})` };
    case 'source_priority':
      return priority[0] === 'mirror' ? { take: 'remote', patch: remotePatch, why: 'the mirror has priority' } : { take: 'local', why: 'local data has priority' };
    case 'merge': {
      if (!edit.base) return { take: 'park', why: 'no base version to merge against' };
      const merged: PatchableValues = {};
      const both: string[] = [];
      for (const field of PATCHABLE_FIELDS) {
        const remoteChanged = !sameValue(edit.fields[field], edit.base[field]);
        const localChanged = !sameValue(local[field], edit.base[field]);
        if (remoteChanged && localChanged && !sameValue(edit.fields[field], local[field])) both.push(field);
        merged[field] = remoteChanged && !localChanged ? edit.fields[field] : local[field];
      }
      const patch = patchFrom(local, merged);
      const note = both.length > 0 ? `; changed on both sides, local kept: ${both.join(', ')}` : '';
      return Object.keys(patch).length === 0
        ? { take: 'local', why: `every field the edit changed was changed locally too${note}` }
        : { take: 'remote', patch, why: `merged ${Object.keys(patch).join(', ')} from the edit${note}` };
    }
    default:
      return { take: 'park', why: `unknown strategy ${String(strategy)}` };
  }
}
