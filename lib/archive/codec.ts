/**
 * Turning an archived WAL file's bytes into plain WAL. gzip, zstd and brotli use the runtime's
 * zlib (`node:zlib`, native); lz4 uses LZ4's own C decoder built to WebAssembly, with a
 * TypeScript decoder for frames cut short; bzip2 and xz use WebAssembly builds of their reference
 * libraries; snappy a pure TypeScript package. The npm packages are loaded on first use, so a
 * relay that never meets such a file never loads them. `codecs_bench.ts` holds the measurements
 * behind these choices.
 *
 * @module
 */

import { brotliDecompressSync, zstdDecompressSync } from "node:zlib";
import { decodeGzipMember, GzipCorrupt } from "./_gzip.ts";
import { decodeLz4Frame } from "./_lz4.ts";
import { decodeLz4FrameWasm } from "./_lz4_wasm.ts";
import { decodeSnappyFramed } from "./_snappy.ts";
import { zstdFrameExtent } from "./_zstd.ts";
import { ArchiveFormatError } from "./errors.ts";
import { type ArchiveFormat, isEncrypted } from "./format.ts";

/** What {@linkcode decodeArchived} made of a file. */
export interface DecodedArchive {
  /** The plain bytes: all of them, or as many as arrived whole. Never a guess. */
  data: Uint8Array;
  /**
   * Whether the stream's end was read. A pg_receivewal `.partial` still being written is not
   * (0 bytes of gzip, a bare lz4 frame header); its `data` is then what precedes the cut.
   */
  complete: boolean;
}

/** Options of {@linkcode decodeArchived}. */
export interface DecodeOptions {
  /** The file's path, for errors. */
  file: string;
  /** The plain size expected (a segment's size), to allocate once; 16 MiB when not given. */
  sizeHint?: number;
}

/**
 * Whether files of a format can be decoded here. LZMA (WAL-G's `.lzma`, the raw LZMA "alone"
 * format) has no decoder: no maintained package reads it.
 *
 * @example
 * ```ts
 * import { hasDecoder } from "./codec.ts";
 * import assert from "node:assert/strict";
 * assert.equal(hasDecoder("zstd"), true);
 * assert.equal(hasDecoder("lzma"), false);
 * ```
 */
export function hasDecoder(format: ArchiveFormat): boolean {
  return format !== "lzma";
}

const DEFAULT_HINT = 16 * 1024 * 1024;
/** No WAL file decodes to more than the largest segment PostgreSQL allows. */
const MAX_PLAIN = 1 << 30;

/**
 * Decodes a whole archived file. Only the first gzip member, LZ4 frame or Zstandard frame is
 * read: what follows is the leftover of an earlier, longer write and is ignored. A stream cut
 * short yields what decoded before the cut, with `complete: false`; damage is an
 * {@linkcode ArchiveFormatError}, as is a format without a decoder here.
 *
 * @example
 * ```ts
 * import { decodeArchived } from "./codec.ts";
 * import { gzipSync } from "node:zlib";
 * import assert from "node:assert/strict";
 * const plain = new TextEncoder().encode("WAL ".repeat(1000));
 * const gz = new Uint8Array(gzipSync(plain));
 * const junk = new Uint8Array(100).fill(0xab);
 * const r = await decodeArchived(new Uint8Array([...gz, ...junk]), "gzip", { file: "x.gz" });
 * assert.equal(r.complete, true);
 * assert.deepEqual(r.data, plain);
 * const empty = await decodeArchived(new Uint8Array(0), "gzip", { file: "x.gz.partial" });
 * assert.deepEqual(empty, { data: new Uint8Array(0), complete: false });
 * ```
 */
export async function decodeArchived(
  src: Uint8Array,
  format: ArchiveFormat,
  options: DecodeOptions,
): Promise<DecodedArchive> {
  const { file } = options;
  const hint = options.sizeHint ?? DEFAULT_HINT;
  const corrupt = (e: unknown): ArchiveFormatError =>
    new ArchiveFormatError(file, format, "corrupt", e instanceof Error ? e.message : String(e));
  // Told apart before any decoder sees it, which would call it damaged.
  if (isEncrypted(src)) throw new ArchiveFormatError(file, format, "encrypted");
  switch (format) {
    case "plain":
      return { data: src, complete: true };
    case "gzip":
      try {
        return decodeGzipMember(src, hint);
      } catch (e) {
        if (e instanceof GzipCorrupt) throw corrupt(e);
        throw e;
      }
    case "lz4":
      return await decodeLz4(src, hint, corrupt);
    case "zstd": {
      const extent = zstdFrameExtent(src);
      if (extent === null) throw corrupt("malformed zstd frame header");
      if (extent.end === 0) return { data: new Uint8Array(0), complete: false };
      try {
        // libzstd returns what it decoded of a truncated frame without complaint; that is the
        // "as much as decodes" we want, and the extent says whether it was all.
        // One output chunk of the expected size: zlib's default 16 kB chunks, joined at the end,
        // cost a third of the time on a 16 MB segment.
        const out = zstdDecompressSync(src.subarray(0, extent.end), { chunkSize: hint });
        return { data: asBytes(out), complete: extent.complete };
      } catch (e) {
        throw corrupt(e);
      }
    }
    case "brotli":
      // Brotli has no framing to walk; the runtime's decoder stops at the stream's end and
      // ignores what follows. A cut stream is not reported as such, so callers check sizes.
      try {
        return { data: asBytes(brotliDecompressSync(src)), complete: true };
      } catch (e) {
        throw corrupt(e);
      }
    case "bzip2":
      return await decodeBzip2(src, hint, corrupt);
    case "xz":
      return await decodeXz(src, corrupt);
    case "snappy": {
      const { uncompress } = await import("npm:snappyjs@0.7.0");
      try {
        return decodeSnappyFramed(src, (block) => uncompress(block) as Uint8Array);
      } catch (e) {
        throw corrupt(e);
      }
    }
    case "lzma":
      throw new ArchiveFormatError(file, format, "unsupported");
  }
}

function asBytes(b: Uint8Array): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.length);
}

async function decodeLz4(
  src: Uint8Array,
  hint: number,
  corrupt: (e: unknown) => ArchiveFormatError,
): Promise<DecodedArchive> {
  // Walk the frame's block headers first: that finds the frame's end (what follows is not ours)
  // and whether it is whole. A whole frame goes to LZ4's C decoder, a cut one to ours, which
  // stops at the last whole block.
  const walk = decodeLz4Frame(src, hint, true);
  if (walk.stop === "corrupt") throw corrupt(walk.reason);
  if (walk.stop === "truncated") {
    const r = decodeLz4Frame(src, hint, false);
    if (r.stop === "corrupt") throw corrupt(r.reason);
    return { data: r.data, complete: false };
  }
  const data = await decodeLz4FrameWasm(src.subarray(0, walk.consumed), walk.bound);
  if (data === undefined) throw corrupt("Error during decompression");
  return { data, complete: true };
}

type Bzip2Decoder = Awaited<ReturnType<typeof loadBzip2>>;
async function loadBzip2() {
  return await (await import("npm:@foxglove/wasm-bz2@0.3.0")).default.init();
}
/**
 * The one bzip2 decoder instance. Each `init()` instantiates the WebAssembly module anew and adds
 * process-wide listeners, so it is made once; it holds no state between calls.
 */
let bzip2Instance: Promise<Bzip2Decoder> | undefined;
function bzip2Decoder(): Promise<Bzip2Decoder> {
  return bzip2Instance ??= loadBzip2();
}

async function decodeBzip2(
  src: Uint8Array,
  hint: number,
  corrupt: (e: unknown) => ArchiveFormatError,
): Promise<DecodedArchive> {
  const bz = await bzip2Decoder();
  // The decoder wants the output's size up front, and bzip2 does not record it: start from the
  // hint and grow.
  for (let size = Math.max(hint, 1 << 16);; size *= 4) {
    try {
      return { data: bz.decompress(src, size, { small: false }), complete: true };
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      if (msg.includes("BZ_OUTBUFF_FULL") && size < MAX_PLAIN) continue;
      // bzip2 decodes whole 900 kB blocks; a cut stream yields nothing we could vouch for.
      if (msg.includes("BZ_UNEXPECTED_EOF")) return { data: new Uint8Array(0), complete: false };
      throw corrupt(e);
    }
  }
}

async function decodeXz(
  src: Uint8Array,
  corrupt: (e: unknown) => ArchiveFormatError,
): Promise<DecodedArchive> {
  const { XzReadableStream } = (await import("npm:xz-decompress@0.2.3")).default;
  try {
    const stream = new XzReadableStream(new Blob([src as Uint8Array<ArrayBuffer>]).stream());
    return { data: await new Response(stream).bytes(), complete: true };
  } catch (e) {
    throw corrupt(e);
  }
}
