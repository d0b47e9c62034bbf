/**
 * Counts the timers code arms, for tests of what a wake-up costs (tests never time anything).
 *
 * @module
 */

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
  const real = globalThis.setTimeout;
  let armed = 0;
  globalThis.setTimeout = ((...args: Parameters<typeof real>) => {
    armed++;
    return real(...args);
  }) as typeof real;
  try {
    await body();
  } finally {
    globalThis.setTimeout = real;
  }
  return armed;
}
