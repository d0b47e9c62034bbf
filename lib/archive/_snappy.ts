/**
 * Snappy's framing format (framing_format.txt in google/snappy), as python-snappy's
 * `stream_compress` writes it for Barman. The raw blocks inside are decoded by a function given
 * in. Not part of the public API.
 *
 * @module
 */

import { concatBytes } from "../_io.ts";

/**
 * Decodes a framed snappy stream: the stream identifier, then compressed (0x00) and
 * uncompressed (0x01) chunks; padding and skippable chunks are skipped. The masked CRC-32C of each
 * chunk is not checked: the WAL's own CRCs guard what is served. A chunk cut short ends the
 * stream.
 *
 * @param src The file's bytes.
 * @param uncompress Decodes one raw snappy block.
 */
export function decodeSnappyFramed(
  src: Uint8Array,
  uncompress: (block: Uint8Array) => Uint8Array,
): { data: Uint8Array; complete: boolean } {
  const parts: Uint8Array[] = [];
  let ip = 0;
  let complete = true;
  while (ip < src.length) {
    if (ip + 4 > src.length) {
      complete = false;
      break;
    }
    const type = src[ip]!;
    const len = src[ip + 1]! | (src[ip + 2]! << 8) | (src[ip + 3]! << 16);
    const body = ip + 4;
    if (body + len > src.length) {
      complete = false;
      break;
    }
    if (type === 0x00) parts.push(uncompress(src.subarray(body + 4, body + len)));
    else if (type === 0x01) parts.push(src.subarray(body + 4, body + len));
    else if (type >= 0x02 && type <= 0x7f) throw new Error(`reserved snappy chunk type ${type}`);
    ip = body + len;
  }
  return { data: concatBytes(...parts), complete };
}
