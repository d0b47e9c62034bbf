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
  const v = new DataView(out.buffer, out.byteOffset, out.byteLength);
  out[0] = 0x64; // 'd'
  v.setInt32(1, 4 + 25 + n);
  out[5] = 0x77; // 'w'
  v.setBigUint64(6, chunk.start);
  v.setBigUint64(14, chunk.walEnd);
  v.setBigInt64(22, sendTime);
  if (!inPlace) out.set(chunk.bytes, FRAME_HEADROOM);
  return out;
}

/**
 * The LSN just past the payload of a framed XLogData message, read back from its header.
 *
 * @example
 * ```ts
 * import { frameXLogData, xlogDataEnd } from "./framer.ts";
 * import assert from "node:assert/strict";
 * const m = frameXLogData({ start: 0x1000000n, bytes: new Uint8Array(8), walEnd: 0x1000008n });
 * assert.equal(xlogDataEnd(m), 0x1000008n);
 * ```
 */
export function xlogDataEnd(message: Uint8Array): Lsn {
  const v = new DataView(message.buffer, message.byteOffset, message.byteLength);
  return v.getBigUint64(6) + BigInt(message.length - FRAME_HEADROOM);
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
 * Turns WAL chunks into framed XLogData messages, one per chunk.
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
    super({
      transform(chunk, controller) {
        controller.enqueue(frameXLogData(chunk));
      },
    });
  }
}
