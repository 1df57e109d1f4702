// The state of one shard, owned by exactly one PartitionActor: the unsealed
// records in memory (the memtable) backed by the WAL, the sealed partition
// files listed in the manifest, and the indices over both (id to location
// and version; user to files). Writes are applied in memory and appended to
// the WAL; the caller acknowledges them only when `durable` resolves.
// Reads see only durable data. See docs/durability.md.

import { basename, join } from 'node:path';
import { LRUCache } from 'lru-cache';
import { ProtocolError, type ErrorBody } from '../../protocols/errors.js';
import type { StoredRecord, UsageRecord } from '../../protocols/record.js';
import type { QueryFilters } from '../../protocols/requests.js';
import type { Logger } from '../log.js';
import type { FileSystem } from '../ports/fs.js';
import { matches } from '../query/filter.js';
import { readManifest, writeManifest, type ShardManifest } from './manifest.js';
import { dayFileNumber, encodePartition, partitionName, readPartition, writePartition, type PartitionEntry } from './partition-file.js';
import { ColumnIndex, type RowView } from './columns.js';
import { IdIndex } from './id-index.js';
import { recoverShard } from './recover.js';
import type { RollupRow } from '../retention/rollup.js';
import { encodeFrames, segmentFirstSeq, segmentName, WalWriter, type WalEntry } from './wal.js';

export interface ShardOptions {
  dir: string;
  shard: number;
  /** This node's id: the key of its counter in each record's version vector. */
  nodeId: string;
  /** Epoch milliseconds, for `updated_at` of updates. */
  now: () => number;
  fs: FileSystem;
  fsync: boolean;
  log: Logger;
  /** Seal when this many records are unsealed. */
  memtableRecordsMax: number;
  /** Bound of the decoded-partition cache, in bytes (estimated). */
  cacheBytesMax: number;
  /**
   * Keep WAL segments a seal retires in `wal-pending/` until the archiver
   * has copied them (`walArchived`), instead of deleting them at once.
   */
  walArchive?: boolean;
}

/** A place in a shard's WAL: a segment and a byte offset in it (always a frame boundary). */
export interface WalPosition {
  segment: string;
  offset: number;
}

/** Bytes of one WAL segment from `start`. */
export interface WalBytes {
  name: string;
  start: number;
  data: Uint8Array;
}

/** Bytes [start, end) of a file (end: its size). */
async function readRange(fs: FileSystem, path: string, start: number, end: number | undefined): Promise<Uint8Array> {
  const handle = await fs.open(path, 'read');
  try {
    const size = end ?? (await handle.size());
    const data = new Uint8Array(Math.max(0, size - start));
    for (let done = 0; done < data.byteLength; ) {
      const read = await handle.read(data.subarray(done), start + done);
      if (read <= 0) throw new Error(`${path}: ended at byte ${start + done}, expected ${size}`);
      done += read;
    }
    return data;
  } finally {
    await handle.close();
  }
}

export type NewRecord = Omit<StoredRecord, 'version' | 'shard' | 'seq' | 'vv' | 'updated_at'>;
/**
 * What became of one new record: stored, or already stored for the same
 * user (`duplicate`), or refused because its id is stored here for another
 * user (`rejected`, E_CONFLICT on `id`): dedup is by id within the shard, the
 * record's key is (user_id, id), so one id for two users who share a shard
 * would otherwise be answered `duplicate` and silently not stored.
 */
export type WriteResult =
  | { status: 'stored'; version: number }
  | { status: 'duplicate'; version: number }
  | { status: 'rejected'; error: ErrorBody };
export type Health = { state: 'serving' } | { state: 'corrupt'; reason: string };

/**
 * Where the current version of a record is, packed in one number: its
 * version and its row in the column index (row 0: the memtable).
 */
const ROWS = 2 ** 32;
export const VERSION_MAX = 2 ** 20;
export const pack = (version: number, row: number) => version * ROWS + row;
const versionOf = (location: number) => Math.floor(location / ROWS);
const rowOf = (location: number) => location % ROWS;

/** The refusal of a record whose id this shard holds for another user (who is not named). */
function idTaken(id: string): ErrorBody {
  return new ProtocolError('E_CONFLICT', `id ${JSON.stringify(id)} is already stored for another user, so this record was not stored; ids must be unique across users`, {
    field: 'id',
  }).toBody();
}

export const dayOf = (ts: number) => new Date(ts).toISOString().slice(0, 10);

/** Most records in one sealed file. */
export const SEALED_FILE_RECORDS_MAX = 20_000;

/** An unsealed record and the WAL sequence of its newest version; updated in place. */
export interface MemSlot {
  record: StoredRecord;
  seq: number;
}

export class ShardStore {
  /** The unsealed records by id. */
  readonly memtable = new Map<string, MemSlot>();
  /** The same slots by user, so a user's query does not scan every unsealed record. */
  private readonly memByUser = new Map<string, MemSlot[]>();
  /**
   * The memtable's writes in seq order, for the change feed: the seq of each
   * write and its slot. An entry whose slot has moved on to a later seq is stale.
   */
  private memLogSeq: number[] = [];
  private memLogSlot: MemSlot[] = [];
  readonly index = new IdIndex();
  readonly columns: ColumnIndex;
  /** First column row of each sealed file, in manifest order. */
  private readonly fileRows: number[] = [];
  manifest: ShardManifest;
  nextSeq: number;
  health: Health;
  private writer: WalWriter | undefined;
  private readonly cache: LRUCache<string, Map<string, StoredRecord>>;
  /** Retention's rollup rows by rollup file name (manifest `rollups`), loaded at open. */
  rollups = new Map<string, RollupRow[]>();

  private constructor(
    readonly options: ShardOptions,
    manifest: ShardManifest,
  ) {
    this.manifest = manifest;
    this.nextSeq = manifest.sealed_seq + 1;
    this.health = { state: 'serving' };
    this.columns = new ColumnIndex(options.shard);
    this.cache = new LRUCache({ maxSize: options.cacheBytesMax, sizeCalculation: (value) => Math.max(1, value.size * 600) });
  }

  get walDir(): string {
    return join(this.options.dir, 'wal');
  }

  get partitionDir(): string {
    return join(this.options.dir, 'partitions');
  }

  /** Retired WAL segments not yet archived (only with `walArchive`). */
  get walPendingDir(): string {
    return join(this.options.dir, 'wal-pending');
  }

  get durableSeq(): number {
    return this.writer?.durableSeq ?? this.nextSeq - 1;
  }

  /** Opens a shard directory, recovering from sealed files plus the WAL tail. Never throws for damage: health says. */
  static async open(options: ShardOptions): Promise<ShardStore> {
    const { fs, dir } = options;
    await fs.mkdir(join(dir, 'wal'));
    await fs.mkdir(join(dir, 'partitions'));
    await fs.syncDir(dir);
    await fs.syncDir(join(dir, '..'));
    let read;
    try {
      read = await readManifest(fs, dir, options.shard);
    } catch (error) {
      const store = new ShardStore(options, { format_version: 0, shard: options.shard, sealed_seq: 0, files: [] });
      store.health = { state: 'corrupt', reason: (error as Error).message };
      options.log.error({ shard: options.shard, reason: store.health.reason }, 'shard refuses to serve: its manifest is damaged; restore it from a backup');
      return store;
    }
    const store = new ShardStore(options, read.manifest);
    let found = read.found;
    if (!found && (await fs.readdir(store.partitionDir)).every((name) => name.startsWith('.'))) {
      // A new shard writes its (empty) manifest before it can ever seal, so that later a
      // missing manifest beside sealed files always means a lost one, never a first seal cut short.
      await writeManifest(fs, dir, read.manifest);
      found = true;
    }
    const recovered = await recoverShard(store, found);
    if (recovered.corrupt) {
      store.health = { state: 'corrupt', reason: recovered.corrupt };
      options.log.error({ shard: options.shard, reason: recovered.corrupt }, 'shard refuses to serve: corruption found; restore it from a backup');
      return store;
    }
    store.writer = await WalWriter.open(fs, join(store.walDir, recovered.segment ?? segmentName(store.nextSeq)), options.fsync, store.nextSeq - 1);
    if (recovered.segment === undefined) {
      // A failed directory sync fails the open; the segment just opened is not left to the garbage collector.
      await fs.syncDir(store.walDir).catch(async (error: unknown) => {
        await store.close();
        throw error;
      });
    }
    options.log.info({ shard: options.shard, files: store.manifest.files.length, unsealed: store.memtable.size, torn_bytes: recovered.tornBytes }, 'shard open');
    return store;
  }

  private requireServing(): WalWriter {
    if (this.writer?.failure) throw this.writer.failure;
    if (this.health.state !== 'serving' || !this.writer) {
      const reason = this.health.state === 'corrupt' ? this.health.reason : 'not open';
      throw new ProtocolError('E_UNAVAILABLE', `shard ${this.options.shard} refuses to serve: ${reason}`);
    }
    return this.writer;
  }

  /** Applies new records in memory and to the WAL. Acknowledge only when `durable` resolves. */
  write(records: readonly NewRecord[]): { results: WriteResult[]; durable: Promise<void> } {
    const writer = this.requireServing();
    const entries: WalEntry[] = [];
    const results: WriteResult[] = [];
    let waitSeq = 0;
    for (const record of records) {
      const location = this.index.get(record.id);
      if (location !== undefined && this.ownerOf(record.id, location) !== record.user_id) {
        results.push({ status: 'rejected', error: idTaken(record.id) });
        continue;
      }
      if (location !== undefined) {
        results.push({ status: 'duplicate', version: versionOf(location) });
        if (rowOf(location) === 0) waitSeq = Math.max(waitSeq, this.memtable.get(record.id)?.seq ?? 0);
        continue;
      }
      const seq = this.nextSeq++;
      // The record is the ingest path's own object: completed in place, not copied.
      const stored = record as StoredRecord;
      stored.version = 1;
      stored.shard = this.options.shard;
      stored.seq = seq;
      stored.updated_at = stored.ingested_at;
      stored.vv = { [this.options.nodeId]: 1 };
      entries.push({ seq, op: 'put', record: stored });
      this.putMem(stored, seq);
      results.push({ status: 'stored', version: 1 });
      waitSeq = seq;
    }
    const durable = entries.length > 0 ? writer.append([encodeFrames(entries)], this.nextSeq - 1) : writer.whenDurable(waitSeq);
    return { results, durable };
  }

  /** The user_id of the record the index holds under `id`, without reading a file. */
  private ownerOf(id: string, location: number): string | undefined {
    const row = rowOf(location);
    return row === 0 ? this.memtable.get(id)?.record.user_id : this.columns.userOf(row);
  }

  /** The newest version goes to the memtable; a sealed older copy stops counting. */
  putMem(record: StoredRecord, seq: number): void {
    const previous = this.index.get(record.id);
    this.index.set(record.id, pack(record.version, 0));
    if (previous !== undefined && rowOf(previous) !== 0) this.columns.kill(rowOf(previous));
    const slot = previous !== undefined && rowOf(previous) === 0 ? this.memtable.get(record.id) : undefined;
    if (slot) {
      slot.record = record;
      slot.seq = seq;
      this.memLogSeq.push(seq);
      this.memLogSlot.push(slot);
      return;
    }
    const fresh: MemSlot = { record, seq };
    this.memLogSeq.push(seq);
    this.memLogSlot.push(fresh);
    this.memtable.set(record.id, fresh);
    const slots = this.memByUser.get(record.user_id);
    if (slots) slots.push(fresh);
    else this.memByUser.set(record.user_id, [fresh]);
  }

  /** The memtable's slots that may match: one user's, or all. */
  private memCandidates(filters: QueryFilters): Iterable<MemSlot> {
    if (filters.user_id === undefined) return this.memtable.values();
    return this.memByUser.get(filters.user_id) ?? [];
  }

  /** The current version of a record, if durable and owned by `userId`. */
  async get(id: string, userId: string): Promise<StoredRecord | undefined> {
    const writer = this.requireServing();
    const location = this.index.get(id);
    if (location === undefined) return undefined;
    let record: StoredRecord | undefined;
    if (rowOf(location) === 0) {
      await writer.whenDurable(this.memtable.get(id)?.seq ?? 0);
      record = this.memtable.get(id)?.record;
    } else {
      record = (await this.loadFile(this.fileOfRow(rowOf(location)))).get(id);
    }
    return record && record.user_id === userId && record.version === versionOf(location) ? record : undefined;
  }

  /**
   * Optimistic update: applies `patch` if the current version is `expectedVersion`.
   * Runs inside the actor, one message at a time, so exactly one update wins per version.
   */
  async update(id: string, userId: string, expectedVersion: number, patch: Partial<UsageRecord>): Promise<{ record: StoredRecord; durable: Promise<void> }> {
    const current = await this.get(id, userId);
    if (!current) throw new ProtocolError('E_NOT_FOUND', `no record ${id} for user ${userId}`);
    // Re-read after the await: another update may have landed meanwhile.
    const currentVersion = versionOf(this.index.get(id) ?? 0);
    if (currentVersion !== expectedVersion) {
      throw new ProtocolError('E_CONFLICT', `record ${id} is at version ${currentVersion}, not ${expectedVersion}`, {
        details: { current_version: currentVersion },
      });
    }
    const writer = this.requireServing();
    if (current.version + 1 >= VERSION_MAX) throw new ProtocolError('E_CONFLICT', `record ${id} has reached the most versions a record may have (${VERSION_MAX})`);
    const seq = this.nextSeq++;
    const vv = { ...(current.vv ?? {}) };
    vv[this.options.nodeId] = (vv[this.options.nodeId] ?? 0) + 1;
    const next = { ...current, ...patch, version: current.version + 1, seq, updated_at: this.options.now(), vv } as StoredRecord;
    if (patch.cost_usd !== undefined) next.cost_source = 'client';
    const durable = writer.append([encodeFrames([{ seq, op: 'put', record: next }])], seq);
    this.putMem(next, seq);
    return { record: next, durable };
  }

  /** Every current, durable record matching the filters, in no particular order. */
  async *scan(filters: QueryFilters): AsyncGenerator<StoredRecord> {
    this.requireServing();
    const durable = this.durableSeq;
    for (const slot of this.memCandidates(filters)) {
      if (slot.seq <= durable && matches(slot.record, filters)) yield slot.record;
    }
    for (const fileIndex of this.candidateFiles(filters)) {
      const first = this.fileRows[fileIndex]!;
      const end = this.fileRows[fileIndex + 1] ?? this.columns.rows;
      for (const record of (await this.loadFile(fileIndex)).values()) {
        const location = this.index.get(record.id);
        if (location === undefined || versionOf(location) !== record.version) continue;
        const row = rowOf(location);
        if (row < first || row >= end) continue;
        if (matches(record, filters)) yield record;
      }
    }
  }

  /**
   * Feeds every current, durable record matching the filters to `add`:
   * the memtable's records, then the sealed rows of the column index (as a
   * reused view: `add` must not keep it). No partition file is read.
   */
  aggregate(filters: QueryFilters, add: (record: StoredRecord) => void): void {
    this.requireServing();
    const durable = this.durableSeq;
    for (const slot of this.memCandidates(filters)) {
      if (slot.seq <= durable && matches(slot.record, filters)) add(slot.record);
    }
    this.columns.scan(filters, add as (row: RowView) => void);
  }

  /**
   * Feeds retention's rollup rows that may match the filters to `add`
   * (which filters them row by row): rollup files of UTC days outside
   * [from, to) are skipped whole.
   */
  aggregateRollups(filters: QueryFilters, add: (row: RollupRow) => void): void {
    for (const entry of this.manifest.rollups ?? []) {
      const dayStart = Date.parse(`${entry.day}T00:00:00.000Z`);
      if (filters.to !== undefined && filters.to <= dayStart) continue;
      if (filters.from !== undefined && filters.from >= dayStart + 86_400_000) continue;
      for (const row of this.rollups.get(entry.name) ?? []) add(row);
    }
  }

  /**
   * The change feed: the current version of every record changed after
   * `fromSeq`, in seq order, durable ones only, at most `limit`. A record
   * changed several times appears once, at its newest seq. `nextSeq` is how
   * far the answer covers (the next call starts there), `headSeq` the
   * newest durable seq; a caller is caught up when they are equal.
   */
  async changes(fromSeq: number, limit: number): Promise<{ records: StoredRecord[]; nextSeq: number; headSeq: number }> {
    this.requireServing();
    const headSeq = this.durableSeq;
    const sealedSeq = this.manifest.sealed_seq;
    if (fromSeq < sealedSeq) {
      const sealed = await this.sealedChanges(fromSeq, limit);
      if (sealed) return { ...sealed, headSeq };
    }
    const records: StoredRecord[] = [];
    const from = Math.max(fromSeq, sealedSeq);
    let next = from;
    // The first logged write after `from`: the log is in seq order.
    let low = 0;
    let high = this.memLogSeq.length;
    while (low < high) {
      const mid = (low + high) >> 1;
      if (this.memLogSeq[mid]! <= from) low = mid + 1;
      else high = mid;
    }
    for (let at = low; at < this.memLogSeq.length && records.length < limit; at++) {
      const seq = this.memLogSeq[at]!;
      if (seq > headSeq) break;
      next = seq;
      const slot = this.memLogSlot[at]!;
      if (slot.seq === seq) records.push(slot.record);
    }
    if (records.length < limit) next = Math.max(next, headSeq);
    return { records, nextSeq: next, headSeq };
  }

  /**
   * Changes after `fromSeq` from sealed files, up to the lowest `max_seq`
   * above `fromSeq` (every record between lies in a file whose seq range
   * overlaps), or undefined when no sealed file reaches past `fromSeq`.
   */
  private async sealedChanges(fromSeq: number, limit: number): Promise<{ records: StoredRecord[]; nextSeq: number } | undefined> {
    const files = this.manifest.files;
    let bound = Infinity;
    for (const file of files) if (file.max_seq > fromSeq) bound = Math.min(bound, file.max_seq);
    if (bound === Infinity) return undefined;
    const found: StoredRecord[] = [];
    for (let fileIndex = 0; fileIndex < files.length; fileIndex++) {
      const file = files[fileIndex]!;
      if (file.max_seq <= fromSeq || file.min_seq > bound) continue;
      const first = this.fileRows[fileIndex]!;
      const end = this.fileRows[fileIndex + 1] ?? this.columns.rows;
      for (const record of (await this.loadFile(fileIndex)).values()) {
        if (record.seq <= fromSeq || record.seq > bound) continue;
        const location = this.index.get(record.id);
        if (location === undefined || versionOf(location) !== record.version) continue;
        const row = rowOf(location);
        if (row >= first && row < end) found.push(record);
      }
    }
    found.sort((a, b) => a.seq - b.seq);
    if (found.length <= limit) return { records: found, nextSeq: bound };
    // Records of files sealed before they carried `seq` share their file's: never cut between them.
    let cut = limit;
    while (cut < found.length && found[cut]!.seq === found[cut - 1]!.seq) cut++;
    const records = found.slice(0, cut);
    return { records, nextSeq: records.at(-1)!.seq };
  }

  private fileOfRow(row: number): number {
    let low = 0;
    let high = this.fileRows.length - 1;
    while (low < high) {
      const mid = (low + high + 1) >> 1;
      if (this.fileRows[mid]! <= row) low = mid;
      else high = mid - 1;
    }
    return low;
  }

  private candidateFiles(filters: QueryFilters): number[] {
    const files = this.manifest.files;
    const pool =
      filters.user_id !== undefined
        ? [...new Set(this.columns.rowsOf(filters.user_id).map((row) => this.fileOfRow(row)))]
        : files.map((_, index) => index);
    return pool.filter((index) => {
      const file = files[index]!;
      return (filters.from === undefined || file.max_ts >= filters.from) && (filters.to === undefined || file.min_ts < filters.to);
    });
  }

  private async loadFile(fileIndex: number): Promise<Map<string, StoredRecord>> {
    const entry = this.manifest.files[fileIndex];
    if (!entry) throw new Error(`shard ${this.options.shard}: no sealed file ${fileIndex}`);
    const cached = this.cache.get(entry.name);
    if (cached) return cached;
    let records: StoredRecord[];
    try {
      records = await readPartition(this.options.fs, this.partitionDir, entry);
    } catch (error) {
      this.health = { state: 'corrupt', reason: (error as Error).message };
      this.options.log.error({ err: error, shard: this.options.shard }, 'sealed file failed verification; the shard refuses to serve');
      throw new ProtocolError('E_UNAVAILABLE', `shard ${this.options.shard} refuses to serve: ${(error as Error).message}`);
    }
    const byId = new Map(records.map((record) => [record.id, record]));
    this.cache.set(entry.name, byId);
    return byId;
  }

  /** Indexes a sealed file's records (at open, and after sealing), in manifest order. */
  indexFile(fileIndex: number, records: Iterable<StoredRecord>): void {
    if (fileIndex !== this.fileRows.length) throw new Error(`shard ${this.options.shard}: file ${fileIndex} indexed out of order`);
    this.fileRows.push(this.columns.rows);
    for (const record of records) {
      const row = this.columns.append(record);
      const location = this.index.get(record.id);
      if (location !== undefined && versionOf(location) > record.version) {
        this.columns.kill(row);
        continue;
      }
      if (location !== undefined && rowOf(location) !== 0) this.columns.kill(rowOf(location));
      if (location === undefined || rowOf(location) !== 0 || versionOf(location) <= record.version) this.index.set(record.id, pack(record.version, row));
    }
  }

  /**
   * The files the next seal writes: the memtable by UTC day, at most
   * SEALED_FILE_RECORDS_MAX records a file, each named one past the
   * highest number of its day (retention may have dropped or renumbered
   * some, so a count could reuse a listed name).
   */
  sealLayout(): { name: string; day: string; slots: MemSlot[] }[] {
    const byDay = new Map<string, MemSlot[]>();
    for (const slot of this.memtable.values()) {
      const day = dayOf(slot.record.ts);
      const list = byDay.get(day);
      if (list) list.push(slot);
      else byDay.set(day, [slot]);
    }
    const layout: { name: string; day: string; slots: MemSlot[] }[] = [];
    for (const [day, slots] of [...byDay].sort(([a], [b]) => a.localeCompare(b))) {
      let n = Math.max(0, ...this.manifest.files.filter((file) => file.day === day).map((file) => dayFileNumber(file.name)?.n ?? 0));
      // Files stay small enough to be cached whole and read quickly by record.get.
      for (let start = 0; start < slots.length; start += SEALED_FILE_RECORDS_MAX) layout.push({ name: partitionName(day, ++n), day, slots: slots.slice(start, start + SEALED_FILE_RECORDS_MAX) });
    }
    return layout;
  }

  /**
   * What the next seal would write, encoded in memory and written nowhere:
   * retention plans unsealed records as the sealed files they become, so a
   * dry run names the same files and bytes as the real run, which seals first.
   */
  async unsealedFiles(): Promise<{ entry: PartitionEntry; records: StoredRecord[] }[]> {
    await this.settle();
    const out: { entry: PartitionEntry; records: StoredRecord[] }[] = [];
    for (const { name, day, slots } of this.sealLayout()) {
      const { entry } = await encodePartition(name, day, slots, this.manifest.format_version);
      out.push({ entry, records: slots.map((slot) => slot.record) });
    }
    return out;
  }

  /**
   * Seals every unsealed record into partition files (one per UTC day), then
   * records them and the new sealed_seq in the manifest, then starts a new
   * WAL segment and deletes the old ones. A crash at any point leaves either
   * the old manifest (the WAL still holds everything) or the new one.
   */
  async seal(): Promise<{ files: number; records: number }> {
    const writer = this.requireServing();
    if (this.memtable.size === 0) return { files: 0, records: 0 };
    const sealedSeq = this.nextSeq - 1;
    await writer.whenDurable(sealedSeq);
    const entries: PartitionEntry[] = [];
    const parts: StoredRecord[][] = [];
    for (const { name, day, slots } of this.sealLayout()) {
      // A shard still at format 1 (not migrated yet) keeps writing format-1 entries; see src/migration/.
      entries.push(await writePartition(this.options.fs, this.partitionDir, name, day, slots, this.manifest.format_version));
      parts.push(slots.map((slot) => slot.record));
    }
    const manifest: ShardManifest = { ...this.manifest, sealed_seq: sealedSeq, files: [...this.manifest.files, ...entries] };
    await writeManifest(this.options.fs, this.options.dir, manifest);
    const firstNew = this.manifest.files.length;
    this.manifest = manifest;
    entries.forEach((_entry, offset) => this.indexFile(firstNew + offset, parts[offset]!));
    const sealedRecords = this.memtable.size;
    this.memtable.clear();
    this.memByUser.clear();
    this.memLogSeq = [];
    this.memLogSlot = [];
    await this.rollWal();
    return { files: entries.length, records: sealedRecords };
  }

  private async rollWal(): Promise<void> {
    const { fs } = this.options;
    const old = this.writer;
    const name = segmentName(this.nextSeq);
    this.writer = await WalWriter.open(fs, join(this.walDir, name), this.options.fsync, this.nextSeq - 1);
    await old?.close();
    const archive = this.options.walArchive === true;
    if (archive) await fs.mkdir(this.walPendingDir);
    for (const segment of await fs.readdir(this.walDir)) {
      if (segment === name || !segment.endsWith('.log')) continue;
      // Kept for the archiver: a segment holds the only copy of some versions between two backups.
      if (archive) await fs.rename(join(this.walDir, segment), join(this.walPendingDir, segment));
      else await fs.unlink(join(this.walDir, segment));
    }
    if (archive) await fs.syncDir(this.walPendingDir);
    await fs.syncDir(this.walDir);
  }

  /**
   * The durable WAL bytes the archiver has not confirmed yet: every retired
   * segment in `wal-pending/`, then every live one (the open one cut at its
   * durable length), oldest first; with `from`, only what lies after that
   * position (the archiver's, from its previous round), so a round reads
   * each byte once. The archiver keeps the entries after its own seq.
   */
  async walSince(from?: WalPosition): Promise<{ segments: WalBytes[]; durableSeq: number }> {
    const writer = this.requireServing();
    const { fs } = this.options;
    const named = async (dir: string) =>
      (await fs.exists(dir)) ? (await fs.readdir(dir)).filter((entry) => segmentFirstSeq(entry) !== undefined).sort().map((name) => join(dir, name)) : [];
    const pending = await named(this.walPendingDir);
    // Taken before the live segments are read: a write in flight may add bytes, never remove durable ones.
    const durableSeq = writer.durableSeq;
    const durableBytes = writer.bytes;
    const segments: WalBytes[] = [];
    // Segment names are their first seq, so every retired one sorts before every live one.
    for (const path of [...pending, ...(await named(this.walDir))]) {
      const name = basename(path);
      if (from && name < from.segment) continue;
      const start = from && name === from.segment ? from.offset : 0;
      segments.push({ name, start, data: await readRange(fs, path, start, path === writer.path ? durableBytes : undefined) });
    }
    return { segments, durableSeq };
  }

  /** The archiver holds every entry up to `throughSeq`: retired segments that end by then go. */
  async walArchived(throughSeq: number): Promise<number> {
    const { fs } = this.options;
    if (!(await fs.exists(this.walPendingDir))) return 0;
    const pending = (await fs.readdir(this.walPendingDir)).filter((entry) => segmentFirstSeq(entry) !== undefined).sort();
    const live = (await fs.readdir(this.walDir)).map(segmentFirstSeq).filter((seq): seq is number => seq !== undefined);
    let removed = 0;
    for (const [index, name] of pending.entries()) {
      // A segment ends just before the next one starts (the next retired one, or the oldest live one).
      const next = index + 1 < pending.length ? segmentFirstSeq(pending[index + 1]!)! : Math.min(...live, this.nextSeq);
      if (next - 1 > throughSeq) break;
      await fs.unlink(join(this.walPendingDir, name));
      removed++;
    }
    if (removed > 0) await fs.syncDir(this.walPendingDir);
    return removed;
  }

  /**
   * A consistent copy of what the shard holds durably, for a backup: its
   * manifest file and the durable bytes of every WAL segment. The sealed
   * files the manifest lists are immutable and read by the caller. Run
   * inside the actor (nothing seals or trims meanwhile).
   */
  async snapshot(): Promise<{ metadata: Uint8Array; manifest: ShardManifest; wal: { name: string; data: Uint8Array }[]; durableSeq: number; records: number }> {
    const writer = this.requireServing();
    await writer.whenDurable(this.nextSeq - 1);
    const { fs, dir } = this.options;
    const metadata = await fs.readFile(join(dir, 'metadata.json'));
    const wal: { name: string; data: Uint8Array }[] = [];
    for (const name of (await fs.readdir(this.walDir)).filter((entry) => entry.endsWith('.log')).sort()) {
      const data = await fs.readFile(join(this.walDir, name));
      // The open segment may hold bytes of a write in flight: only what is durable belongs to the copy.
      wal.push({ name, data: join(this.walDir, name) === writer.path ? data.subarray(0, writer.bytes) : data });
    }
    // Every write is durable by now (awaited above), so the index counts exactly the records the copy holds.
    return { metadata, manifest: this.manifest, wal, durableSeq: writer.durableSeq, records: this.index.size };
  }

  /** Waits until every write applied so far is durable (retention runs on durable state only). */
  async settle(): Promise<void> {
    const writer = this.requireServing();
    await writer.whenDurable(this.nextSeq - 1);
  }

  /** A sealed file's records, each with whether it is its record's current version (retention plans with this). */
  async sealedFileRows(fileIndex: number): Promise<{ record: StoredRecord; current: boolean }[]> {
    const first = this.fileRows[fileIndex]!;
    const end = this.fileRows[fileIndex + 1] ?? this.columns.rows;
    return [...(await this.loadFile(fileIndex)).values()].map((record) => {
      const location = this.index.get(record.id);
      const current = location !== undefined && versionOf(location) === record.version && rowOf(location) >= first && rowOf(location) < end;
      return { record, current };
    });
  }

  needsSeal(): boolean {
    return this.memtable.size >= this.options.memtableRecordsMax;
  }

  async close(): Promise<void> {
    await this.writer?.close();
    this.writer = undefined;
  }

  /** Health, and the counts a serving shard knows; a corrupt one cannot know them, so it gives none rather than stale ones. */
  status(): Record<string, unknown> {
    if (this.health.state === 'corrupt') return { health: this.health.state, reason: this.health.reason };
    return {
      health: this.health.state,
      records: this.index.size,
      sealed_rows: this.columns.rows - 1,
      unsealed: this.memtable.size,
      sealed_files: this.manifest.files.length,
      next_seq: this.nextSeq,
      durable_seq: this.durableSeq,
    };
  }
}
