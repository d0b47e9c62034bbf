/**
 * The unit that flows from the WAL source to the framer, and the buffers it is read into.
 *
 * The buffer-reuse rule, which the source, slicer, framer and sink each keep their part of:
 *
 * 1. The source reads a segment into a {@linkcode BufferPool} buffer, after
 *    {@linkcode FRAME_HEADROOM} free bytes, and marks the chunk `headroom`: its bytes are the
 *    buffer's only user.
 * 2. The slicer passes a chunk that is one whole message on as it is; every piece it cuts is a
 *    view without `headroom`, so no two messages ever share a buffer that is framed in place.
 * 3. The framer writes the message header into the headroom of a `headroom` chunk, so the message
 *    is the buffer from offset 0; anything else it copies into a fresh message.
 * 4. The sink gives a buffer back to the pool only after the socket has taken its message, and
 *    only for a message at offset 0; the pool ignores buffers that are not its own.
 *
 * So a buffer is read into again only when nothing refers to its bytes.
 *
 * @module
 */

import type { Lsn } from "../wal/lsn.ts";

/** Bytes of WAL at their LSN, with the send limit in force when they were read. */
export interface WalChunk {
  /** LSN of `bytes[0]`. */
  start: Lsn;
  /** The WAL bytes, exactly as in the origin's segment file. */
  bytes: Uint8Array;
  /** The valid, durable end of WAL when the chunk was read (XLogData's `walEnd`). */
  walEnd: Lsn;
  /**
   * Set when `bytes` is the sole user of its buffer and the {@linkcode FRAME_HEADROOM} bytes
   * before it are free: the framer then writes the message header in place instead of copying
   * (the buffer-reuse rule above).
   */
  headroom?: boolean;
}

/**
 * Bytes of message header before an XLogData payload: `d`, length, `w`, then dataStart, walEnd
 * and sendTime as Int64s. Read buffers keep this much free in front of the WAL.
 */
export const FRAME_HEADROOM: number = 1 + 4 + 1 + 8 + 8 + 8;

/**
 * Read buffers with room for a message header, reused once the socket has taken a message (the
 * buffer-reuse rule above), so a streaming sender allocates (and the collector frees) nothing per
 * message.
 *
 * @example
 * ```ts
 * import { BufferPool } from "./chunk.ts";
 * import assert from "node:assert/strict";
 * const pool = new BufferPool(1024, 2);
 * const a = pool.take();
 * pool.release(a);
 * assert.equal(pool.take(), a);
 * pool.release(new ArrayBuffer(1024)); // not ours: ignored
 * ```
 */
export class BufferPool {
  readonly #size: number;
  readonly #max: number;
  readonly #free: ArrayBuffer[] = [];
  readonly #mine = new WeakSet<ArrayBuffer>();

  /**
   * Creates an empty pool.
   *
   * @param size Bytes per buffer.
   * @param max Free buffers kept; more are left to the collector.
   */
  constructor(size: number, max = 8) {
    this.#size = size;
    this.#max = max;
  }

  /** A buffer of the pool's size, reused when one is free. */
  take(): ArrayBuffer {
    const b = this.#free.pop();
    if (b) return b;
    const fresh = new ArrayBuffer(this.#size);
    this.#mine.add(fresh);
    return fresh;
  }

  /** Gives a buffer back once nothing refers to its bytes; others' buffers are ignored. */
  release(buffer: ArrayBufferLike): void {
    if (!(buffer instanceof ArrayBuffer) || !this.#mine.has(buffer)) return;
    if (this.#free.length < this.#max && !this.#free.includes(buffer)) this.#free.push(buffer);
  }
}

/** `MAX_SEND_SIZE` for 8 kB pages: at most this much WAL per XLogData message. */
export const MAX_SEND_SIZE = 16 * 8192;
