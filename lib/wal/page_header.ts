/**
 * WAL page headers (`XLogPageHeaderData`, `XLogLongPageHeaderData`), in host (little-endian) byte
 * order as PostgreSQL writes them.
 *
 * @module
 */

import type { Lsn } from "./lsn.ts";

/** `XLP_FIRST_IS_CONTRECORD`: the page starts with the continuation of a record. */
export const XLP_FIRST_IS_CONTRECORD = 0x0001;
/** `XLP_LONG_HEADER`: the page carries the long header (first page of a segment). */
export const XLP_LONG_HEADER = 0x0002;
/** `XLP_BKP_REMOVABLE`: full-page images on the page may be removed. */
export const XLP_BKP_REMOVABLE = 0x0004;
/** `XLP_FIRST_IS_OVERWRITE_CONTRECORD`: a broken continuation was overwritten. */
export const XLP_FIRST_IS_OVERWRITE_CONTRECORD = 0x0008;
/** `XLP_ALL_FLAGS` of PostgreSQL 15 to 18. */
export const XLP_ALL_FLAGS = 0x000F;

/** `SizeOfXLogShortPHD`. */
export const SIZE_OF_SHORT_PAGE_HEADER = 24;
/** `SizeOfXLogLongPHD`. */
export const SIZE_OF_LONG_PAGE_HEADER = 40;

/** `XLOG_PAGE_MAGIC` of each PostgreSQL major version walrelay can serve. */
export const PAGE_MAGIC_BY_MAJOR: Readonly<Record<number, number>> = {
  15: 0xD110,
  16: 0xD113,
  17: 0xD116,
  18: 0xD118,
};

/** The oldest and newest majors of {@linkcode PAGE_MAGIC_BY_MAJOR}, for messages. */
const SUPPORTED_RANGE = (() => {
  const majors = Object.keys(PAGE_MAGIC_BY_MAJOR).map(Number);
  return `${Math.min(...majors)}–${Math.max(...majors)}`;
})();

/**
 * Why WAL with this page magic cannot be served, in the words walrelay logs and returns: the
 * magic in PostgreSQL's hex notation and the range of majors that can.
 *
 * @example
 * ```ts
 * import { unsupportedMagicMessage } from "./page_header.ts";
 * import assert from "node:assert/strict";
 * assert.equal(
 *   unsupportedMagicMessage(0xD11A),
 *   "WAL page magic 0xD11A is not from a PostgreSQL major walrelay supports (15–18)",
 * );
 * ```
 */
export function unsupportedMagicMessage(magic: number): string {
  const hex = magic.toString(16).toUpperCase().padStart(4, "0");
  return `WAL page magic 0x${hex} is not from a PostgreSQL major walrelay supports (${SUPPORTED_RANGE})`;
}

/** The fields of the short page header. */
export interface PageHeader {
  /** `xlp_magic`: the WAL format version. */
  magic: number;
  /** `xlp_info`: `XLP_*` flags. */
  info: number;
  /** `xlp_tli`: timeline of the first record on the page. */
  tli: number;
  /** `xlp_pageaddr`: the LSN of the page's first byte. */
  pageAddr: Lsn;
  /** `xlp_rem_len`: bytes of a continued record still to come. */
  remLen: number;
}

/** The long page header: the short one plus the cluster's identity. */
export interface LongPageHeader extends PageHeader {
  /** `xlp_sysid`: the database system identifier. */
  systemId: bigint;
  /** `xlp_seg_size`: `wal_segment_size` in bytes. */
  segmentSize: number;
  /** `xlp_xlog_blcksz`: `XLOG_BLCKSZ`. */
  blockSize: number;
}

/**
 * Reads the short page header at `offset`. The caller guarantees 24 readable bytes.
 *
 * @example
 * ```ts
 * import { readPageHeader } from "./page_header.ts";
 * import assert from "node:assert/strict";
 * const page = new Uint8Array(24);
 * new DataView(page.buffer).setUint16(0, 0xD110, true);
 * assert.equal(readPageHeader(page).magic, 0xD110);
 * ```
 */
export function readPageHeader(bytes: Uint8Array, offset = 0): PageHeader {
  const v = new DataView(bytes.buffer, bytes.byteOffset + offset, SIZE_OF_SHORT_PAGE_HEADER);
  return {
    magic: v.getUint16(0, true),
    info: v.getUint16(2, true),
    tli: v.getUint32(4, true),
    pageAddr: v.getBigUint64(8, true),
    remLen: v.getUint32(16, true),
  };
}

/**
 * Reads the long page header at `offset`, or `undefined` when the bytes are too short or the page
 * does not claim to carry one.
 *
 * @example
 * ```ts
 * import { readLongPageHeader, XLP_LONG_HEADER } from "./page_header.ts";
 * import assert from "node:assert/strict";
 * const page = new Uint8Array(40);
 * const v = new DataView(page.buffer);
 * v.setUint16(0, 0xD110, true);
 * v.setUint16(2, XLP_LONG_HEADER, true);
 * v.setBigUint64(24, 7711859646104656810n, true);
 * v.setUint32(32, 1 << 24, true);
 * v.setUint32(36, 8192, true);
 * assert.equal(readLongPageHeader(page)?.systemId, 7711859646104656810n);
 * ```
 */
export function readLongPageHeader(bytes: Uint8Array, offset = 0): LongPageHeader | undefined {
  if (bytes.length - offset < SIZE_OF_LONG_PAGE_HEADER) return undefined;
  const short = readPageHeader(bytes, offset);
  if ((short.info & XLP_LONG_HEADER) === 0) return undefined;
  const v = new DataView(bytes.buffer, bytes.byteOffset + offset, SIZE_OF_LONG_PAGE_HEADER);
  return {
    ...short,
    systemId: v.getBigUint64(24, true),
    segmentSize: v.getUint32(32, true),
    blockSize: v.getUint32(36, true),
  };
}

/**
 * The PostgreSQL major version whose WAL carries this page magic, or `undefined` for one walrelay
 * does not know.
 *
 * @example
 * ```ts
 * import { majorVersionOfMagic } from "./page_header.ts";
 * import assert from "node:assert/strict";
 * assert.equal(majorVersionOfMagic(0xD110), 15);
 * assert.equal(majorVersionOfMagic(0x1234), undefined);
 * ```
 */
export function majorVersionOfMagic(magic: number): number | undefined {
  for (const [major, m] of Object.entries(PAGE_MAGIC_BY_MAJOR)) {
    if (m === magic) return Number(major);
  }
  return undefined;
}
