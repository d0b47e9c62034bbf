/**
 * The clock of a thread's streaming sessions: one interval timer per period, however many
 * sessions tick at it. Each timer that fires wakes the thread (two turns of Deno's event loop), so
 * fifty caught-up standbys with a timer each woke an idle relay fifty times a second; sharing one,
 * they wake it once.
 *
 * @module
 */

/** The sessions ticking at one period, and the one timer that calls them. */
interface Clock {
  timer: ReturnType<typeof setInterval>;
  calls: Set<() => void>;
}

const clocks = new Map<number, Clock>();

/**
 * Calls `tick` every `periodMs`, on the thread's one timer of that period, until disposed. A new
 * session's first tick comes within one period, not exactly one period after it joined.
 *
 * @example
 * ```ts
 * import { everyPeriod } from "./_session_clock.ts";
 * import assert from "node:assert/strict";
 * let ticks = 0;
 * {
 *   using _clock = everyPeriod(10, () => ticks++);
 *   await new Promise((r) => setTimeout(r, 50));
 * }
 * assert.ok(ticks > 0);
 * ```
 */
export function everyPeriod(periodMs: number, tick: () => void): Disposable {
  let clock = clocks.get(periodMs);
  if (!clock) {
    const calls = new Set<() => void>();
    // A copy: a session may leave (or another join) from within its tick.
    const timer = setInterval(() => {
      for (const call of [...calls]) if (calls.has(call)) call();
    }, periodMs);
    clock = { timer, calls };
    clocks.set(periodMs, clock);
  }
  const joined = clock;
  // Each subscription is its own entry, even for the same function.
  const call = () => tick();
  joined.calls.add(call);
  return {
    [Symbol.dispose]() {
      if (!joined.calls.delete(call) || joined.calls.size > 0) return;
      // The last one out: the clock goes (a clock is replaced only once it has gone).
      clearInterval(joined.timer);
      clocks.delete(periodMs);
    },
  };
}
