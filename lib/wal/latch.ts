/**
 * The latch caught-up senders sleep on, as `WalSndWakeup` wakes PostgreSQL's walsenders.
 *
 * @module
 */

/** One sleeping caller: how to wake it, and its timer. */
interface Waiter {
  wake: (set: boolean) => void;
  timer: ReturnType<typeof setTimeout>;
  signal: AbortSignal | undefined;
}

/**
 * Wakes every waiter at once when set. A waiter that arrives after a `set()` waits for the next
 * one, so callers re-check their condition before waiting (the advance they want may already have
 * happened) and after waking.
 *
 * A caught-up sender waits once per advance of the WAL, so a wait costs one promise and one
 * timer: no race of promises, and one abort listener per signal however often it waits.
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
  #waiters = new Set<Waiter>();
  /** Signals with a listener already, each waking the waiters that passed it. */
  #watched = new WeakSet<AbortSignal>();
  /**
   * Called by each wait once its waiter is in place, so one who sets the latch from elsewhere
   * (another thread's advance, looked for here) wakes this very wait rather than the next.
   */
  onWait: (() => void) | undefined;

  /** Wakes every current waiter. */
  set(): void {
    if (this.#waiters.size === 0) return;
    const waiters = this.#waiters;
    this.#waiters = new Set();
    for (const w of waiters) w.wake(true);
  }

  /**
   * Waits until the latch is set, the timeout passes (the periodic wake that keeps a sleeping
   * sender honest) or the signal aborts.
   *
   * @returns `true` when set, `false` on timeout or abort.
   */
  wait(timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (signal?.aborted) return Promise.resolve(false);
    const { promise, resolve } = Promise.withResolvers<boolean>();
    const w: Waiter = {
      wake: (set) => {
        clearTimeout(w.timer);
        this.#waiters.delete(w);
        resolve(set);
      },
      timer: setTimeout(() => w.wake(false), timeoutMs),
      signal,
    };
    this.#waiters.add(w);
    this.onWait?.();
    if (signal && !this.#watched.has(signal)) {
      this.#watched.add(signal);
      signal.addEventListener("abort", () => {
        for (const x of this.#waiters) if (x.signal === signal) x.wake(false);
      }, { once: true });
    }
    return promise;
  }
}
