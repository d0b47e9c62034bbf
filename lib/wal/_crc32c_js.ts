/**
 * CRC-32C in JavaScript: the slicing table, shared with the WebAssembly loop, and the loop for
 * short pieces and for runtimes without WebAssembly.
 *
 * @module
 */

/** The reflected Castagnoli polynomial. */
const POLY = 0x82F63B78;

/** `T[k * 256 + b]`: the CRC of byte `b` followed by `k` zero bytes. */
export const CRC32C_TABLE: Int32Array = (() => {
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

/** `crc32cUpdate`'s signature: feeds `data[start, end)` into the running state `crc`. */
export type Crc32cUpdate = (crc: number, data: Uint8Array, start?: number, end?: number) => number;

/**
 * Makes `crc32cUpdate`: the JavaScript loop, which hands pieces of `longFrom` bytes or more to
 * `long` when given. The test sits inside the loop's own function rather than in a wrapper
 * around it, because the loop is too big for V8 to inline and a second call per WAL record slows
 * short records by some 8%.
 *
 * The loop is the same as the WebAssembly one. Its XORs are grouped so that the twelve lookups
 * not depending on the previous state are combined while the state's four are loaded; a plain
 * left-to-right chain makes every block wait for sixteen XORs.
 */
export function crc32cUpdater(
  long?: (crc: number, data: Uint8Array, start: number, end: number) => number,
  longFrom: number = 0,
): Crc32cUpdate {
  return (crc: number, data: Uint8Array, start: number = 0, end: number = data.length): number => {
    if (long !== undefined && end - start >= longFrom) return long(crc, data, start, end);
    let c = crc | 0;
    let i = start;
    const t = CRC32C_TABLE;
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
        c = (((t[0xB00 | (b & 0xFF)]! ^ t[0xA00 | ((b >>> 8) & 0xFF)]!) ^
          (t[0x900 | ((b >>> 16) & 0xFF)]! ^ t[0x800 | (b >>> 24)]!)) ^
          ((t[0x700 | (d & 0xFF)]! ^ t[0x600 | ((d >>> 8) & 0xFF)]!) ^
            (t[0x500 | ((d >>> 16) & 0xFF)]! ^ t[0x400 | (d >>> 24)]!)) ^
          ((t[0x300 | (e & 0xFF)]! ^ t[0x200 | ((e >>> 8) & 0xFF)]!) ^
            (t[0x100 | ((e >>> 16) & 0xFF)]! ^ t[e >>> 24]!))) ^
          ((t[0xF00 | (a & 0xFF)]! ^ t[0xE00 | ((a >>> 8) & 0xFF)]!) ^
            (t[0xD00 | ((a >>> 16) & 0xFF)]! ^ t[0xC00 | (a >>> 24)]!));
        i += 16;
      }
    }
    const last16 = end - 16;
    while (i <= last16) {
      const a = c ^ (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24));
      c = (((t[0xB00 | data[i + 4]!]! ^ t[0xA00 | data[i + 5]!]!) ^
        (t[0x900 | data[i + 6]!]! ^ t[0x800 | data[i + 7]!]!)) ^
        ((t[0x700 | data[i + 8]!]! ^ t[0x600 | data[i + 9]!]!) ^
          (t[0x500 | data[i + 10]!]! ^ t[0x400 | data[i + 11]!]!)) ^
        ((t[0x300 | data[i + 12]!]! ^ t[0x200 | data[i + 13]!]!) ^
          (t[0x100 | data[i + 14]!]! ^ t[data[i + 15]!]!))) ^
        ((t[0xF00 | (a & 0xFF)]! ^ t[0xE00 | ((a >>> 8) & 0xFF)]!) ^
          (t[0xD00 | ((a >>> 16) & 0xFF)]! ^ t[0xC00 | (a >>> 24)]!));
      i += 16;
    }
    // The tail of a record body averages 7.5 bytes; a byte at a time, each waits for the last.
    if (end - i >= 8) {
      const a = c ^ (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24));
      c = ((t[0x300 | data[i + 4]!]! ^ t[0x200 | data[i + 5]!]!) ^
        (t[0x100 | data[i + 6]!]! ^ t[data[i + 7]!]!)) ^
        ((t[0x700 | (a & 0xFF)]! ^ t[0x600 | ((a >>> 8) & 0xFF)]!) ^
          (t[0x500 | ((a >>> 16) & 0xFF)]! ^ t[0x400 | (a >>> 24)]!));
      i += 8;
    }
    if (end - i >= 4) {
      const a = c ^ (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24));
      c = (t[0x300 | (a & 0xFF)]! ^ t[0x200 | ((a >>> 8) & 0xFF)]!) ^
        (t[0x100 | ((a >>> 16) & 0xFF)]! ^ t[a >>> 24]!);
      i += 4;
    }
    while (i < end) c = t[(c ^ data[i++]!) & 0xFF]! ^ (c >>> 8);
    return c >>> 0;
  };
}
