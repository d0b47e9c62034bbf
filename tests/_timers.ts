/**
 * Counts the timers code arms, for tests of what a wake-up costs (tests never time anything).
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
