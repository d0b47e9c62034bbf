/**
 * Hot standby feedback for the upstream: the oldest xmin among the downstream standbys' reports,
 * compared as PostgreSQL compares transaction IDs (modulo 2^32).
 *
 * @module
 */

/**
 * The oldest of a set of 32-bit transaction IDs (`TransactionIdPrecedes` order); 0 ("none") and
 * the special IDs 1 and 2 are skipped. `undefined` when none is left.
 *
 * @example
 * ```ts
 * import { oldestXmin } from "./feedback.ts";
 * import assert from "node:assert/strict";
 * assert.equal(oldestXmin([0, 900, 750]), 750);
 * // Across wraparound: 4294967000 precedes 100.
 * assert.equal(oldestXmin([100, 4294967000]), 4294967000);
 * assert.equal(oldestXmin([0, 0]), undefined);
 * ```
 */
export function oldestXmin(xmins: Iterable<number>): number | undefined {
  let oldest: number | undefined;
  for (const x of xmins) {
    if (x < 3) continue; // invalid, bootstrap and frozen IDs hold nothing back
    // (x - oldest) as int32 < 0 means x precedes oldest.
    if (oldest === undefined || ((x - oldest) | 0) < 0) oldest = x;
  }
  return oldest;
}
