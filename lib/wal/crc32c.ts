/**
 * CRC-32C (Castagnoli), the checksum of WAL records (`pg_crc32c`).
 *
 * Reflected polynomial 0x82F63B78, initial value and final XOR 0xFFFFFFFF. Validating WAL means
 * checksumming every byte of it, so this is written for speed: slicing-by-16 over a 16 × 256
 * table, a byte at a time only for the tail.
 *
 * @module
 */

/** The reflected Castagnoli polynomial. */
const POLY = 0x82F63B78;

/** `T[k * 256 + b]`: the CRC of byte `b` followed by `k` zero bytes. */
const T: Int32Array = (() => {
  const t = new Int32Array(16 * 256);
  for (let b = 0; b < 256; b++) {
    let c = b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t[b] = c;
  }
  for (let b = 0; b < 256; b++) {
    let c = t[b]!;
    for (let k = 1; k < 16; k++) {
      c = t[c & 0xFF]! ^ (c >>> 8);
      t[k * 256 + b] = c;
    }
  }
  return t;
})();

/**
 * Feeds `data[start, end)` into a running CRC-32C state, without the initial and final XOR:
 * PostgreSQL's `COMP_CRC32C`. Start from `0xFFFFFFFF` (`INIT_CRC32C`) and XOR the result with
 * `0xFFFFFFFF` (`FIN_CRC32C`) when done; this is the form for checksums computed over pieces in
 * an order other than the bytes' own, like the WAL record CRC (body first, then header).
 *
 * @param crc The running state (unsigned or signed 32-bit; both work).
 * @param data The bytes.
 * @param start First index to feed (default 0).
 * @param end Index after the last byte to feed (default `data.length`).
 * @returns The new running state, as an unsigned 32-bit number.
 *
 * @example
 * ```ts
 * import { crc32cUpdate } from "./crc32c.ts";
 * import assert from "node:assert/strict";
 * const bytes = new TextEncoder().encode("123456789");
 * let state = 0xFFFFFFFF;
 * state = crc32cUpdate(state, bytes, 4);
 * state = crc32cUpdate(state, bytes, 0, 4);
 * // the CRC of "56789" followed by "1234"
 * assert.equal((state ^ 0xFFFFFFFF) >>> 0, 0x7AA12419);
 * ```
 */
export function crc32cUpdate(
  crc: number,
  data: Uint8Array,
  start: number = 0,
  end: number = data.length,
): number {
  let c = crc | 0;
  let i = start;
  const t = T;
  if (end - i >= 256) {
    // Four 32-bit loads per 16 bytes beat sixteen byte loads; below 256 bytes making the DataView
    // costs more than it saves.
    const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const lastWords = end - 16;
    while (i <= lastWords) {
      const a = c ^ v.getInt32(i, true);
      const b = v.getInt32(i + 4, true);
      const d = v.getInt32(i + 8, true);
      const e = v.getInt32(i + 12, true);
      c = t[0xF00 | (a & 0xFF)]! ^ t[0xE00 | ((a >>> 8) & 0xFF)]! ^
        t[0xD00 | ((a >>> 16) & 0xFF)]! ^ t[0xC00 | (a >>> 24)]! ^
        t[0xB00 | (b & 0xFF)]! ^ t[0xA00 | ((b >>> 8) & 0xFF)]! ^
        t[0x900 | ((b >>> 16) & 0xFF)]! ^ t[0x800 | (b >>> 24)]! ^
        t[0x700 | (d & 0xFF)]! ^ t[0x600 | ((d >>> 8) & 0xFF)]! ^
        t[0x500 | ((d >>> 16) & 0xFF)]! ^ t[0x400 | (d >>> 24)]! ^
        t[0x300 | (e & 0xFF)]! ^ t[0x200 | ((e >>> 8) & 0xFF)]! ^
        t[0x100 | ((e >>> 16) & 0xFF)]! ^ t[e >>> 24]!;
      i += 16;
    }
  }
  const last16 = end - 16;
  while (i <= last16) {
    const a = c ^ (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24));
    c = t[0xF00 | (a & 0xFF)]! ^ t[0xE00 | ((a >>> 8) & 0xFF)]! ^
      t[0xD00 | ((a >>> 16) & 0xFF)]! ^ t[0xC00 | (a >>> 24)]! ^
      t[0xB00 | data[i + 4]!]! ^ t[0xA00 | data[i + 5]!]! ^
      t[0x900 | data[i + 6]!]! ^ t[0x800 | data[i + 7]!]! ^
      t[0x700 | data[i + 8]!]! ^ t[0x600 | data[i + 9]!]! ^
      t[0x500 | data[i + 10]!]! ^ t[0x400 | data[i + 11]!]! ^
      t[0x300 | data[i + 12]!]! ^ t[0x200 | data[i + 13]!]! ^
      t[0x100 | data[i + 14]!]! ^ t[data[i + 15]!]!;
    i += 16;
  }
  while (i < end) c = t[(c ^ data[i++]!) & 0xFF]! ^ (c >>> 8);
  return c >>> 0;
}

/**
 * The CRC-32C of `data`. Pass the result of an earlier call as `crc` to continue it over more
 * bytes, so `crc32c(b, crc32c(a))` equals the CRC of `a` followed by `b`.
 *
 * @param data The bytes.
 * @param crc A finished CRC to continue from (default: start afresh).
 * @returns The CRC, an unsigned 32-bit number.
 *
 * @example
 * ```ts
 * import { crc32c } from "./crc32c.ts";
 * import assert from "node:assert/strict";
 * const enc = new TextEncoder();
 * assert.equal(crc32c(enc.encode("123456789")), 0xE3069283);
 * assert.equal(crc32c(enc.encode("6789"), crc32c(enc.encode("12345"))), 0xE3069283);
 * ```
 */
export function crc32c(data: Uint8Array, crc: number = 0): number {
  return (crc32cUpdate(~crc, data) ^ 0xFFFFFFFF) >>> 0;
}
