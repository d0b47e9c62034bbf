/**
 * Counters shared by every sender thread of a relay, in one `SharedArrayBuffer`: the senders and
 * connections in use against their global limits, and the next pid to hand out. Not part of the
 * public API.
 *
 * @module
 */

import type { SenderCounter } from "../replication/registry.ts";

const SENDERS = 0;
const CONNECTIONS = 1;
const NEXT_PID = 2;
const FIRST_PID = 10_000;

/**
 * Takes one of `max` places counted at `index`, or says there is none: a compare-and-swap loop,
 * so two threads can never both take the last one.
 */
function take(counts: Int32Array, index: number, max: number): boolean {
  while (true) {
    const n = Atomics.load(counts, index);
    if (n >= max) return false;
    if (Atomics.compareExchange(counts, index, n, n + 1) === n) return true;
  }
}

/**
 * The sender limit (`max_wal_senders`), the connection limit and the pid sequence of a relay
 * whose sessions run on several threads. Each thread wraps the same buffer.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SharedCounters } from "./shared_counters.ts";
 * const main = SharedCounters.create(20_000);
 * const worker = new SharedCounters(main.buffer);
 * assert.ok(main.tryAcquire(1));
 * assert.equal(worker.tryAcquire(1), false);
 * worker.release();
 * assert.equal(main.senders, 0);
 * assert.notEqual(main.nextPid(), worker.nextPid());
 * ```
 */
export class SharedCounters implements SenderCounter {
  /** The shared memory, to post to another thread. */
  readonly buffer: SharedArrayBuffer;
  #counts: Int32Array;

  /** Wraps counters created by {@linkcode SharedCounters.create} in another thread. */
  constructor(buffer: SharedArrayBuffer) {
    this.buffer = buffer;
    this.#counts = new Int32Array(buffer);
  }

  /** New counters, all places free, pids from `firstPid`. */
  static create(firstPid: number): SharedCounters {
    const c = new SharedCounters(new SharedArrayBuffer(3 * Int32Array.BYTES_PER_ELEMENT));
    Atomics.store(c.#counts, NEXT_PID, firstPid);
    return c;
  }

  /** Senders in use, over every thread. */
  get senders(): number {
    return Atomics.load(this.#counts, SENDERS);
  }

  /** Takes a sender place unless `max` are in use. */
  tryAcquire(max: number): boolean {
    return take(this.#counts, SENDERS, max);
  }

  /** Gives a sender place back. */
  release(): void {
    Atomics.sub(this.#counts, SENDERS, 1);
  }

  /** A pid no other thread of the relay hands out at the same time. */
  nextPid(): number {
    const pid = Atomics.add(this.#counts, NEXT_PID, 1);
    if (pid >= FIRST_PID && pid < 0x7fff_ffff) return pid;
    // Wrapped past the largest int4: start again from the bottom, as the registry did.
    Atomics.compareExchange(this.#counts, NEXT_PID, pid + 1, FIRST_PID + 1);
    return FIRST_PID;
  }

  /** Takes a connection place unless `max` are in use. */
  tryConnect(max: number): boolean {
    return take(this.#counts, CONNECTIONS, max);
  }

  /** Gives a connection place back. */
  disconnect(): void {
    Atomics.sub(this.#counts, CONNECTIONS, 1);
  }
}
