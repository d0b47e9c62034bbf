/**
 * Cuts WAL into XLogData-sized pieces the way `XLogSendPhysical` does.
 *
 * @module
 */

import type { WalChunk } from "./chunk.ts";

/**
 * Splits chunks into messages of at most `maxSendSize` bytes. While more WAL follows in the chunk,
 * a piece ends on a page boundary, so a record is only ever split where a page ends; the last
 * piece ends exactly where the chunk does (the valid end, or a page boundary chosen by the source).
 * Pieces are views of the input, never copies.
 *
 * @example
 * ```ts
 * import { WalSlicer } from "./slicer.ts";
 * import assert from "node:assert/strict";
 * const input = { start: 0x1000060n, bytes: new Uint8Array(200_000), walEnd: 0x1030DA0n };
 * const out = await Array.fromAsync(ReadableStream.from([input]).pipeThrough(new WalSlicer()));
 * assert.deepEqual(out.map((c) => c.bytes.length), [130976, 69024]);
 * assert.equal(out[0]!.start + BigInt(out[0]!.bytes.length), 0x1020000n);
 * ```
 */
export class WalSlicer extends TransformStream<WalChunk, WalChunk> {
  /**
   * Creates a slicer for a page size.
   *
   * @param blockSize `XLOG_BLCKSZ`, the page size cuts are aligned to.
   * @param maxSendSize The largest payload of one message (`MAX_SEND_SIZE`).
   */
  constructor(blockSize = 8192, maxSendSize = 16 * blockSize) {
    const block = BigInt(blockSize);
    const max = BigInt(maxSendSize);
    super({
      transform(chunk, controller) {
        const end = chunk.start + BigInt(chunk.bytes.length);
        let pos = chunk.start;
        while (pos < end) {
          let cut = pos + max;
          if (cut >= end) cut = end;
          else cut -= cut % block;
          const from = Number(pos - chunk.start);
          controller.enqueue({
            start: pos,
            bytes: chunk.bytes.subarray(from, from + Number(cut - pos)),
            walEnd: chunk.walEnd,
          });
          pos = cut;
        }
      },
    });
  }
}
