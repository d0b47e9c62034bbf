/**
 * Frames WAL for the wire: XLogData (`w`) and primary keepalive (`k`) messages inside CopyData.
 *
 * @module
 */

import type { Lsn } from "../wal/lsn.ts";
import { pgTimestampNow } from "../pgwire/timestamp.ts";
import { FRAME_HEADROOM, type WalChunk } from "./chunk.ts";

/**
 * Frames one chunk as `CopyData(XLogData)`.
 *
 * @example
 * ```ts
 * import { frameXLogData } from "./framer.ts";
 * import assert from "node:assert/strict";
 * const m = frameXLogData({ start: 0x1000000n, bytes: new Uint8Array(8), walEnd: 0x1000008n });
 * assert.equal(m.length, 30 + 8);
 * assert.equal(String.fromCharCode(m[0]!, m[5]!), "dw");
 * ```
 */
export function frameXLogData(chunk: WalChunk, sendTime: bigint = pgTimestampNow()): Uint8Array {
  const n = chunk.bytes.length;
  const inPlace = chunk.headroom === true && chunk.bytes.byteOffset >= FRAME_HEADROOM;
  // With headroom the header goes in front of the payload in its own buffer: no 128 kB copy
  // (the buffer-reuse rule of chunk.ts).
  const out = inPlace
    ? new Uint8Array(
      chunk.bytes.buffer,
      chunk.bytes.byteOffset - FRAME_HEADROOM,
      FRAME_HEADROOM + n,
    )
    : new Uint8Array(FRAME_HEADROOM + n);
  writeHeader(out, new DataView(out.buffer, out.byteOffset, out.byteLength), 0, chunk, sendTime);
  if (!inPlace) out.set(chunk.bytes, FRAME_HEADROOM);
  return out;
}

/** Writes `chunk`'s XLogData header at `at` of `out` (`v` views the same bytes). */
function writeHeader(
  out: Uint8Array,
  v: DataView,
  at: number,
  chunk: WalChunk,
  sendTime: bigint,
): void {
  // A shared block's header that another sender's write may be sending right now stays as it is:
  // the same dataStart, with that sender's walEnd and sendTime of a moment ago.
  if (out[at] === 0x64 && chunk.block !== undefined && chunk.block.inFlight > 0) return;
  out[at] = 0x64; // 'd'
  v.setInt32(at + 1, 4 + 25 + chunk.bytes.length);
  out[at + 5] = 0x77; // 'w'
  v.setBigUint64(at + 6, chunk.start);
  v.setBigUint64(at + 14, chunk.walEnd);
  v.setBigInt64(at + 22, sendTime);
}

/**
 * The LSN just past the payload of a framed XLogData message, read back from its header; of the
 * last one, when several lie back to back.
 *
 * @example
 * ```ts
 * import { frameXLogData, xlogDataEnd } from "./framer.ts";
 * import assert from "node:assert/strict";
 * const m = frameXLogData({ start: 0x1000000n, bytes: new Uint8Array(8), walEnd: 0x1000008n });
 * assert.equal(xlogDataEnd(m), 0x1000008n);
 * ```
 */
export function xlogDataEnd(messages: Uint8Array): Lsn {
  return xlogDataExtent(messages).end;
}

/**
 * What one or more framed XLogData messages lying back to back carry: the LSN just past the last
 * payload, and the payload bytes of all of them.
 *
 * @example
 * ```ts
 * import { frameXLogData, xlogDataExtent } from "./framer.ts";
 * import { concatBytes } from "../_io.ts";
 * import assert from "node:assert/strict";
 * const a = frameXLogData({ start: 0n, bytes: new Uint8Array(8), walEnd: 12n });
 * const b = frameXLogData({ start: 8n, bytes: new Uint8Array(4), walEnd: 12n });
 * assert.deepEqual(xlogDataExtent(concatBytes(a, b)), { end: 12n, payloadBytes: 12 });
 * ```
 */
export function xlogDataExtent(messages: Uint8Array): { end: Lsn; payloadBytes: number } {
  const v = new DataView(messages.buffer, messages.byteOffset, messages.byteLength);
  let at = 0;
  let last = 0;
  let count = 0;
  while (at < messages.length) {
    last = at;
    at += 1 + v.getInt32(at + 1);
    count++;
  }
  return {
    end: v.getBigUint64(last + 6) + BigInt(messages.length - last - FRAME_HEADROOM),
    payloadBytes: messages.length - count * FRAME_HEADROOM,
  };
}

/**
 * Frames a primary keepalive: `CopyData('k' walEnd sendTime replyRequested)`, exactly 18 payload
 * bytes, as the walreceiver insists.
 *
 * @example
 * ```ts
 * import { keepaliveMessage } from "./framer.ts";
 * import assert from "node:assert/strict";
 * const m = keepaliveMessage(0x7000110n, true);
 * assert.equal(m.length, 1 + 4 + 18);
 * assert.equal(m[m.length - 1], 1);
 * ```
 */
export function keepaliveMessage(walEnd: Lsn, replyRequested: boolean): Uint8Array {
  const out = new Uint8Array(1 + 4 + 18);
  const v = new DataView(out.buffer);
  out[0] = 0x64;
  v.setInt32(1, 4 + 18);
  out[5] = 0x6b; // 'k'
  v.setBigUint64(6, walEnd);
  v.setBigInt64(14, pgTimestampNow());
  out[22] = replyRequested ? 1 : 0;
  return out;
}

/**
 * Turns WAL chunks into framed XLogData messages, one per chunk. The messages of a run (chunks
 * marked `more`, read into one buffer) come out together as one array, for one write; see the
 * buffer-reuse rule of `chunk.ts`.
 *
 * @example
 * ```ts
 * import { WalFramer } from "./framer.ts";
 * import assert from "node:assert/strict";
 * const chunk = { start: 0n, bytes: new Uint8Array(4), walEnd: 4n };
 * const out = await Array.fromAsync(ReadableStream.from([chunk]).pipeThrough(new WalFramer()));
 * assert.equal(out[0]!.length, 34);
 * ```
 */
export class WalFramer extends TransformStream<WalChunk, Uint8Array> {
  constructor() {
    // The messages of a run framed in place so far, awaiting the rest of the run.
    let held: Uint8Array | undefined;
    const step = (chunk: WalChunk, controller: TransformStreamDefaultController<Uint8Array>) => {
      const m = frameXLogData(chunk);
      const inPlace = m.buffer === chunk.bytes.buffer;
      if (held) {
        if (
          inPlace && m.buffer === held.buffer && m.byteOffset === held.byteOffset + held.length
        ) {
          held = new Uint8Array(held.buffer, held.byteOffset, held.length + m.length);
          if (!chunk.more) {
            controller.enqueue(held);
            held = undefined;
          }
          return;
        }
        // A run cut short (the slicer re-cut one of its chunks): what was held goes out as a
        // copy, since the rest of its buffer is still in flight.
        controller.enqueue(held.slice());
        held = undefined;
      }
      if (inPlace && chunk.more) held = m;
      else controller.enqueue(m);
    };
    super({
      transform(chunk, controller) {
        const rest = chunk.rest;
        if (!rest) return step(chunk, controller);
        // A run lying in one buffer, each chunk after its header's room: framed in place, it goes
        // out as one array. Anything else goes chunk by chunk.
        let ok = !held && chunk.headroom === true && chunk.bytes.byteOffset >= FRAME_HEADROOM;
        let next = chunk.bytes.byteOffset + chunk.bytes.length + FRAME_HEADROOM;
        for (let i = 0; ok && i < rest.length; i++) {
          const m = rest[i]!;
          ok = m.headroom === true && m.bytes.buffer === chunk.bytes.buffer &&
            m.bytes.byteOffset === next;
          next = m.bytes.byteOffset + m.bytes.length + FRAME_HEADROOM;
        }
        if (!ok) {
          const { rest: _, ...first } = chunk;
          step(first, controller);
          for (const m of rest) step(m, controller);
          return;
        }
        // One view of the run for all its headers.
        const from = chunk.bytes.byteOffset - FRAME_HEADROOM;
        const out = new Uint8Array(chunk.bytes.buffer, from, next - FRAME_HEADROOM - from);
        const v = new DataView(out.buffer, from, out.length);
        const sendTime = pgTimestampNow();
        writeHeader(out, v, 0, chunk, sendTime);
        let at = FRAME_HEADROOM + chunk.bytes.length;
        for (const m of rest) {
          writeHeader(out, v, at, m, sendTime);
          at += FRAME_HEADROOM + m.bytes.length;
        }
        controller.enqueue(out);
      },
      flush(controller) {
        if (held) controller.enqueue(held.slice());
      },
    });
  }
}
