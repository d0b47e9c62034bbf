/**
 * The newest durable WAL kept in memory in relay mode, so that caught-up senders do not each read
 * it back from disk.
 *
 * @module
 */

import type { Lsn } from "./lsn.ts";
import type { TimelineId } from "./segment.ts";

/** WAL `bytes` from `start` on `tli`; small pieces share a block they are copied into. */
interface Piece {
  tli: TimelineId;
  start: Lsn;
  bytes: Uint8Array;
  /** The block `bytes` lies at the start of, with room for more; none for a piece kept as given. */
  block: Uint8Array | undefined;
}

/** Pieces shorter than this (a commit or two while the upstream is quiet) are copied together. */
const SMALL = 8192;
/** Bytes of a block small pieces are copied into. */
const BLOCK = 65536;
/** Dropped pieces leave their slots until this many, and half of all, are dropped. */
const COMPACT = 1024;

/**
 * A bounded queue of contiguous durable WAL, oldest dropped first.
 *
 * A quiet upstream sends each commit as a message of its own, a couple of hundred bytes: a tail of
 * 64 MB would be hundreds of thousands of pieces, each an object and a buffer of its own. Small
 * pieces are therefore copied together into 64 kB blocks, so a sender that is behind reads a
 * block at a time, the lookup stays short, and dropping the oldest costs no shift of a long array.
 *
 * @example
 * ```ts
 * import { MemoryTail } from "./_memory_tail.ts";
 * import assert from "node:assert/strict";
 * const tail = new MemoryTail(1 << 20);
 * tail.add(1, 0x1000000n, new Uint8Array([1, 2]));
 * tail.add(1, 0x1000002n, new Uint8Array([3]));
 * assert.equal(tail.start(1), 0x1000000n);
 * assert.deepEqual(tail.read(1, 0x1000001n, 8), new Uint8Array([2, 3]));
 * assert.equal(tail.read(2, 0x1000001n, 8), undefined);
 * ```
 */
export class MemoryTail {
  readonly #limit: number;
  #pieces: (Piece | undefined)[] = [];
  #head = 0;
  #bytes = 0;

  /** @param limit Bytes of WAL kept; the newest piece is kept even when larger. */
  constructor(limit: number) {
    this.#limit = limit;
  }

  /** Bytes of WAL held. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Pieces held: a block of small ones counts once. */
  get pieces(): number {
    return this.#pieces.length - this.#head;
  }

  /** Drops everything. */
  clear(): void {
    this.#pieces = [];
    this.#head = 0;
    this.#bytes = 0;
  }

  /**
   * Keeps `bytes` at `start` on `tli`, after what is held. WAL that does not continue it (another
   * timeline, a gap) starts the tail anew. A piece of `SMALL` bytes or more is kept by reference:
   * the caller must not reuse its buffer.
   */
  add(tli: TimelineId, start: Lsn, bytes: Uint8Array): void {
    if (bytes.length === 0 || this.#limit <= 0) return;
    let last = this.#pieces.length > this.#head ? this.#pieces.at(-1) : undefined;
    if (last && (last.tli !== tli || last.start + BigInt(last.bytes.length) !== start)) {
      this.clear();
      last = undefined;
    }
    if (bytes.length >= SMALL) {
      this.#pieces.push({ tli, start, bytes, block: undefined });
    } else if (last?.block && last.bytes.length + bytes.length <= last.block.length) {
      last.block.set(bytes, last.bytes.length);
      last.bytes = last.block.subarray(0, last.bytes.length + bytes.length);
    } else {
      const block = new Uint8Array(BLOCK);
      block.set(bytes);
      this.#pieces.push({ tli, start, bytes: block.subarray(0, bytes.length), block });
    }
    this.#bytes += bytes.length;
    while (this.#bytes > this.#limit && this.#pieces.length - this.#head > 1) {
      this.#bytes -= this.#pieces[this.#head]!.bytes.length;
      this.#pieces[this.#head++] = undefined;
    }
    if (this.#head >= COMPACT && this.#head * 2 >= this.#pieces.length) {
      this.#pieces = this.#pieces.slice(this.#head);
      this.#head = 0;
    }
  }

  /** Where the WAL held for `tli` begins, or `undefined` when none is. */
  start(tli: TimelineId): Lsn | undefined {
    const first = this.#pieces[this.#head];
    return first && first.tli === tli ? first.start : undefined;
  }

  /**
   * A view of up to `max` bytes of WAL at `lsn` on `tli`, within one piece; `undefined` when
   * that WAL is not held.
   */
  read(tli: TimelineId, lsn: Lsn, max: number): Uint8Array | undefined {
    const pieces = this.#pieces;
    let lo = this.#head;
    let hi = pieces.length - 1;
    if (lo > hi || lsn < pieces[lo]!.start) return undefined;
    // Caught-up senders read from the newest piece; those behind find theirs by halving.
    if (lsn < pieces[hi]!.start) {
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (pieces[mid]!.start <= lsn) lo = mid;
        else hi = mid - 1;
      }
    } else {
      lo = hi;
    }
    const piece = pieces[lo]!;
    const off = lsn - piece.start;
    if (piece.tli !== tli || off >= BigInt(piece.bytes.length)) return undefined;
    const from = Number(off);
    return piece.bytes.subarray(from, Math.min(piece.bytes.length, from + max));
  }
}
