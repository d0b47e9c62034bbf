/**
 * When the durable writer may fdatasync without leaving the event loop.
 *
 * In place, a small flush costs the disk's latency and nothing more; through the blocking-thread
 * pool it costs a thread hop on top, which is the relay's added lag while the upstream is quiet.
 * But an in-place sync holds every sender and the status server for its duration, so under a
 * steady stream of small commits the loop would spend most of its time waiting on the disk. The
 * budget allows in-place syncs while they take at most a share of the recent wall time.
 *
 * @module
 */

/** Flushes larger than this always go to the pool: they take long, and senders must keep going. */
export const SYNC_IN_PLACE_MAX_BYTES = 64 * 1024;

/**
 * Tracks the in-place syncs of the last `windowMs` and allows another while their total stays
 * under `share` of the window.
 *
 * @example
 * ```ts
 * import { SyncBudget } from "./_sync_budget.ts";
 * import assert from "node:assert/strict";
 * const b = new SyncBudget({ windowMs: 100, share: 0.25 });
 * assert.ok(b.allows(0, 200));
 * b.record(0, 20);
 * assert.ok(b.allows(30, 200)); // 20 ms of the last 100
 * b.record(30, 10);
 * assert.ok(!b.allows(40, 200)); // 30 ms: over a quarter
 * assert.ok(b.allows(125, 200)); // the first sync has left the window
 * assert.ok(!b.allows(125, 1 << 20)); // too large whatever the budget
 * ```
 */
export class SyncBudget {
  #windowMs: number;
  #share: number;
  #spent: { at: number; ms: number }[] = [];
  #total = 0;

  /** @param options The window (ms) and the share of it in-place syncs may take. */
  constructor(options: { windowMs: number; share: number }) {
    this.#windowMs = options.windowMs;
    this.#share = options.share;
  }

  /** Whether a flush of `bytes` at time `now` (ms) may sync in place. */
  allows(now: number, bytes: number): boolean {
    if (bytes > SYNC_IN_PLACE_MAX_BYTES) return false;
    while (this.#spent.length > 0 && this.#spent[0]!.at <= now - this.#windowMs) {
      this.#total -= this.#spent.shift()!.ms;
    }
    return this.#total < this.#share * this.#windowMs;
  }

  /** Records an in-place sync that started at `at` (ms) and took `ms`. */
  record(at: number, ms: number): void {
    this.#spent.push({ at, ms });
    this.#total += ms;
  }
}
