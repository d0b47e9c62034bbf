/**
 * LZ4's C frame decoder, built to WebAssembly by `@foxglove/wasm-lz4`, driven here rather than
 * through the package's wrapper. The wrapper keeps one decompression context for the life of the
 * process, and LZ4F leaves a context that failed on a frame in the middle of that frame: every
 * later frame then fails too, so one damaged file would make every lz4 file after it "corrupt".
 * The build exports no way to reset or free a context, so a failure drops the whole instance and
 * the next frame gets a fresh one. Not part of the public API.
 *
 * @module
 */

/** The build's exports that are used. */
interface Lz4Module {
  HEAPU8: Uint8Array;
  _malloc(size: number): number;
  _free(pointer: number): void;
  _createDecompressionContext(): number;
  _decompressFrame(ctx: number, dst: number, dstSize: number, src: number, srcSize: number): number;
}

let instance: Promise<{ m: Lz4Module; ctx: number }> | undefined;

function lz4(): Promise<{ m: Lz4Module; ctx: number }> {
  return instance ??= (async () => {
    const factory = (await import("npm:@foxglove/wasm-lz4@1.0.2/dist/wasm-lz4.js")).default as () =>
      Promise<Lz4Module & { ready: Promise<unknown> }>;
    const m = await factory();
    await m.ready;
    return { m, ctx: m._createDecompressionContext() };
  })();
}

/**
 * Decodes the one whole LZ4 frame `src` (its extent already found), which may decode to at most
 * `dstSize` bytes. The bytes go into `into` when given (of at least the decoded size), otherwise
 * into a new buffer of exactly their size.
 *
 * @returns The decoded bytes, or `undefined` when the decoder refused the frame or it decodes to
 *   more than `dstSize` (or `into`'s) bytes.
 */
export async function decodeLz4FrameWasm(
  src: Uint8Array,
  dstSize: number,
  into?: Uint8Array,
): Promise<Uint8Array | undefined> {
  let current = lz4();
  let { m, ctx } = await current;
  // A decode that failed while this one waited has dropped the instance: take the new one.
  while (instance !== current) {
    current = lz4();
    ({ m, ctx } = await current);
  }
  const srcPtr = m._malloc(src.length);
  const dstPtr = m._malloc(dstSize);
  let n = -1;
  try {
    if (srcPtr === 0 || dstPtr === 0) return undefined;
    m.HEAPU8.set(src, srcPtr);
    n = m._decompressFrame(ctx, dstPtr, dstSize, srcPtr, src.length);
    if (n < 0 || (into !== undefined && n > into.length)) return undefined;
    // The heap is re-read: growing memory replaces it.
    const decoded = m.HEAPU8.subarray(dstPtr, dstPtr + n);
    if (into === undefined) return decoded.slice();
    into.set(decoded);
    return into.subarray(0, n);
  } finally {
    if (srcPtr !== 0) m._free(srcPtr);
    if (dstPtr !== 0) m._free(dstPtr);
    // The context is stuck in the frame it failed on: start the next one afresh.
    if (n < 0 && instance === current) instance = undefined;
  }
}
