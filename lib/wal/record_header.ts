/**
 * The WAL record header (`XLogRecord`) and the resource managers of PostgreSQL 15, as
 * `xlogrecord.h` and `rmgrlist.h` define them.
 *
 * @module
 */

import type { Lsn } from "./lsn.ts";

/** `SizeOfXLogRecord`: the fixed header in front of every record. */
export const SIZE_OF_XLOG_RECORD = 24;

/** Offset of `xl_crc` in the header; the CRC covers the header bytes before it. */
export const XLOG_RECORD_CRC_OFFSET = 20;

/** `RM_XLOG_ID`: the resource manager of XLOG_SWITCH, checkpoints and the like. */
export const RM_XLOG_ID = 0;

/** `XLOG_SWITCH`: the rest of the segment after this record is unused. */
export const XLOG_SWITCH = 0x40;

/** `XLR_INFO_MASK`: the low bits of `xl_info` that belong to xlog itself, not the rmgr. */
export const XLR_INFO_MASK = 0x0F;

/** `RM_MAX_BUILTIN_ID` of PostgreSQL 15: built-in rmgrs are 0 to 21. */
export const RM_MAX_BUILTIN_ID = 21;

/** `RM_MIN_CUSTOM_ID`: custom resource managers use 128 to 255. */
export const RM_MIN_CUSTOM_ID = 128;

/** `RM_MAX_CUSTOM_ID`. */
export const RM_MAX_CUSTOM_ID = 255;

/** Names of the built-in resource managers of PostgreSQL 15, by id, as `pg_waldump` prints them. */
export const RMGR_NAMES: readonly string[] = Object.freeze([
  "XLOG",
  "Transaction",
  "Storage",
  "CLOG",
  "Database",
  "Tablespace",
  "MultiXact",
  "RelMap",
  "Standby",
  "Heap2",
  "Heap",
  "Btree",
  "Hash",
  "Gin",
  "Gist",
  "Sequence",
  "SPGist",
  "BRIN",
  "CommitTs",
  "ReplicationOrigin",
  "Generic",
  "LogicalMessage",
]);

/**
 * Whether a record may carry this `xl_rmid` (`RmgrIdIsValid`): a built-in id or a custom one.
 *
 * @example
 * ```ts
 * import { isValidRmid } from "./record_header.ts";
 * import assert from "node:assert/strict";
 * assert.ok(isValidRmid(10));
 * assert.ok(!isValidRmid(22));
 * assert.ok(isValidRmid(128));
 * ```
 */
export function isValidRmid(rmid: number): boolean {
  return (rmid >= 0 && rmid <= RM_MAX_BUILTIN_ID) ||
    (rmid >= RM_MIN_CUSTOM_ID && rmid <= RM_MAX_CUSTOM_ID);
}

/**
 * The name `pg_waldump` prints for a resource manager: the built-in name, `custom%03d` for a
 * custom one, `unknown%d` otherwise.
 *
 * @example
 * ```ts
 * import { rmgrName } from "./record_header.ts";
 * import assert from "node:assert/strict";
 * assert.equal(rmgrName(10), "Heap");
 * assert.equal(rmgrName(130), "custom130");
 * ```
 */
export function rmgrName(rmid: number): string {
  const builtin = RMGR_NAMES[rmid];
  if (builtin !== undefined) return builtin;
  if (rmid >= RM_MIN_CUSTOM_ID && rmid <= RM_MAX_CUSTOM_ID) {
    return `custom${String(rmid).padStart(3, "0")}`;
  }
  return `unknown${rmid}`;
}

/**
 * Whether a record is an `XLOG_SWITCH` (rmid XLOG, rmgr info bits 0x40), which ends its segment.
 *
 * @example
 * ```ts
 * import { isXlogSwitch } from "./record_header.ts";
 * import assert from "node:assert/strict";
 * assert.ok(isXlogSwitch(0, 0x40));
 * assert.ok(!isXlogSwitch(0, 0x10));
 * ```
 */
export function isXlogSwitch(rmid: number, info: number): boolean {
  return rmid === RM_XLOG_ID && (info & ~XLR_INFO_MASK) === XLOG_SWITCH;
}

/** The fields of `XLogRecord`. */
export interface RecordHeader {
  /** `xl_tot_len`: the whole record, header included. */
  totLen: number;
  /** `xl_xid`: the transaction, 0 if none. */
  xid: number;
  /** `xl_prev`: the start of the previous record. */
  prev: Lsn;
  /** `xl_info`: XLR flags in the low 4 bits, rmgr-specific bits above. */
  info: number;
  /** `xl_rmid`: the resource manager. */
  rmid: number;
  /** `xl_crc`: CRC-32C of the body, then of the header up to this field. */
  crc: number;
}

/**
 * Reads the record header at `offset`. The caller guarantees 24 readable bytes.
 *
 * @example
 * ```ts
 * import { readRecordHeader } from "./record_header.ts";
 * import assert from "node:assert/strict";
 * const bytes = new Uint8Array(24);
 * const v = new DataView(bytes.buffer);
 * v.setUint32(0, 114, true);
 * v.setBigUint64(8, 0x1000028n, true);
 * bytes[17] = 10;
 * const h = readRecordHeader(bytes);
 * assert.equal(h.totLen, 114);
 * assert.equal(h.prev, 0x1000028n);
 * assert.equal(h.rmid, 10);
 * ```
 */
export function readRecordHeader(bytes: Uint8Array, offset = 0): RecordHeader {
  const v = new DataView(bytes.buffer, bytes.byteOffset + offset, SIZE_OF_XLOG_RECORD);
  return {
    totLen: v.getUint32(0, true),
    xid: v.getUint32(4, true),
    prev: v.getBigUint64(8, true),
    info: v.getUint8(16),
    rmid: v.getUint8(17),
    crc: v.getUint32(20, true),
  };
}
