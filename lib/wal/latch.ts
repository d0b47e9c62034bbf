/**
 * The latch caught-up senders sleep on, as `WalSndWakeup` wakes PostgreSQL's walsenders.
 *
 * @module
 */

/** One sleeping caller: how to wake it, and when its wait runs out. */
interface Waiter {
  wake: (set: boolean) => void;
  deadline: number;
  signal: AbortSignal | undefined;
}

/**
 * When a wait of `timeoutMs` begun at `now` runs out: at or after `now + timeoutMs`, on a grid of
 * half the timeout. Caught-up senders wait afresh at different moments, and each deadline of its
 * own would fire the timer (and wake the thread) once per sender per period; on the grid, waits of
 * one period end together, at most twice a period, each at most half a period late.
 */
function gridDeadline(now: number, timeoutMs: number): number {
  const step = timeoutMs / 2;
  return step > 0 ? Math.ceil((now + timeoutMs) / step) * step : now + timeoutMs;
}

/**
 * Wakes every waiter at once when set. A waiter that arrives after a `set()` waits for the next
 * one, so callers re-check their condition before waiting (the advance they want may already have
 * happened) and after waking.
 *
 * A caught-up sender waits once per advance of the WAL, so a wait costs one promise: no race of
 * promises, one abort listener per signal however often it waits, and one timer for all the
 * waiters, armed for the earliest deadline. N senders caught up cost one timer per advance, not N,
 * and with no advance their periodic wakes come together (deadlines on a grid). A sender that
 * {@linkcode Latch.join}s for its stream's life costs none per advance: the timer stays armed
 * across sets while anyone is joined (arming a timer costs more than the sender's own work for a
 * small advance), and its next wait, a moment later, ends on the same grid.
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
  /** The one timer, armed while anyone waits, and the deadline it is armed for. */
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAt = Infinity;
  /** Callers joined (see {@linkcode join}): while any is, a set leaves the timer armed. */
  #members = 0;
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
    this.#disarmIfIdle();
    for (const w of waiters) w.wake(true);
  }

  /**
   * Declares a caller that will wait again and again (a sender, for its stream's life): until
   * the returned handle is disposed, {@linkcode set} leaves the timer armed for the waits to come
   * instead of clearing it, and the timer, when it fires with no one waiting, is armed again by
   * the next wait. Disposing the last handle with no one waiting clears the timer.
   *
   * @example
   * ```ts
   * import { Latch } from "./latch.ts";
   * import assert from "node:assert/strict";
   * const latch = new Latch();
   * using _member = latch.join();
   * for (let i = 0; i < 3; i++) {
   *   const woken = latch.wait(1000);
   *   latch.set();
   *   assert.equal(await woken, true);
   * }
   * ```
   */
  join(): Disposable {
    this.#members++;
    let joined = true;
    return {
      [Symbol.dispose]: () => {
        if (!joined) return;
        joined = false;
        this.#members--;
        this.#disarmIfIdle();
      },
    };
  }

  /**
   * Waits until the latch is set, the timeout passes (the periodic wake that keeps a sleeping
   * sender honest) or the signal aborts. The timeout ends on the latch's grid: after `timeoutMs`,
   * and at most half as long again.
   *
   * @returns `true` when set, `false` on timeout or abort.
   */
  wait(timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (signal?.aborted) return Promise.resolve(false);
    const { promise, resolve } = Promise.withResolvers<boolean>();
    const w: Waiter = {
      wake: (set) => {
        // set() has taken the whole set already; a timeout or an abort takes this one out.
        if (!set && this.#waiters.delete(w)) this.#disarmIfIdle();
        resolve(set);
      },
      deadline: gridDeadline(performance.now(), timeoutMs),
      signal,
    };
    this.#waiters.add(w);
    // Waits of one period arrive in deadline order: only an earlier one moves the timer.
    if (w.deadline < this.#timerAt) this.#arm(w.deadline);
    this.onWait?.();
    if (signal && !this.#watched.has(signal)) {
      this.#watched.add(signal);
      signal.addEventListener("abort", () => {
        for (const x of this.#waiters) if (x.signal === signal) x.wake(false);
      }, { once: true });
    }
    return promise;
  }

  #arm(at: number): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(() => this.#expire(), Math.max(0, at - performance.now()));
  }

  /** Clears the timer once no one waits and no one has joined: nothing is left to wake. */
  #disarmIfIdle(): void {
    if (this.#waiters.size > 0 || this.#members > 0) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
  }

  /** The timer fired: wakes the waits that ran out, and arms it for the next deadline. */
  #expire(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    // Timers may fire a little early by performance.now(): a millisecond's grace.
    const now = performance.now() + 1;
    let next = Infinity;
    for (const w of [...this.#waiters]) {
      if (w.deadline <= now) w.wake(false);
      else if (w.deadline < next) next = w.deadline;
    }
    if (next !== Infinity && this.#timer === undefined) this.#arm(next);
  }
}
