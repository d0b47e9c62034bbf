/**
 * Log sequence numbers: PostgreSQL's `XLogRecPtr`, a byte position in the WAL stream.
 *
 * LSNs are `bigint` throughout walrelay; never a pair of numbers, never a float.
 *
 * @module
 */

/** A WAL position (`XLogRecPtr`), an unsigned 64-bit byte offset. */
export type Lsn = bigint;

/** The invalid LSN, `InvalidXLogRecPtr`. */
export const INVALID_LSN: Lsn = 0n;

/** The largest representable LSN. */
export const MAX_LSN: Lsn = 0xFFFF_FFFF_FFFF_FFFFn;

const LSN_PATTERN = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

/**
 * Parses an LSN in PostgreSQL's text form `%X/%X` (either case, with or without zero padding of the
 * low part, as PostgreSQL 19 prints it).
 *
 * @param text The LSN text, e.g. `0/15020D0`.
 * @returns The LSN, or `undefined` when the text is not an LSN.
 *
 * @example
 * ```ts
 * import { parseLsn } from "./lsn.ts";
 * import assert from "node:assert/strict";
 * assert.equal(parseLsn("0/15020D0"), 0x15020D0n);
 * assert.equal(parseLsn("1/0"), 0x1_0000_0000n);
 * assert.equal(parseLsn("nonsense"), undefined);
 * ```
 */
export function parseLsn(text: string): Lsn | undefined {
  const m = LSN_PATTERN.exec(text);
  if (!m) return undefined;
  return (BigInt("0x" + m[1]) << 32n) | BigInt("0x" + m[2]);
}

/**
 * Formats an LSN as PostgreSQL 15 prints it: `%X/%X`, upper-case hex, no padding.
 *
 * @param lsn The LSN.
 * @returns The text form, e.g. `0/15020D0`.
 *
 * @example
 * ```ts
 * import { formatLsn } from "./lsn.ts";
 * import assert from "node:assert/strict";
 * assert.equal(formatLsn(0x15020D0n), "0/15020D0");
 * ```
 */
export function formatLsn(lsn: Lsn): string {
  const hi = (lsn >> 32n) & 0xFFFF_FFFFn;
  const lo = lsn & 0xFFFF_FFFFn;
  return `${hi.toString(16).toUpperCase()}/${lo.toString(16).toUpperCase()}`;
}
