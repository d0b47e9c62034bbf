/**
 * Durations as the backup options take them: `90s`, `30min`, `24h`, `7d`, PostgreSQL's time units
 * (a bare number is seconds).
 *
 * @module
 */

const UNITS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  min: 60_000,
  m: 60_000,
  h: 3600_000,
  d: 86400_000,
};

/**
 * Parses a duration into milliseconds.
 *
 * @throws {Error} when the text is not a number with one of the units ms, s, min, h, d.
 *
 * @example
 * ```ts
 * import { parseDuration } from "./duration.ts";
 * import assert from "node:assert/strict";
 * assert.equal(parseDuration("24h"), 86_400_000);
 * assert.equal(parseDuration("90"), 90_000);
 * ```
 */
export function parseDuration(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const factor = UNITS[(m?.[2] || "s").toLowerCase()];
  if (!m || factor === undefined) {
    throw new Error(`invalid duration "${text}": expected a number with ms, s, min, h or d`);
  }
  return Math.round(Number(m[1]) * factor);
}
