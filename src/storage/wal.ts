// The write-ahead log of a shard: segments of framed entries, appended with
// group commit and made durable with fdatasync before anything is
// acknowledged. Format (docs/durability.md):
//
//   frame   = length (u32 LE) | crc32 of length bytes then payload (u32 LE) | payload
//   payload = binary entry (record-codec.ts; first byte 0x01), written since format 2,
//             or msgpack map {seq, op, record} (first byte 0x83), still read
//
// Reading a segment stops at the first bad frame. A torn tail is the writer
// dying mid-write: a bad frame after which no valid frame starts anywhere
// (appends only ever add at the end, so a valid frame after a bad one means
// the bad one was once whole). Nothing in a torn tail was acknowledged; it
// is dropped. Any other bad frame is corruption: the shard must not serve.

import { crc32 } from 'node:zlib';
import { Packr } from 'msgpackr';
import type { StoredRecord } from '../../protocols/record.js';
import type { FileHandlePort, FileSystem } from '../ports/fs.js';
import { decodeEntry, encodeEntryInto, isBinaryEntryTag, withStandIns } from './record-codec.js';

export const FRAME_HEADER_BYTES = 8;
/** A frame larger than this is never written, so reading one means damage. */
export const FRAME_PAYLOAD_MAX = 4 * 1024 * 1024;

export interface WalEntry {
  seq: number;
  op: 'put';
  record: StoredRecord;
}

const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

/** The checksum covers the length too, so a damaged length is caught like damaged data. */
function frameChecksum(frame: Uint8Array, offset: number, length: number): number {
  return crc32(frame.subarray(offset + FRAME_HEADER_BYTES, offset + FRAME_HEADER_BYTES + length), crc32(frame.subarray(offset, offset + 4)));
}

export function encodeFrame(entry: WalEntry): Uint8Array {
  return encodeFrames([entry]);
}

/** The frames of several entries, back to back in one buffer (one write, no per-frame copies). */
export function encodeFrames(entries: readonly WalEntry[]): Uint8Array {
  let start = 0;
  let buffer: Buffer | undefined;
  for (const entry of entries) {
    const encoded = encodeEntryInto(start + FRAME_HEADER_BYTES, entry.seq, entry.record);
    buffer = encoded.buffer;
    const length = encoded.end - start - FRAME_HEADER_BYTES;
    if (length > FRAME_PAYLOAD_MAX) throw new RangeError(`WAL entry of ${length} bytes exceeds ${FRAME_PAYLOAD_MAX}`);
    buffer.writeUInt32LE(length, start);
    buffer.writeUInt32LE(frameChecksum(buffer, start, length), start + 4);
    start = encoded.end;
  }
  return buffer ? new Uint8Array(buffer.subarray(0, start)) : new Uint8Array(0);
}

/** Frames as format 1 wrote them (a msgpack map), for tests of the reader's compatibility. */
export function encodeLegacyFrame(entry: WalEntry): Uint8Array {
  const payload = packr.pack(entry);
  const frame = new Uint8Array(FRAME_HEADER_BYTES + payload.byteLength);
  const view = new DataView(frame.buffer);
  view.setUint32(0, payload.byteLength, true);
  frame.set(payload, FRAME_HEADER_BYTES);
  view.setUint32(4, frameChecksum(frame, 0, payload.byteLength), true);
  return frame;
}

function decodePayload(bytes: Uint8Array, view: DataView, start: number, end: number): WalEntry {
  if (isBinaryEntryTag(bytes[start])) return decodeEntry(bytes, start, end, view);
  const entry = packr.unpack(bytes.subarray(start, end)) as WalEntry;
  // Records logged before they carried `seq` get their entry's.
  if (entry?.record && typeof entry.record === 'object' && typeof entry.seq === 'number') withStandIns(entry.record, entry.seq);
  return entry;
}

/** Whether a whole, valid frame starts at `offset`. */
function validFrameAt(bytes: Uint8Array, view: DataView, offset: number): boolean {
  if (bytes.length - offset < FRAME_HEADER_BYTES) return false;
  const length = view.getUint32(offset, true);
  if (length === 0 || length > FRAME_PAYLOAD_MAX || offset + FRAME_HEADER_BYTES + length > bytes.length) return false;
  return frameChecksum(bytes, offset, length) === view.getUint32(offset + 4, true);
}

/** Whether any valid frame starts after `offset`: then the damage at `offset` is not a torn tail. */
function validFrameAfter(bytes: Uint8Array, view: DataView, offset: number): boolean {
  for (let next = offset + 1; next + FRAME_HEADER_BYTES <= bytes.length; next++) {
    if (validFrameAt(bytes, view, next)) return true;
  }
  return false;
}

export type TailState = { kind: 'clean' } | { kind: 'torn'; droppedBytes: number } | { kind: 'corrupt'; offset: number; reason: string };

export interface SegmentScan {
  entries: WalEntry[];
  /** Bytes of whole, valid frames from the start. */
  validBytes: number;
  tail: TailState;
}

function onlyZeros(bytes: Uint8Array, from: number): boolean {
  for (let i = from; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

/**
 * Reads a segment's frames up to the first bad one. With `visit`, each entry
 * is handed over as it is decoded and `entries` stays empty, so a replay of
 * a large WAL holds no list of wrappers; a throw from `visit` stops the scan.
 */
export function scanSegment(bytes: Uint8Array, visit?: (entry: WalEntry) => void): SegmentScan {
  const entries: WalEntry[] = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let offset = 0;
  while (offset < bytes.length) {
    const bad = (reason: string): SegmentScan => {
      const torn = onlyZeros(bytes, offset) || !validFrameAfter(bytes, view, offset);
      return {
        entries,
        validBytes: offset,
        tail: torn ? { kind: 'torn', droppedBytes: bytes.length - offset } : { kind: 'corrupt', offset, reason },
      };
    };
    if (bytes.length - offset < FRAME_HEADER_BYTES) return bad('partial frame header');
    const length = view.getUint32(offset, true);
    const frameEnd = offset + FRAME_HEADER_BYTES + length;
    if (length === 0 || length > FRAME_PAYLOAD_MAX) return bad(`impossible frame length ${length}`);
    if (frameEnd > bytes.length) return bad('frame runs past the end of the segment');
    if (frameChecksum(bytes, offset, length) !== view.getUint32(offset + 4, true)) return bad('checksum mismatch');
    let entry: WalEntry;
    try {
      entry = decodePayload(bytes, view, offset + FRAME_HEADER_BYTES, frameEnd);
    } catch (error) {
      return bad(`undecodable entry: ${(error as Error).message}`);
    }
    if (!entry || typeof entry.seq !== 'number' || entry.op !== 'put' || !entry.record) return bad('malformed entry');
    if (visit) visit(entry);
    else entries.push(entry);
    offset = frameEnd;
  }
  return { entries, validBytes: offset, tail: { kind: 'clean' } };
}

export function segmentName(firstSeq: number): string {
  return `${String(firstSeq).padStart(16, '0')}.log`;
}

export function segmentFirstSeq(name: string): number | undefined {
  const match = /^(\d{16})\.log$/.exec(name);
  return match ? Number(match[1]) : undefined;
}

/** A failed write or fsync: the log can no longer promise anything and the shard must restart. */
export class WalFailure extends Error {
  override readonly name = 'WalFailure';
  readonly code: string | undefined;
  constructor(message: string, cause: unknown) {
    super(message, { cause });
    this.code = (cause as { code?: string })?.code;
  }
}

interface Waiter {
  seq: number;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/**
 * Appends frames to one open segment. Frames appended while a flush is in
 * progress wait for the next one, which writes them all with one write and
 * one fdatasync (group commit). After any failure the writer is broken:
 * every waiter and every later append is rejected, and the shard restarts
 * from what is on disk. A failed fsync is never retried.
 */
export class WalWriter {
  private buffered: Uint8Array[] = [];
  private bufferedBytes = 0;
  private bufferedSeq = 0;
  private waiters: Waiter[] = [];
  private flushing = false;
  private broken: WalFailure | undefined;
  durableSeq: number;
  bytes: number;

  constructor(
    private readonly handle: FileHandlePort,
    readonly path: string,
    private readonly fsync: boolean,
    durableSeq: number,
    bytes: number,
  ) {
    this.durableSeq = durableSeq;
    this.bytes = bytes;
  }

  static async open(fs: FileSystem, path: string, fsync: boolean, durableSeq: number): Promise<WalWriter> {
    // With fsync on, each write is synced by O_DSYNC: one system call per group commit, not two.
    const handle = await fs.open(path, fsync ? 'append-dsync' : 'append');
    let size: number;
    try {
      size = await handle.size();
    } catch (error) {
      await handle.close().catch(() => undefined);
      throw error;
    }
    return new WalWriter(handle, path, fsync, durableSeq, size);
  }

  get failure(): WalFailure | undefined {
    return this.broken;
  }

  /** Queues frames whose highest seq is `seq`; the promise settles when they are durable. */
  append(frames: Uint8Array[], seq: number): Promise<void> {
    if (this.broken) return Promise.reject(this.broken);
    for (const frame of frames) {
      this.buffered.push(frame);
      this.bufferedBytes += frame.byteLength;
    }
    this.bufferedSeq = Math.max(this.bufferedSeq, seq);
    const durable = this.whenDurable(seq);
    if (!this.flushing) void this.flush();
    return durable;
  }

  whenDurable(seq: number): Promise<void> {
    if (this.broken) return Promise.reject(this.broken);
    if (seq <= this.durableSeq) return Promise.resolve();
    return new Promise<void>((resolve, reject) => this.waiters.push({ seq, resolve, reject }));
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    while (this.buffered.length > 0 && !this.broken) {
      const chunks = this.buffered;
      const size = this.bufferedBytes;
      const seq = this.bufferedSeq;
      this.buffered = [];
      this.bufferedBytes = 0;
      const data = chunks.length === 1 ? chunks[0]! : concat(chunks, size);
      try {
        // The handle is O_DSYNC when fsync is on: the write returns once the bytes are durable.
        await writeWhole(this.handle, data);
        this.bytes += size;
      } catch (error) {
        this.fail(new WalFailure(`WAL ${this.path}: ${(error as Error).message}`, error));
        break;
      }
      this.durableSeq = seq;
      const ready = this.waiters.filter((waiter) => waiter.seq <= seq);
      this.waiters = this.waiters.filter((waiter) => waiter.seq > seq);
      for (const waiter of ready) waiter.resolve();
    }
    this.flushing = false;
  }

  private fail(failure: WalFailure): void {
    this.broken = failure;
    this.buffered = [];
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters) waiter.reject(failure);
  }

  /** Waits for everything appended so far, then closes the segment. */
  async close(): Promise<void> {
    if (this.bufferedSeq > this.durableSeq && !this.broken) await this.whenDurable(this.bufferedSeq).catch(() => undefined);
    await this.handle.close().catch(() => undefined);
  }
}

/** A write may be short (a nearly full disk): the rest is written, and no progress at all is an error. */
export async function writeWhole(handle: FileHandlePort, data: Uint8Array, position?: number): Promise<void> {
  let done = 0;
  while (done < data.byteLength) {
    const written = await handle.write(data.subarray(done), position === undefined ? undefined : position + done);
    if (written <= 0) throw Object.assign(new Error(`short write: ${done} of ${data.byteLength} bytes`), { code: 'EIO' });
    done += written;
  }
}

function concat(chunks: Uint8Array[], size: number): Uint8Array {
  const out = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}
