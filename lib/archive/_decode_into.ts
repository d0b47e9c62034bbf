/**
 * Decoding a whole archived segment straight into a buffer the caller owns: the decode workers'
 * shared, reused buffers. The general path (codec.ts) lets each decoder allocate its output, a
 * fresh 16 MiB whose first touch faults page by page, and then copies it; for the common case,
 * a complete gzip, lz4 or zstd file of exactly one segment, this writes the plain bytes once,
 * where they are served from. Anything else (a `.partial`, a size that does not match, bytes
 * after the stream, damage) answers `false`, and the caller takes the general path, which says
 * precisely what is wrong. Not part of the public API.
 *
 * @module
 */

import * as zlib from "node:zlib";
import { decodeLz4Frame } from "./_lz4.ts";
import { decodeLz4FrameWasm } from "./_lz4_wasm.ts";
import { zstdFrameExtent } from "./_zstd.ts";
import type { ArchiveFormat } from "./format.ts";

/** The runtime's decoders writing into a given buffer (Node's zlib handle, as Deno has it). */
interface ZlibHandle {
  writeSync(
    flush: number,
    input: Uint8Array,
    inOff: number,
    inLen: number,
    out: Uint8Array,
    outOff: number,
    outLen: number,
  ): unknown;
  close(): void;
  onerror?: (message: string, errno: number) => void;
}

/** ZSTD_e_end: the input is all there is. */
const ZSTD_E_END = 2;

/**
 * Decodes a complete archived segment of `format` into all of `out`. `true` only when the
 * stream is whole and decodes to exactly `out.length` bytes; `out` may be written either way.
 */
export async function decodeSegmentInto(
  src: Uint8Array,
  format: ArchiveFormat,
  out: Uint8Array,
): Promise<boolean> {
  try {
    if (format === "lz4") return await lz4Into(src, out);
    if (format === "zstd") return zstdInto(src, out);
    if (format === "gzip") return gzipInto(src, out);
  } catch {
    // Damage, or a runtime without these entry points: the general path tells.
  }
  return false;
}

/**
 * A frame at most `1 / LZ4_DIRECT_RATIO` of its segment, without checksums (as pg_receivewal
 * writes it), is decoded by the TypeScript decoder, straight into the output. Such frames (a
 * quiet server's segments of padding, long runs of repeated rows) are mostly long matches, which
 * `copyWithin` copies natively, while the WebAssembly decoder's output must be copied out of its
 * memory. Measured on 16 MiB segments in shared memory, TypeScript against WebAssembly: zeros
 * after 200 kB of WAL (112:1) 2.0 against 7.6 ms; repeated rows mixed with real WAL at 165:1 1.4
 * against 7.6, at 23:1 4.4 against 7.0, at 17:1 6.0 against 7.1, even at about 13:1, at 9:1 12.9
 * against 8.0; ordinary WAL (3.6:1) 25.4 against 11.8.
 */
export const LZ4_DIRECT_RATIO = 16;

async function lz4Into(src: Uint8Array, out: Uint8Array): Promise<boolean> {
  // The frame's extent first: what follows it is not ours, and a frame cut short is not whole.
  const walk = decodeLz4Frame(src, 0, true);
  if (walk.stop !== null || walk.bound < out.length) return false;
  // Checksums, when the frame has them, are LZ4's decoder's to check: WAL's CRCs do not cover
  // the padding after a segment switch.
  if (!walk.checksummed && walk.consumed * LZ4_DIRECT_RATIO <= out.length) {
    const r = decodeLz4Frame(src.subarray(0, walk.consumed), 0, false, out);
    return r.stop === null && r.data.length === out.length;
  }
  const decoded = await decodeLz4FrameWasm(src.subarray(0, walk.consumed), out.length, out);
  return decoded?.length === out.length;
}

function zstdInto(src: Uint8Array, out: Uint8Array): boolean {
  // The frame's extent, walked block by block: a frame cut short decodes without complaint.
  const extent = zstdFrameExtent(src);
  if (extent === null || !extent.complete) return false;
  const z = new (zlib as unknown as { ZstdDecompress: new () => ZlibStream }).ZstdDecompress();
  const h = z._handle;
  if (!h || typeof h.writeSync !== "function") return false;
  let failed = false;
  h.onerror = () => failed = true;
  try {
    h.writeSync(ZSTD_E_END, src, 0, extent.end, out, 0, out.length);
    const state = z._writeState;
    // Every byte of output written and every byte of the frame read: exactly one segment.
    return !failed && state !== undefined && state[0] === 0 && state[1] === 0;
  } finally {
    h.close();
  }
}

/** A zlib stream object of the runtime, with its handle and the state its writes leave. */
type ZlibStream = { _handle?: ZlibHandle; _writeState?: Uint32Array };

function gzipInto(src: Uint8Array, out: Uint8Array): boolean {
  const z = new (zlib as unknown as { Gunzip: new () => ZlibStream }).Gunzip();
  const h = z._handle;
  if (!h || typeof h.writeSync !== "function") return false;
  let failed = false;
  h.onerror = () => failed = true;
  try {
    h.writeSync(zlib.constants.Z_FINISH, src, 0, src.length, out, 0, out.length);
    const state = z._writeState;
    // Output full and input all read (bytes after the member are left to the general path)...
    if (failed || state === undefined || state[0] !== 0 || state[1] !== 0) return false;
    // ...but a full output does not say the trailer was read, whose CRC zlib checks: asked for
    // one more byte with no more input, a member cut short fails, a whole one yields nothing.
    const probe = new Uint8Array(1);
    h.writeSync(zlib.constants.Z_FINISH, src, src.length, 0, probe, 0, 1);
    // (The handle rewrote the state; the compiler narrowed it above.)
    const after = z._writeState!;
    return !failed && after[0] === 1 && after[1] === 0;
  } finally {
    h.close();
  }
}
