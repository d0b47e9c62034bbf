/**
 * The latch caught-up senders sleep on, as `WalSndWakeup` wakes PostgreSQL's walsenders.
 *
 * @module
 */

/**
 * Wakes every waiter at once when set. A waiter that arrives after a `set()` waits for the next
 * one, so callers re-check their condition before waiting (the advance they want may already have
 * happened) and after waking.
 *
 * @example
 * ```ts
 * import { Latch } from "./latch.ts";
 * import assert from "node:assert/strict";
 * const latch = new Latch();
 * const woken = latch.wait(1000);
 * latch.set();
 * assert.equal(await woken, true);
 * assert.equal(await latch.wait(10), false);
 * ```
 */
export class Latch {
  #waiters = Promise.withResolvers<void>();

  /** Wakes every current waiter. */
  set(): void {
    const w = this.#waiters;
    this.#waiters = Promise.withResolvers<void>();
    w.resolve();
  }

  /**
   * Waits until the latch is set, the timeout passes (the periodic wake that keeps a sleeping
   * sender honest) or the signal aborts.
   *
   * @returns `true` when set, `false` on timeout or abort.
   */
  async wait(timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (signal?.aborted) return false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let onAbort: (() => void) | undefined;
    const stop = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
      if (signal) {
        onAbort = () => resolve(false);
        signal.addEventListener("abort", onAbort, { once: true });
      }
    });
    try {
      return await Promise.race([this.#waiters.promise.then(() => true as const), stop]);
    } finally {
      clearTimeout(timer);
      if (onAbort) signal?.removeEventListener("abort", onAbort);
    }
  }
}
