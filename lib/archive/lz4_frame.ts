/**
 * Writing LZ4 frames, as `lz4`, pg_receivewal and PostgreSQL's `bbsink_lz4` write them and
 * liblz4 reads them: a frame header, independent blocks of at most 256 kB, an end mark. The
 * blocks come from the pure JavaScript `lz4js` block compressor (its fast mode only), loaded on
 * first use; each block is checked against the rule its compressor does not keep (below).
 *
 * @module
 */

/** The part of `lz4js` used here. */
interface Lz4js {
  compressBlock(
    src: Uint8Array,
    dst: Uint8Array,
    sIndex: number,
    sLength: number,
    hashTable: Uint32Array,
  ): number;
}

/** The largest block: 256 kB, block maximum size id 5. */
export const LZ4_BLOCK_SIZE = 256 * 1024;

/**
 * Magic number, then the frame descriptor: FLG version 01 with independent blocks and no
 * checksums (0x60), BD block maximum size id 5 (0x50), and the header checksum, the second byte
 * of xxh32(FLG BD, seed 0).
 */
const FRAME_HEADER = Uint8Array.of(0x04, 0x22, 0x4d, 0x18, 0x60, 0x50, 0xfb);

/** The end mark: a block size of zero. */
const END_MARK = new Uint8Array(4);

/** The high bit of a block size: the block is stored uncompressed. */
const UNCOMPRESSED = 0x80000000;

/**
 * `MFLIMIT`: the last match of a block must start at least this many bytes before the block's
 * end. liblz4's decoder enforces it on a block that fills its maximum size; lz4js does not keep
 * it (its last match may start 10 or 11 bytes before the end), so such a block is stored
 * uncompressed instead.
 */
const MFLIMIT = 12;

/** Room for a compressed block: `LZ4_compressBound` of the largest. */
const BLOCK_BOUND = LZ4_BLOCK_SIZE + Math.ceil(LZ4_BLOCK_SIZE / 255) + 16;

let lz4js: Promise<Lz4js> | undefined;

function loadLz4js(): Promise<Lz4js> {
  lz4js ??= import("npm:lz4js@0.2.0").then((m) => m.default as Lz4js);
  return lz4js;
}

/**
 * Where the last match of a compressed block starts, counted back from the block's end of
 * `size` plain bytes; `Infinity` when it has none, 0 when the block does not parse (so that it is
 * stored uncompressed).
 */
function lastMatchFromEnd(block: Uint8Array, size: number): number {
  let ip = 0;
  let op = 0;
  let last = -1;
  while (ip < block.length) {
    const token = block[ip++]!;
    let literals = token >> 4;
    if (literals === 15) {
      let b;
      do {
        b = block[ip++];
        if (b === undefined) return 0;
        literals += b;
      } while (b === 255);
    }
    ip += literals;
    op += literals;
    // The last sequence is literals only.
    if (ip >= block.length) break;
    ip += 2;
    let match = token & 15;
    if (match === 15) {
      let b;
      do {
        b = block[ip++];
        if (b === undefined) return 0;
        match += b;
      } while (b === 255);
    }
    last = op;
    op += match + 4;
  }
  return last < 0 ? Infinity : size - last;
}

/** Compresses blocks into frame bytes; one hash table, cleared per block (blocks are independent). */
class BlockWriter {
  readonly #lz4: Lz4js;
  readonly #table = new Uint32Array(1 << 16);

  constructor(lz4: Lz4js) {
    this.#lz4 = lz4;
  }

  /**
   * Writes block size and block for `src` (at most {@linkcode LZ4_BLOCK_SIZE} bytes) into `out`,
   * which has room for {@linkcode BLOCK_BOUND} + 4 bytes; returns the bytes written.
   */
  write(src: Uint8Array, out: Uint8Array): number {
    const n = src.length;
    this.#table.fill(0);
    const body = out.subarray(4);
    const c = this.#lz4.compressBlock(src, body, 0, n, this.#table);
    const view = new DataView(out.buffer, out.byteOffset, 4);
    if (c > 0 && c < n && lastMatchFromEnd(body.subarray(0, c), n) >= MFLIMIT) {
      view.setUint32(0, c, true);
      return 4 + c;
    }
    view.setUint32(0, (UNCOMPRESSED | n) >>> 0, true);
    body.set(src);
    return 4 + n;
  }
}

/**
 * Compresses `plain` into one LZ4 frame.
 *
 * @example
 * ```ts
 * import { lz4CompressFrame } from "./lz4_frame.ts";
 * import { decodeArchived } from "./codec.ts";
 * import assert from "node:assert/strict";
 * const plain = new TextEncoder().encode("WAL ".repeat(100_000));
 * const frame = await lz4CompressFrame(plain);
 * assert.ok(frame.length < plain.length / 10);
 * const back = await decodeArchived(frame, "lz4", { file: "x" });
 * assert.deepEqual(new Uint8Array(back.data), plain);
 * ```
 */
export async function lz4CompressFrame(plain: Uint8Array): Promise<Uint8Array> {
  const writer = new BlockWriter(await loadLz4js());
  const blocks = Math.ceil(plain.length / LZ4_BLOCK_SIZE);
  const out = new Uint8Array(
    FRAME_HEADER.length + blocks * (4 + BLOCK_BOUND) + END_MARK.length,
  );
  out.set(FRAME_HEADER);
  let pos = FRAME_HEADER.length;
  for (let off = 0; off < plain.length; off += LZ4_BLOCK_SIZE) {
    const src = plain.subarray(off, Math.min(plain.length, off + LZ4_BLOCK_SIZE));
    pos += writer.write(src, out.subarray(pos));
  }
  out.set(END_MARK, pos);
  return out.subarray(0, pos + END_MARK.length);
}

/**
 * Compresses a byte stream into one LZ4 frame, a block each time {@linkcode LZ4_BLOCK_SIZE}
 * bytes have come: what `bbsink_lz4` sends for `COMPRESSION 'lz4'`.
 *
 * @example
 * ```ts
 * import { Lz4CompressStream } from "./lz4_frame.ts";
 * import { decodeArchived } from "./codec.ts";
 * import assert from "node:assert/strict";
 * const chunk = new TextEncoder().encode("tar bytes ".repeat(50_000));
 * const frame = await new Response(
 *   ReadableStream.from([chunk, chunk]).pipeThrough(new Lz4CompressStream()),
 * ).bytes();
 * const back = await decodeArchived(frame, "lz4", { file: "x" });
 * assert.equal(back.data.length, 2 * chunk.length);
 * ```
 */
export class Lz4CompressStream extends TransformStream<Uint8Array, Uint8Array> {
  /** A stream that writes one frame. */
  constructor() {
    let writer: BlockWriter;
    const pending = new Uint8Array(LZ4_BLOCK_SIZE);
    let filled = 0;
    const emit = (
      src: Uint8Array,
      controller: TransformStreamDefaultController<Uint8Array>,
    ): void => {
      const out = new Uint8Array(4 + BLOCK_BOUND);
      controller.enqueue(out.subarray(0, writer.write(src, out)));
    };
    super({
      async start(controller): Promise<void> {
        writer = new BlockWriter(await loadLz4js());
        controller.enqueue(FRAME_HEADER.slice());
      },
      transform(chunk, controller): void {
        let off = 0;
        // Whole blocks straight from the chunk when nothing is pending; the rest is copied.
        while (off < chunk.length) {
          if (filled === 0 && chunk.length - off >= LZ4_BLOCK_SIZE) {
            emit(chunk.subarray(off, off + LZ4_BLOCK_SIZE), controller);
            off += LZ4_BLOCK_SIZE;
            continue;
          }
          const n = Math.min(LZ4_BLOCK_SIZE - filled, chunk.length - off);
          pending.set(chunk.subarray(off, off + n), filled);
          filled += n;
          off += n;
          if (filled === LZ4_BLOCK_SIZE) {
            emit(pending, controller);
            filled = 0;
          }
        }
      },
      flush(controller): void {
        if (filled > 0) emit(pending.subarray(0, filled), controller);
        controller.enqueue(END_MARK.slice());
      },
    });
  }
}
