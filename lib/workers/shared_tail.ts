/**
 * The durable end of a relay, and its newest WAL, in memory every sender thread reads: the relay's
 * thread writes each advance once, and only threads with a sender asleep on it are woken. Not
 * part of the public API.
 *
 * @module
 */

import type { Lsn } from "../wal/lsn.ts";

/** Slots of the header's 64-bit half. */
const SEQ = 0, END = 1, WRITING = 2, VALID_FROM = 3;
/** Slots of the header's 32-bit half, after the 64-bit one; the threads' flags follow. */
const TLI = 8, FLAGS = 9;

/** A view of the durable end, taken whole. */
export interface TailPosition {
  tli: number;
  end: Lsn;
  /** Where the WAL of `tli` the ring may hold begins (older bytes are another timeline's). */
  validFrom: Lsn;
}

/** What a thread takes from the ring: `bytes` is its own copy of `[start, end)`. */
export interface TailCopy extends TailPosition {
  start: Lsn;
  bytes: Uint8Array;
}

/**
 * A ring of the newest durable WAL, addressed by LSN modulo its size, with the durable end it
 * holds up to and one flag per sender thread. One thread writes (the relay's); any thread reads.
 * The end and timeline are published under a sequence count, so a reader never sees a mix of
 * two advances; a reader copies what it wants and then drops what the writer may have begun to
 * overwrite meanwhile, so no torn byte is ever handed out.
 *
 * A thread raises its flag before its senders sleep and then looks at the end once more; the
 * writer publishes the end before it takes the flags. Both sides use sequentially consistent
 * atomics, so either the thread sees the advance or the writer sees the flag and wakes it.
 *
 * @example
 * ```ts
 * import { SharedTail } from "./shared_tail.ts";
 * import assert from "node:assert/strict";
 * const relay = SharedTail.create(1024, 2);
 * const thread = new SharedTail(relay.buffer);
 * thread.sleeping(1);
 * relay.write(1, 100n, new Uint8Array([1, 2, 3]));
 * assert.deepEqual(relay.wakeSleepers(), [1]);
 * const copy = thread.copy(1, 0n, 1 << 20);
 * assert.equal(copy.start, 100n);
 * assert.deepEqual([...copy.bytes], [1, 2, 3]);
 * ```
 */
export class SharedTail {
  /** Everything, to be handed to another thread. */
  readonly buffer: SharedArrayBuffer;
  #wide: BigInt64Array;
  #narrow: Int32Array;
  #ring: Uint8Array;
  #size: bigint;
  #threads: number;

  /** A tail of `size` bytes for `threads` sender threads (numbered from 1). */
  static create(size: number, threads: number): SharedTail {
    const buffer = new SharedArrayBuffer(64 + 4 * (threads + 1) + size);
    new Int32Array(buffer, 0, FLAGS + threads + 1)[FLAGS] = threads;
    return new SharedTail(buffer);
  }

  /** Another thread's view of a tail made with {@linkcode SharedTail.create}. */
  constructor(buffer: SharedArrayBuffer) {
    this.buffer = buffer;
    this.#wide = new BigInt64Array(buffer, 0, 4);
    const threads = new Int32Array(buffer, 0, FLAGS + 1)[FLAGS]!;
    this.#threads = threads;
    this.#narrow = new Int32Array(buffer, 0, FLAGS + threads + 1);
    const ringAt = 64 + 4 * (threads + 1);
    this.#ring = new Uint8Array(buffer, ringAt);
    this.#size = BigInt(this.#ring.length);
  }

  /**
   * The relay's thread: WAL `[start, start + bytes.length)` on `tli` is durable. Only one thread
   * may write. A start that does not continue the end (a new timeline, a gap) begins the ring's
   * valid WAL anew.
   */
  write(tli: number, start: Lsn, bytes: Uint8Array): void {
    const end = start + BigInt(bytes.length);
    const w = this.#wide, n = this.#narrow;
    let validFrom = Atomics.load(w, VALID_FROM);
    if (Atomics.load(n, TLI) !== tli || Atomics.load(w, END) !== start) validFrom = start;
    // Readers drop whatever lies below this less the ring's size, before a byte is overwritten.
    Atomics.store(w, WRITING, end);
    let from = 0;
    if (BigInt(bytes.length) > this.#size) from = bytes.length - this.#ring.length;
    let at = Number((start + BigInt(from)) % this.#size);
    while (from < bytes.length) {
      const n = Math.min(bytes.length - from, this.#ring.length - at);
      this.#ring.set(bytes.subarray(from, from + n), at);
      from += n;
      at = 0;
    }
    Atomics.add(w, SEQ, 1n);
    Atomics.store(n, TLI, tli);
    Atomics.store(w, END, end);
    Atomics.store(w, VALID_FROM, validFrom);
    Atomics.add(w, SEQ, 1n);
  }

  /** The durable end now, as last published. */
  position(): TailPosition {
    const w = this.#wide;
    while (true) {
      const seq = Atomics.load(w, SEQ);
      if (seq % 2n !== 0n) continue;
      const tli = Atomics.load(this.#narrow, TLI);
      const end = Atomics.load(w, END);
      const validFrom = Atomics.load(w, VALID_FROM);
      if (Atomics.load(w, SEQ) === seq) return { tli, end, validFrom };
    }
  }

  /**
   * The durable end now and a copy of the WAL from `from` (or from where the ring's WAL begins,
   * if later) up to it, at most `max` bytes, the newest ones. Empty when nothing of it is held.
   */
  copy(tli: number, from: Lsn, max: number): TailCopy {
    const p = this.position();
    let start = from;
    if (p.tli !== tli || start < p.validFrom) start = p.validFrom;
    if (start < p.end - this.#size) start = p.end - this.#size;
    if (start < p.end - BigInt(max)) start = p.end - BigInt(max);
    if (start >= p.end) return { ...p, start: p.end, bytes: new Uint8Array(0) };
    const bytes = new Uint8Array(Number(p.end - start));
    let at = Number(start % this.#size), to = 0;
    while (to < bytes.length) {
      const n = Math.min(bytes.length - to, this.#ring.length - at);
      bytes.set(this.#ring.subarray(at, at + n), to);
      to += n;
      at = 0;
    }
    // The writer may have begun overwriting the oldest of it since, or moved to a new timeline.
    const safe = Atomics.load(this.#wide, WRITING) - this.#size;
    if (this.position().tli !== p.tli) return { ...p, start: p.end, bytes: new Uint8Array(0) };
    if (safe > start) {
      const cut = safe >= p.end ? bytes.length : Number(safe - start);
      return { ...p, start: start + BigInt(cut), bytes: bytes.subarray(cut) };
    }
    return { ...p, start, bytes };
  }

  /** A sender thread (from 1): its senders are about to sleep until the end moves. */
  sleeping(thread: number): void {
    Atomics.store(this.#narrow, FLAGS + thread, 1);
  }

  /**
   * A sender thread (from 1): resolves once the relay's thread has lowered its flag, at once if
   * it has already. The wait is V8's, off the thread's message port: a posted message costs
   * both threads more per wake-up than the notify.
   */
  woken(thread: number): Promise<unknown> {
    const r = Atomics.waitAsync(this.#narrow, FLAGS + thread, 1);
    return r.async ? r.value : Promise.resolve(r.value);
  }

  /**
   * The relay's thread, after {@linkcode SharedTail.write}: wakes the threads that had senders
   * asleep, each once (its flag is lowered), and says which.
   */
  wakeSleepers(): number[] {
    const woken: number[] = [];
    for (let t = 1; t <= this.#threads; t++) {
      if (Atomics.exchange(this.#narrow, FLAGS + t, 0) === 1) {
        Atomics.notify(this.#narrow, FLAGS + t);
        woken.push(t);
      }
    }
    return woken;
  }
}
