// The binary form of a stored record inside a WAL frame (docs/durability.md,
// "WAL entry, binary form"). It replaces a msgpack map because the WAL is
// written once per record on the ingest path and read whole at every
// restart: a fixed field order with a presence mask needs no key strings,
// encodes into one reused buffer and decodes without a generic map reader.
//
//   entry   = tag | op u8 (1 = put) | seq f64 | mask u32 | fields of the tag's layout, in order, present ones only
//   tag     = 0x02: LAYOUT_2 (written now); 0x01: LAYOUT_1 (read: the first 20 fields, before `updated_at` and `vv`)
//
// The record's own `seq` is the entry's seq: it is not written again, and
// decoding sets it (so records logged before they carried `seq` get it too).
//   string  = byte length u16 | UTF-8 bytes
//   number  = f64
//   msgpack = byte length u32 | msgpack (metadata; `extra`: fields not in FIELDS, as one map)
//
// All integers little-endian. A field whose value does not have its kind
// (say a future field, or null) travels in `extra`, so the codec never
// loses a field. Decoding checks every length against the frame and throws
// on anything malformed; the WAL reader turns that into "corrupt".

import { Packr } from 'msgpackr';
import type { StoredRecord } from '../../protocols/record.js';

/** The tag written; every tag of LAYOUTS is read. */
export const BINARY_ENTRY_TAG = 0x02;
const OP_PUT = 1;

/** s: string, n: number, m: msgpack, v: version vector (small map of string to number). */
type Kind = 's' | 'n' | 'm' | 'v';
type Layout = readonly (readonly [name: string, kind: Kind])[];
const LAYOUT_1: Layout = [
  ['id', 's'],
  ['ts', 'n'],
  ['user_id', 's'],
  ['provider', 's'],
  ['model', 's'],
  ['input_tokens', 'n'],
  ['output_tokens', 'n'],
  ['cached_tokens', 'n'],
  ['cost_usd', 'n'],
  ['latency_ms', 'n'],
  ['status', 's'],
  ['error_code', 's'],
  ['session_id', 's'],
  ['campaign_id', 's'],
  ['operation', 's'],
  ['metadata', 'm'],
  ['version', 'n'],
  ['shard', 'n'],
  ['ingested_at', 'n'],
  ['cost_source', 's'],
];
const LAYOUT_2: Layout = [...LAYOUT_1, ['updated_at', 'n'], ['vv', 'v']];
/** Most entries of a version vector written as such (more travel in `extra`). */
const VECTOR_ENTRIES_MAX = 255;
const LAYOUTS = new Map<number, Layout>([
  [0x01, LAYOUT_1],
  [0x02, LAYOUT_2],
]);
const FIELDS = LAYOUT_2;
const EXTRA_BIT = 1 << FIELDS.length;

/** Whether a WAL payload's first byte is the tag of a binary entry (a msgpack map starts with 0x8X). */
export function isBinaryEntryTag(byte: number | undefined): boolean {
  return byte !== undefined && LAYOUTS.has(byte);
}
/** Fields not written as such: `seq` is the entry's. */
const KNOWN = new Set([...FIELDS.map(([name]) => name), 'seq']);
const STRING_BYTES_MAX = 0xffff;

const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

let scratch = Buffer.allocUnsafe(64 * 1024);

function ensure(offset: number, more: number): void {
  if (offset + more <= scratch.length) return;
  const grown = Buffer.allocUnsafe(Math.max(scratch.length * 2, offset + more));
  scratch.copy(grown, 0, 0, offset);
  scratch = grown;
}

function hasKind(value: unknown, kind: Kind): boolean {
  if (kind === 's') return typeof value === 'string';
  if (kind === 'n') return typeof value === 'number';
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  if (kind === 'm') return true;
  const entries = Object.values(value);
  return entries.length <= VECTOR_ENTRIES_MAX && entries.every((count) => typeof count === 'number');
}

function writeString(offset: number, value: string, name: string): number {
  ensure(offset, 2 + value.length * 3);
  const start = offset + 2;
  const count = value.length;
  // Most strings are short ASCII: copied in a loop, they skip a native call each.
  let at = 0;
  if (count <= 64) {
    for (; at < count; at++) {
      const code = value.charCodeAt(at);
      if (code >= 0x80) break;
      scratch[start + at] = code;
    }
  }
  const length = at === count ? count : scratch.write(value, start, 'utf8');
  if (length > STRING_BYTES_MAX) throw new RangeError(`WAL entry: field ${name} is ${length} bytes, more than ${STRING_BYTES_MAX}`);
  scratch.writeUInt16LE(length, offset);
  return offset + 2 + length;
}

/** A version vector: entry count u8, then per entry its node id (string) and count (f64). */
function writeVector(offset: number, vector: Record<string, number>, name: string): number {
  const entries = Object.entries(vector);
  ensure(offset, 1);
  scratch[offset] = entries.length;
  let at = offset + 1;
  for (const [node, count] of entries) {
    at = writeString(at, node, name);
    ensure(at, 8);
    scratch.writeDoubleLE(count, at);
    at += 8;
  }
  return at;
}

function writePacked(offset: number, value: unknown): number {
  const bytes = packr.pack(value);
  ensure(offset, 4 + bytes.length);
  scratch.writeUInt32LE(bytes.length, offset);
  scratch.set(bytes, offset + 4);
  return offset + 4 + bytes.length;
}

/**
 * Writes the entry at `start` of a shared scratch buffer and returns the
 * buffer with the end offset; the caller copies the bytes out before the
 * next call.
 */
export function encodeEntryInto(start: number, seq: number, record: StoredRecord): { buffer: Buffer; end: number } {
  const source = record as unknown as Record<string, unknown>;
  ensure(start, 14);
  scratch[start] = BINARY_ENTRY_TAG;
  scratch[start + 1] = OP_PUT;
  scratch.writeDoubleLE(seq, start + 2);
  const maskAt = start + 10;
  let offset = start + 14;
  let mask = 0;
  let extra: Record<string, unknown> | undefined;
  for (let index = 0; index < FIELDS.length; index++) {
    const [name, kind] = FIELDS[index]!;
    const value = source[name];
    if (value === undefined) continue;
    if (!hasKind(value, kind)) {
      (extra ??= {})[name] = value;
      continue;
    }
    mask |= 1 << index;
    if (kind === 'n') {
      ensure(offset, 8);
      scratch.writeDoubleLE(value as number, offset);
      offset += 8;
    } else if (kind === 's') {
      offset = writeString(offset, value as string, name);
    } else if (kind === 'v') {
      offset = writeVector(offset, value as Record<string, number>, name);
    } else {
      offset = writePacked(offset, value);
    }
  }
  for (const name in source) {
    if (!KNOWN.has(name) && source[name] !== undefined) (extra ??= {})[name] = source[name];
  }
  if (source.seq !== undefined && source.seq !== seq) (extra ??= {}).seq = source.seq;
  if (extra) {
    mask |= EXTRA_BIT;
    offset = writePacked(offset, extra);
  }
  scratch.writeUInt32LE(mask, maskAt);
  return { buffer: scratch, end: offset };
}

/** Short ASCII strings are built from this reused array of char codes, without a native call. */
const UNITS_MAX = 48;
const unitsOfLength: number[][] = Array.from({ length: UNITS_MAX + 1 }, (_, length) => new Array<number>(length).fill(0));
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Reads one entry from `bytes[offset, end)`; `view` covers the same memory as `bytes`. */
class Reader {
  constructor(
    readonly bytes: Uint8Array,
    readonly view: DataView,
    public offset: number,
    readonly end: number,
  ) {}

  take(count: number): number {
    const at = this.offset;
    if (at + count > this.end) throw new RangeError(`entry ends ${at + count - this.end} bytes early`);
    this.offset = at + count;
    return at;
  }

  number(): number {
    return this.view.getFloat64(this.take(8), true);
  }

  string(): string {
    const length = this.view.getUint16(this.take(2), true);
    const at = this.take(length);
    if (length <= UNITS_MAX) {
      const bytes = this.bytes;
      const units = unitsOfLength[length]!;
      let i = 0;
      for (; i < length; i++) {
        const byte = bytes[at + i]!;
        if (byte >= 0x80) break;
        units[i] = byte;
      }
      if (i === length) return String.fromCharCode.apply(null, units);
    }
    return utf8.decode(this.bytes.subarray(at, at + length));
  }

  vector(): Record<string, number> {
    const count = this.bytes[this.take(1)]!;
    const vector: Record<string, number> = {};
    for (let i = 0; i < count; i++) {
      const node = this.string();
      vector[node] = this.number();
    }
    return vector;
  }

  packed(): unknown {
    const length = this.view.getUint32(this.take(4), true);
    const at = this.take(length);
    return packr.unpack(this.bytes.subarray(at, at + length));
  }
}

/**
 * Fills the server fields a record stored by an earlier build lacks: `seq`
 * (the WAL entry's, or a sealed file's highest), `updated_at` (its
 * `ingested_at`) and `vv` (an empty vector). Every reader of stored records
 * calls it, so the rest of the code can rely on them.
 */
export function withStandIns(record: Partial<StoredRecord>, seq: number): StoredRecord {
  record.seq ??= seq;
  record.updated_at ??= record.ingested_at!;
  record.vv ??= {};
  return record as StoredRecord;
}

/**
 * Decodes the binary entry in `bytes[start, end)` (`view` over the same
 * memory, so a whole segment is read without a view per entry); throws on
 * anything malformed.
 */
export function decodeEntry(bytes: Uint8Array, start = 0, end = bytes.length, view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)): { seq: number; op: 'put'; record: StoredRecord } {
  const reader = new Reader(bytes, view, start, end);
  const header = reader.take(14);
  const layout = LAYOUTS.get(bytes[header]!);
  if (!layout) throw new RangeError(`not a binary entry (tag ${bytes[header]})`);
  const extraBit = 1 << layout.length;
  if (bytes[header + 1] !== OP_PUT) throw new RangeError(`unknown operation ${bytes[header + 1]}`);
  const seq = view.getFloat64(header + 2, true);
  const mask = view.getUint32(header + 10, true);
  if (mask >>> (layout.length + 1) !== 0) throw new RangeError(`unknown field bits in mask ${mask}`);
  const record: Record<string, unknown> = {};
  for (let index = 0; index < layout.length; index++) {
    if (((mask >>> index) & 1) === 0) continue;
    const [name, kind] = layout[index]!;
    if (kind === 'n') record[name] = reader.number();
    else if (kind === 's') record[name] = reader.string();
    else if (kind === 'v') record[name] = reader.vector();
    else record[name] = reader.packed();
  }
  if ((mask & extraBit) !== 0) {
    const extra = reader.packed();
    if (extra === null || typeof extra !== 'object' || Array.isArray(extra)) throw new RangeError('extra fields are not a map');
    for (const [name, value] of Object.entries(extra)) if (!KNOWN.has(name) || !(name in record)) record[name] = value;
  }
  withStandIns(record as Partial<StoredRecord>, seq);
  if (reader.offset !== end) throw new RangeError(`${end - reader.offset} bytes after the entry`);
  if (!Number.isSafeInteger(seq) || seq < 1) throw new RangeError(`bad sequence ${seq}`);
  return { seq, op: 'put', record: record as unknown as StoredRecord };
}
