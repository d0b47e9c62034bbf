/**
 * Counts the timers code arms, for tests of what a wake-up costs (tests never time anything), and
 * bounds a wait.
 *
 * @module
 */

/** Replaces a global timer function while `body` runs, telling `seen` of each call. */
async function watching<K extends "setTimeout" | "setInterval">(
  name: K,
  seen: (ms: number) => void,
  body: () => Promise<unknown>,
): Promise<void> {
  const real = globalThis[name];
  globalThis[name] = ((f: () => void, ms?: number) => {
    seen(ms ?? 0);
    return real(f, ms);
  }) as (typeof globalThis)[K];
  try {
    await body();
  } finally {
    globalThis[name] = real;
  }
}

/**
 * Runs `body` and returns how many times it (or anything it awaited) called `setTimeout`.
 *
 * @example
 * ```ts
 * import { countTimers } from "./_timers.ts";
 * import assert from "node:assert/strict";
 * const armed = await countTimers(() => new Promise((resolve) => setTimeout(resolve, 1)));
 * assert.equal(armed, 1);
 * ```
 */
export async function countTimers(body: () => Promise<unknown>): Promise<number> {
  let armed = 0;
  await watching("setTimeout", () => armed++, body);
  return armed;
}

/**
 * Runs `body` and returns how many `setInterval` timers it started, by period (ms).
 *
 * @example
 * ```ts
 * import { countIntervals } from "./_timers.ts";
 * import assert from "node:assert/strict";
 * const started = await countIntervals(() => Promise.resolve(clearInterval(setInterval(() => {}, 5))));
 * assert.deepEqual([...started], [[5, 1]]);
 * ```
 */
export async function countIntervals(body: () => Promise<unknown>): Promise<Map<number, number>> {
  const started = new Map<number, number>();
  await watching("setInterval", (ms) => started.set(ms, (started.get(ms) ?? 0) + 1), body);
  return started;
}

/**
 * What `p` resolves to within `ms`, or `late` if it has not by then. The timer is cleared either
 * way; meanwhile it keeps the event loop turning, which a promise V8 settles itself (an
 * `Atomics.waitAsync`) does not.
 *
 * @example
 * ```ts
 * import { within } from "./_timers.ts";
 * import assert from "node:assert/strict";
 * assert.equal(await within(new Promise(() => {}), 10, "late"), "late");
 * assert.equal(await within(Promise.resolve(1), 10, "late"), 1);
 * ```
 */
export async function within<T, L>(p: Promise<T>, ms: number, late: L): Promise<T | L> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<L>((resolve) => timer = setTimeout(() => resolve(late), ms)),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
