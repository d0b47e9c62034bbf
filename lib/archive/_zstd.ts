/**
 * Walking Zstandard frames (RFC 8878) without decoding them, to find where the first frame ends:
 * libzstd rejects bytes after a frame that are not another frame, and returns what it decoded of
 * a truncated one without saying so. Not part of the public API.
 *
 * @module
 */

/** Where the first frame of `src` ends, and whether all of it is there. */
export interface ZstdFrameExtent {
  /** Bytes of the frame present in `src`. */
  end: number;
  /** Whether the frame's last block (and checksum) is present. */
  complete: boolean;
}

const FCS_SIZE = [0, 2, 4, 8];
const DICT_SIZE = [0, 1, 2, 4];

/**
 * Measures the first Zstandard frame of `src` (which starts with its magic), skipping skippable
 * frames before it.
 *
 * @returns Its extent, or `null` when the header is malformed.
 */
export function zstdFrameExtent(src: Uint8Array): ZstdFrameExtent | null {
  const n = src.length;
  const u32 = (p: number): number =>
    (src[p]! | (src[p + 1]! << 8) | (src[p + 2]! << 16) | (src[p + 3]! << 24)) >>> 0;
  let ip = 0;
  while (ip + 8 <= n && (u32(ip) & 0xfffffff0) === 0x184d2a50) ip += 8 + u32(ip + 4);
  if (ip + 5 > n) return { end: n, complete: false };
  if (u32(ip) !== 0xfd2fb528) return null;
  const fhd = src[ip + 4]!;
  const singleSegment = (fhd & 0x20) !== 0;
  if (fhd & 0x08) return null;
  const fcsFlag = fhd >> 6;
  const fcs = fcsFlag === 0 ? (singleSegment ? 1 : 0) : FCS_SIZE[fcsFlag]!;
  ip += 5 + (singleSegment ? 0 : 1) + DICT_SIZE[fhd & 3]! + fcs;
  const checksum = (fhd & 0x04) !== 0;
  for (;;) {
    if (ip + 3 > n) return { end: n, complete: false };
    const bh = src[ip]! | (src[ip + 1]! << 8) | (src[ip + 2]! << 16);
    const type = (bh >> 1) & 3;
    if (type === 3) return null;
    ip += 3 + (type === 1 ? 1 : bh >>> 3);
    if (ip > n) return { end: n, complete: false };
    if (bh & 1) break;
  }
  if (checksum) ip += 4;
  return ip > n ? { end: n, complete: false } : { end: ip, complete: true };
}
