/**
 * Decoding the first gzip member of a file (RFC 1952) with the runtime's zlib. Not part of the
 * public API.
 *
 * @module
 */

import { constants, crc32, gunzipSync, inflateRawSync, type ZlibOptions } from "node:zlib";

/** What {@linkcode decodeGzipMember} got: the plain bytes, and whether the member was whole. */
export interface GzipResult {
  /** The decoded bytes. */
  data: Uint8Array;
  /** Whether the member's trailer was present and matched. */
  complete: boolean;
}

/** Thrown with the decoder's words when a member does not decode. */
export class GzipCorrupt extends Error {}

/**
 * Decodes the first gzip member of `src`. The common case, one whole member and nothing after,
 * goes to `gunzipSync` in one call; zlib checks the CRC itself. A file that is more than that (a
 * pg_receivewal `.partial` rewritten from offset 0 over a longer one keeps the old tail) or less
 * (cut short) is inflated from after the header, with a sync flush so a cut stream yields what
 * arrived, and the trailer is checked here.
 */
export function decodeGzipMember(src: Uint8Array, sizeHint = 16 << 20): GzipResult {
  try {
    // One output chunk of the expected size, rather than zlib's 16 kB chunks joined at the end.
    return { data: gunzipSync(src, { chunkSize: Math.max(sizeHint, 1 << 16) }), complete: true };
  } catch {
    // Trailing bytes, a truncated member or damage: sorted out below.
  }
  const start = headerLength(src);
  if (start < 0) return { data: new Uint8Array(0), complete: false };
  let out: { buffer: Uint8Array; engine: { bytesWritten: number } };
  try {
    // With `info`, Node's zlib also returns the engine, whose bytesWritten is the input the
    // stream took: where the trailer starts. The typings know only the plain form.
    const opts = { info: true, finishFlush: constants.Z_SYNC_FLUSH } as ZlibOptions;
    out = inflateRawSync(src.subarray(start), opts) as unknown as typeof out;
  } catch (e) {
    throw new GzipCorrupt(e instanceof Error ? e.message : String(e));
  }
  const data = new Uint8Array(out.buffer.buffer, out.buffer.byteOffset, out.buffer.length);
  const end = start + out.engine.bytesWritten;
  if (end + 8 > src.length) return { data, complete: false };
  const dv = new DataView(src.buffer, src.byteOffset + end, 8);
  if (dv.getUint32(4, true) !== data.length >>> 0 || dv.getUint32(0, true) !== crc32(data) >>> 0) {
    // A stream that ended where deflate says it ends but whose trailer disagrees was not
    // truncated: it is damaged.
    throw new GzipCorrupt("CRC or length in the gzip trailer does not match");
  }
  return { data, complete: true };
}

/** The gzip header's length, or -1 when `src` ends inside it. */
function headerLength(src: Uint8Array): number {
  if (src.length < 10) return -1;
  if (src[0] !== 0x1f || src[1] !== 0x8b || src[2] !== 8) {
    throw new GzipCorrupt("not a gzip header");
  }
  const flg = src[3]!;
  let p = 10;
  if (flg & 0x04) {
    if (p + 2 > src.length) return -1;
    p += 2 + (src[p]! | (src[p + 1]! << 8));
  }
  for (const bit of [0x08, 0x10]) {
    if (flg & bit) {
      while (p < src.length && src[p] !== 0) p++;
      p++;
    }
  }
  if (flg & 0x02) p += 2;
  return p > src.length ? -1 : p;
}
