// Anti-entropy digests: a two-level Merkle tree per shard over (id, version)
// of the current records, that PostgreSQL can compute in SQL too.
//
//   leaf    h(record) = first 8 bytes of md5("<id>:<version>"), a signed 64-bit integer
//   bucket  (day, b)  = count and XOR of the leaves of the day's records whose
//                       md5(id) starts with byte b (256 buckets per day)
//   day               = count and XOR of its buckets (the XOR of all its leaves)
//
// XOR makes a node's hash independent of the order records are visited in,
// and lets the day level be derived from the buckets, on both sides. Equal
// day nodes mean equal (id, version) sets with overwhelming probability;
// only differing days are compared bucket by bucket, and only differing
// buckets row by row. `day` is the UTC day of `ts`, as in sealed files.

import { createHash } from 'node:crypto';

export const BUCKETS = 256;

export interface Node {
  count: number;
  xor: bigint;
}

/** The leaf hash and bucket of a record. */
export function leafOf(id: string, version: number): { hash: bigint; bucket: number } {
  const leaf = createHash('md5').update(`${id}:${version}`, 'utf8').digest();
  const bucket = createHash('md5').update(id, 'utf8').digest()[0]!;
  return { hash: leaf.readBigInt64BE(0), bucket };
}

export const dayOfTs = (ts: number) => new Date(ts).toISOString().slice(0, 10);

/** Digests of one shard: day → bucket → node. */
export class ShardDigest {
  readonly days = new Map<string, Map<number, Node>>();

  add(id: string, version: number, ts: number): void {
    const { hash, bucket } = leafOf(id, version);
    this.addLeaf(dayOfTs(ts), bucket, 1, hash);
  }

  addLeaf(day: string, bucket: number, count: number, xor: bigint): void {
    let buckets = this.days.get(day);
    if (!buckets) this.days.set(day, (buckets = new Map()));
    const node = buckets.get(bucket);
    if (node) {
      node.count += count;
      node.xor ^= xor;
    } else {
      buckets.set(bucket, { count, xor });
    }
  }

  dayNode(day: string): Node {
    let count = 0;
    let xor = 0n;
    for (const node of this.days.get(day)?.values() ?? []) {
      count += node.count;
      xor ^= node.xor;
    }
    return { count, xor };
  }

  /** As plain data for a message: [day, bucket, count, xor as decimal text]. */
  toWire(): [string, number, number, string][] {
    const out: [string, number, number, string][] = [];
    for (const [day, buckets] of this.days) for (const [bucket, node] of buckets) out.push([day, bucket, node.count, node.xor.toString()]);
    return out;
  }

  static fromWire(rows: readonly (readonly [string, number, number, string])[]): ShardDigest {
    const digest = new ShardDigest();
    for (const [day, bucket, count, xor] of rows) digest.addLeaf(day, bucket, count, BigInt(xor));
    return digest;
  }
}

const sameNode = (a: Node | undefined, b: Node | undefined) => (a?.count ?? 0) === (b?.count ?? 0) && (a?.xor ?? 0n) === (b?.xor ?? 0n);

export interface DigestDifference {
  daysEqual: number;
  /** Days whose nodes differ, each with the buckets that differ. */
  differing: { day: string; buckets: number[] }[];
}

/** Compares two shards' trees top-down: days first, then the buckets of differing days. */
export function compareDigests(local: ShardDigest, remote: ShardDigest): DigestDifference {
  const days = [...new Set([...local.days.keys(), ...remote.days.keys()])].sort();
  const result: DigestDifference = { daysEqual: 0, differing: [] };
  for (const day of days) {
    if (sameNode(local.dayNode(day), remote.dayNode(day))) {
      result.daysEqual++;
      continue;
    }
    const localBuckets = local.days.get(day) ?? new Map<number, Node>();
    const remoteBuckets = remote.days.get(day) ?? new Map<number, Node>();
    const buckets = [...new Set([...localBuckets.keys(), ...remoteBuckets.keys()])].filter((bucket) => !sameNode(localBuckets.get(bucket), remoteBuckets.get(bucket)));
    result.differing.push({ day, buckets: buckets.sort((a, b) => a - b) });
  }
  return result;
}
