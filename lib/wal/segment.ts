/**
 * WAL segment arithmetic and file names, as `xlog_internal.h` defines them.
 *
 * @module
 */

import type { Lsn } from "./lsn.ts";

/** A timeline ID (`TimeLineID`), 1 or more. */
export type TimelineId = number;

/** `XLOG_BLCKSZ` of every build we know of; the real value comes from the long page header. */
export const DEFAULT_BLOCK_SIZE = 8192;

/** Smallest and largest `wal_segment_size` PostgreSQL accepts. */
export const MIN_SEGMENT_SIZE = 1 << 20;
/** Largest `wal_segment_size` PostgreSQL accepts (1 GB). */
export const MAX_SEGMENT_SIZE = 1 << 30;

/**
 * Whether a segment size is one PostgreSQL accepts (`IsValidWalSegSize`): a power of two from
 * 1 MB to 1 GB.
 *
 * @example
 * ```ts
 * import { isValidSegmentSize } from "./segment.ts";
 * import assert from "node:assert/strict";
 * assert.ok(isValidSegmentSize(16 * 1024 * 1024));
 * assert.ok(!isValidSegmentSize(3 * 1024 * 1024));
 * ```
 */
export function isValidSegmentSize(size: number): boolean {
  return Number.isInteger(size) && size >= MIN_SEGMENT_SIZE && size <= MAX_SEGMENT_SIZE &&
    (size & (size - 1)) === 0;
}

/**
 * The segment number holding an LSN (`XLByteToSeg`).
 *
 * @example
 * ```ts
 * import { segmentOf } from "./segment.ts";
 * import assert from "node:assert/strict";
 * assert.equal(segmentOf(0x15020D0n, 16 * 1024 * 1024), 1n);
 * ```
 */
export function segmentOf(lsn: Lsn, segmentSize: number): bigint {
  return lsn / BigInt(segmentSize);
}

/**
 * The first LSN of a segment (`XLogSegNoOffsetToRecPtr` with offset 0).
 *
 * @example
 * ```ts
 * import { segmentStart } from "./segment.ts";
 * import assert from "node:assert/strict";
 * assert.equal(segmentStart(2n, 1024 * 1024), 0x200000n);
 * ```
 */
export function segmentStart(segno: bigint, segmentSize: number): Lsn {
  return segno * BigInt(segmentSize);
}

/**
 * The offset of an LSN inside its segment (`XLogSegmentOffset`).
 *
 * @example
 * ```ts
 * import { segmentOffset } from "./segment.ts";
 * import assert from "node:assert/strict";
 * assert.equal(segmentOffset(0x15020D0n, 16 * 1024 * 1024), 0x5020D0);
 * ```
 */
export function segmentOffset(lsn: Lsn, segmentSize: number): number {
  return Number(lsn % BigInt(segmentSize));
}

function hex8(n: bigint | number): string {
  return n.toString(16).toUpperCase().padStart(8, "0");
}

/**
 * The file name of a segment (`XLogFileName`): TLI, then the segment number split in two,
 * 24 upper-case hex digits.
 *
 * @example
 * ```ts
 * import { segmentFileName } from "./segment.ts";
 * import assert from "node:assert/strict";
 * assert.equal(segmentFileName(1, 1n, 16 * 1024 * 1024), "000000010000000000000001");
 * assert.equal(segmentFileName(2, 0x100n, 16 * 1024 * 1024), "000000020000000100000000");
 * ```
 */
export function segmentFileName(tli: TimelineId, segno: bigint, segmentSize: number): string {
  const perId = 0x1_0000_0000n / BigInt(segmentSize);
  return hex8(tli) + hex8(segno / perId) + hex8(segno % perId);
}

/** What a WAL directory entry's name says it is. */
export type WalFileName =
  | { kind: "segment"; tli: TimelineId; segno: bigint; partial: boolean }
  | { kind: "history"; tli: TimelineId };

const SEGMENT_NAME = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})(\.partial)?$/;
const HISTORY_NAME = /^([0-9A-F]{8})\.history$/;

/**
 * Recognises segment (`.partial` too) and timeline history file names; anything else is
 * `undefined`, so a directory may hold other files.
 *
 * @example
 * ```ts
 * import { parseWalFileName } from "./segment.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parseWalFileName("000000010000000000000002.partial", 16 * 1024 * 1024), {
 *   kind: "segment", tli: 1, segno: 2n, partial: true,
 * });
 * assert.deepEqual(parseWalFileName("00000002.history", 16 * 1024 * 1024), { kind: "history", tli: 2 });
 * ```
 */
export function parseWalFileName(name: string, segmentSize: number): WalFileName | undefined {
  const h = HISTORY_NAME.exec(name);
  if (h) {
    const tli = parseInt(h[1]!, 16);
    return tli >= 1 ? { kind: "history", tli } : undefined;
  }
  const m = SEGMENT_NAME.exec(name);
  if (!m) return undefined;
  const tli = parseInt(m[1]!, 16);
  const perId = 0x1_0000_0000n / BigInt(segmentSize);
  const lo = BigInt("0x" + m[3]);
  if (tli < 1 || lo >= perId) return undefined;
  return {
    kind: "segment",
    tli,
    segno: BigInt("0x" + m[2]) * perId + lo,
    partial: m[4] !== undefined,
  };
}

/**
 * The name of a timeline's history file (`TLHistoryFileName`).
 *
 * @example
 * ```ts
 * import { historyFileName } from "./segment.ts";
 * import assert from "node:assert/strict";
 * assert.equal(historyFileName(2), "00000002.history");
 * ```
 */
export function historyFileName(tli: TimelineId): string {
  return `${hex8(tli)}.history`;
}
