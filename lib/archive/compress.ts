/**
 * Compressing WAL segments as the relay stores them under `--compress`: gzip and zstd with the
 * runtime's zlib, lz4 as one LZ4 frame (the format pg_receivewal writes) by
 * {@linkcode lz4CompressFrame}.
 *
 * @module
 */

import { gzipSync, zstdCompressSync } from "node:zlib";
import { lz4CompressFrame } from "./lz4_frame.ts";

/** A format the relay can store completed segments in. */
export type CompressFormat = "gzip" | "lz4" | "zstd";

/** The extension of each format's files, as pg_receivewal and WAL-G name them. */
export const COMPRESS_EXTENSIONS: Readonly<Record<CompressFormat, string>> = {
  gzip: "gz",
  lz4: "lz4",
  zstd: "zst",
};

/**
 * Whether `text` names a format {@linkcode compressBytes} writes.
 *
 * @example
 * ```ts
 * import { isCompressFormat } from "./compress.ts";
 * import assert from "node:assert/strict";
 * assert.equal(isCompressFormat("zstd"), true);
 * assert.equal(isCompressFormat("bzip2"), false);
 * ```
 */
export function isCompressFormat(text: string): text is CompressFormat {
  return text === "gzip" || text === "lz4" || text === "zstd";
}

/**
 * Compresses `plain` into one gzip member, one LZ4 frame or one Zstandard frame, each of which
 * the archive decoders (and `zcat`, `lz4 -d`, `zstd -d`) read back.
 *
 * @example
 * ```ts
 * import { compressBytes } from "./compress.ts";
 * import { decodeArchived } from "./codec.ts";
 * import assert from "node:assert/strict";
 * const plain = new TextEncoder().encode("WAL ".repeat(1000));
 * for (const format of ["gzip", "lz4", "zstd"] as const) {
 *   const packed = await compressBytes(plain, format);
 *   const back = await decodeArchived(packed, format, { file: "x" });
 *   assert.deepEqual(new Uint8Array(back.data), plain);
 * }
 * ```
 */
export async function compressBytes(
  plain: Uint8Array,
  format: CompressFormat,
): Promise<Uint8Array> {
  switch (format) {
    case "gzip":
      return asBytes(gzipSync(plain));
    case "zstd":
      return asBytes(zstdCompressSync(plain));
    case "lz4":
      return await lz4CompressFrame(plain);
  }
}

function asBytes(b: Uint8Array): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.length);
}
