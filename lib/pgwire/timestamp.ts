/**
 * PostgreSQL timestamps on the replication wire: microseconds since 2000-01-01 00:00:00 UTC.
 *
 * @module
 */

/** Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01). */
export const POSTGRES_EPOCH_OFFSET_US = 946_684_800_000_000n;

/**
 * The current time as a replication-protocol timestamp (`GetCurrentTimestamp`).
 *
 * @example
 * ```ts
 * import { pgTimestampNow } from "./timestamp.ts";
 * import assert from "node:assert/strict";
 * assert.ok(pgTimestampNow() > 0n);
 * ```
 */
export function pgTimestampNow(): bigint {
  return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)) -
    POSTGRES_EPOCH_OFFSET_US;
}

/**
 * Converts a replication-protocol timestamp to a `Date` (millisecond precision).
 *
 * @example
 * ```ts
 * import { pgTimestampToDate } from "./timestamp.ts";
 * import assert from "node:assert/strict";
 * assert.equal(pgTimestampToDate(0n).toISOString(), "2000-01-01T00:00:00.000Z");
 * ```
 */
export function pgTimestampToDate(ts: bigint): Date {
  return new Date(Number((ts + POSTGRES_EPOCH_OFFSET_US) / 1000n));
}
