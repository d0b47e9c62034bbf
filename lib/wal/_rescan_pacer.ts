/**
 * Spacing of the directory rescans that file events and the periodic timer ask for.
 *
 * @module
 */

/**
 * A rescan shorter than this is not spaced out: a directory of up to two thousand files or so is
 * rescanned whenever asked, so new WAL in it is seen at once.
 */
const FREE_MS = 20;
/** After a longer one, this many times its length passes before the next. */
const FACTOR = 9;
/** And never more than this. */
const MAX_GAP_MS = 30_000;

/**
 * Keeps rescans of a large directory to about a tenth of the time. A rescan lists the whole
 * directory; in a directory of thousands of segments that takes tens of milliseconds or more,
 * and a client writing a `.partial` there (`pg_receivewal`) raises an event with every write:
 * rescanned back to back, the relay would spend a whole core listing it. After a rescan that
 * took `d` ms (at least 20), the next waits `9 · d` ms (at most 30 s); new WAL is seen that much
 * later. A directory that lists in under 20 ms is rescanned whenever asked.
 *
 * @example
 * ```ts
 * import { RescanPacer } from "./_rescan_pacer.ts";
 * import assert from "node:assert/strict";
 * const pacer = new RescanPacer();
 * pacer.done(0, 50);
 * assert.equal(pacer.wait(50), 450);
 * pacer.done(1000, 1010);
 * assert.equal(pacer.wait(1010), 0);
 * ```
 */
export class RescanPacer {
  #nextAt = -Infinity;

  /** Milliseconds before the next rescan may start, as of `now`. */
  wait(now: number): number {
    return Math.max(0, this.#nextAt - now);
  }

  /** Records a rescan that ran from `start` to `end` (milliseconds, one clock). */
  done(start: number, end: number): void {
    const took = end - start;
    this.#nextAt = took < FREE_MS ? end : end + Math.min(MAX_GAP_MS, FACTOR * took);
  }
}
