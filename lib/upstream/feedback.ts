/**
 * Hot standby feedback for the upstream: the oldest xmin and catalog_xmin among the downstream
 * standbys' reports, with their epochs, as one standby would report them.
 *
 * @module
 */

/** One standby's hot standby feedback, as it reported it (0 = no xmin). */
export interface StandbyFeedback {
  /** `xmin`; 0 when the standby holds nothing back. */
  xmin: number;
  /** The epoch of `xmin`. */
  xminEpoch: number;
  /** `catalog_xmin`; 0 when none. */
  catalogXmin: number;
  /** The epoch of `catalog_xmin`. */
  catalogXminEpoch: number;
}

/** What the relay forwards: the oldest of each, 0 for "none". */
export interface ForwardedFeedback {
  /** Oldest xmin. */
  xmin: number;
  /** Its epoch. */
  epoch: number;
  /** Oldest catalog_xmin. */
  catalogXmin: number;
  /** Its epoch. */
  catalogEpoch: number;
}

/**
 * The oldest xmin and catalog_xmin of a set of standbys, compared as full 64-bit transaction IDs
 * (epoch and xid), so the order holds across wraparound as the walsender's own epoch checks
 * assume. IDs below 3 (invalid, bootstrap, frozen) hold nothing back and are skipped.
 * `undefined` when no standby holds anything back.
 *
 * @example
 * ```ts
 * import { oldestFeedback } from "./feedback.ts";
 * import assert from "node:assert/strict";
 * const none = { xmin: 0, xminEpoch: 0, catalogXmin: 0, catalogXminEpoch: 0 };
 * assert.deepEqual(
 *   oldestFeedback([
 *     { ...none, xmin: 900, xminEpoch: 1 },
 *     // Epoch 0, xid 4294967000: older than epoch 1's 900.
 *     { ...none, xmin: 4294967000, catalogXmin: 700, catalogXminEpoch: 1 },
 *   ]),
 *   { xmin: 4294967000, epoch: 0, catalogXmin: 700, catalogEpoch: 1 },
 * );
 * assert.equal(oldestFeedback([none]), undefined);
 * ```
 */
export function oldestFeedback(
  standbys: Iterable<StandbyFeedback>,
): ForwardedFeedback | undefined {
  let xmin: bigint | undefined;
  let catalog: bigint | undefined;
  for (const s of standbys) {
    const x = fullXid(s.xmin, s.xminEpoch);
    if (x !== undefined && (xmin === undefined || x < xmin)) xmin = x;
    const c = fullXid(s.catalogXmin, s.catalogXminEpoch);
    if (c !== undefined && (catalog === undefined || c < catalog)) catalog = c;
  }
  if (xmin === undefined && catalog === undefined) return undefined;
  return {
    xmin: xmin === undefined ? 0 : Number(xmin & 0xffffffffn),
    epoch: xmin === undefined ? 0 : Number(xmin >> 32n),
    catalogXmin: catalog === undefined ? 0 : Number(catalog & 0xffffffffn),
    catalogEpoch: catalog === undefined ? 0 : Number(catalog >> 32n),
  };
}

function fullXid(xid: number, epoch: number): bigint | undefined {
  // Invalid, bootstrap and frozen IDs hold nothing back.
  if (xid < 3) return undefined;
  return (BigInt(epoch >>> 0) << 32n) | BigInt(xid >>> 0);
}
