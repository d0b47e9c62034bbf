/**
 * Cuts WAL into XLogData-sized pieces the way `XLogSendPhysical` does.
 *
 * @module
 */

import type { WalChunk } from "./chunk.ts";

/**
 * Splits chunks into messages of at most `maxSendSize` bytes. While more WAL follows, a piece
 * ends on a page boundary, so a record is only ever split where a page ends; a piece ends mid-page
 * only at the valid end (`walEnd`). A chunk that stops mid-page before `walEnd` (a message
 * received from an upstream) keeps its partial page until the next chunk arrives. Pieces are
 * views of the input, except where a held partial page is joined to what follows.
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
    // A chunk that ends mid-page while more WAL is known to exist (walEnd beyond it) leaves its
    // last partial page here, to be sent with the next chunk: only the valid end may cut a page.
    let held: WalChunk | undefined;
    /** Whether `m` is one whole message: no longer than a message, ending on a page or the end. */
    const whole = (m: WalChunk): boolean => {
      const end = m.start + BigInt(m.bytes.length);
      return m.bytes.length <= maxSendSize && (end % block === 0n || end >= m.walEnd);
    };
    const step = (input: WalChunk, controller: TransformStreamDefaultController<WalChunk>) => {
      let chunk = input;
      if (held) {
        if (held.start + BigInt(held.bytes.length) === input.start) {
          const joined = new Uint8Array(held.bytes.length + input.bytes.length);
          joined.set(held.bytes);
          joined.set(input.bytes, held.bytes.length);
          chunk = { start: held.start, bytes: joined, walEnd: input.walEnd };
        } else {
          controller.enqueue(held);
        }
        held = undefined;
      }
      const end = chunk.start + BigInt(chunk.bytes.length);
      // More WAL is known to follow: the last partial page waits for the rest of its bytes.
      const limit = end % block !== 0n && end < chunk.walEnd ? end - end % block : end;
      let pos = chunk.start;
      while (pos < limit) {
        let cut = pos + max;
        if (cut >= limit) cut = limit;
        else cut -= cut % block;
        // A piece that is its whole chunk keeps the chunk's buffer to itself (and its headroom);
        // a cut piece is a view without headroom (the buffer-reuse rule of chunk.ts).
        controller.enqueue(
          pos === chunk.start && cut === end && !held ? chunk : slice(chunk, pos, cut),
        );
        pos = cut;
      }
      if (pos < end) held = slice(chunk, pos, end);
    };
    super({
      transform(input, controller) {
        const rest = input.rest;
        if (!rest) return step(input, controller);
        // A run of whole messages, each starting where the one before ends, passes as it is.
        let ok = !held && whole(input);
        let end = input.start + BigInt(input.bytes.length);
        for (let i = 0; ok && i < rest.length; i++) {
          const m = rest[i]!;
          ok = m.start === end && whole(m);
          end = m.start + BigInt(m.bytes.length);
        }
        if (ok) return controller.enqueue(input);
        const { rest: _, ...first } = input;
        step(first, controller);
        for (const m of rest) step(m, controller);
      },
      flush(controller) {
        if (held) controller.enqueue(held);
      },
    });
  }
}

function slice(chunk: WalChunk, from: bigint, to: bigint): WalChunk {
  const a = Number(from - chunk.start);
  return {
    start: from,
    bytes: chunk.bytes.subarray(a, a + Number(to - from)),
    walEnd: chunk.walEnd,
  };
}
