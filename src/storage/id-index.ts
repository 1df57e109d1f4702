// The exact id index of a shard, without millions of strings on the heap.
// An open-addressing hash table over typed arrays: each slot holds a 96-bit
// hash of the id (three independent 32-bit hashes) and the record's packed
// location. About 40 bytes a record at the 50% load it keeps, and nothing for
// the garbage collector to trace: a Map of five million string keys costs
// three times the memory and makes every major GC walk them all.
//
// Two different ids are taken for one only if all 96 bits of their hashes
// agree: for five million ids in a shard the chance is about 1.6e-16.

const EMPTY = 0;
const INITIAL_SLOTS = 1 << 12;

/** murmur3-style 32-bit hash of the UTF-16 code units of `text`. */
function murmur(text: string, seed: number): number {
  let h = seed >>> 0;
  for (let i = 0; i < text.length; i++) {
    let k = text.charCodeAt(i);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) >>> 0;
  }
  h ^= text.length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export class IdIndex {
  private slots = INITIAL_SLOTS;
  private h1 = new Uint32Array(this.slots);
  private h2 = new Uint32Array(this.slots);
  private h3 = new Uint32Array(this.slots);
  /** Packed location; 0 marks an empty slot (every real location is above 0). */
  private location = new Float64Array(this.slots);
  size = 0;

  get(id: string): number | undefined {
    const slot = this.find(murmur(id, 0x9747b28c), murmur(id, 0x1b873593), murmur(id, 0x5bd1e995));
    const value = this.location[slot]!;
    return value === EMPTY ? undefined : value;
  }

  has(id: string): boolean {
    return this.get(id) !== undefined;
  }

  /** Sets the location of `id`; `location` must be above 0. */
  set(id: string, location: number): void {
    if (!(location > 0)) throw new RangeError(`id index location must be above 0, got ${location}`);
    if ((this.size + 1) * 2 > this.slots) this.grow();
    const a = murmur(id, 0x9747b28c);
    const b = murmur(id, 0x1b873593);
    const c = murmur(id, 0x5bd1e995);
    const slot = this.find(a, b, c);
    if (this.location[slot] === EMPTY) {
      this.h1[slot] = a;
      this.h2[slot] = b;
      this.h3[slot] = c;
      this.size++;
    }
    this.location[slot] = location;
  }

  /** The slot holding this hash, or the empty slot where it would go. */
  private find(a: number, b: number, c: number): number {
    const mask = this.slots - 1;
    let slot = (a ^ Math.imul(c, 0x27d4eb2d)) & mask;
    while (this.location[slot] !== EMPTY) {
      if (this.h1[slot] === a && this.h2[slot] === b && this.h3[slot] === c) return slot;
      slot = (slot + 1) & mask;
    }
    return slot;
  }

  private grow(): void {
    const old = { h1: this.h1, h2: this.h2, h3: this.h3, location: this.location, slots: this.slots };
    this.slots *= 2;
    this.h1 = new Uint32Array(this.slots);
    this.h2 = new Uint32Array(this.slots);
    this.h3 = new Uint32Array(this.slots);
    this.location = new Float64Array(this.slots);
    for (let slot = 0; slot < old.slots; slot++) {
      const value = old.location[slot]!;
      if (value === EMPTY) continue;
      const a = old.h1[slot]!;
      const b = old.h2[slot]!;
      const c = old.h3[slot]!;
      const target = this.find(a, b, c);
      this.h1[target] = a;
      this.h2[target] = b;
      this.h3[target] = c;
      this.location[target] = value;
    }
  }
}
