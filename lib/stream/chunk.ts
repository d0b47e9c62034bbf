/**
 * The unit that flows from the WAL source to the framer, and the buffers it is read into.
 *
 * The buffer-reuse rule, which the source, slicer, framer and sink each keep their part of:
 *
 * 1. The source reads a segment into a {@linkcode BufferPool} buffer as a *run* of one or more
 *    message-sized chunks, each after {@linkcode FRAME_HEADROOM} free bytes of its own, and marks
 *    them `headroom`; all but the last of a run are marked `more`. The run is the buffer's only
 *    user. It goes down the pipeline as one chunk, its first, carrying the others in `rest`: one
 *    pass through each stage for all of them.
 * 2. The slicer passes a chunk that is one whole message on as it is, and a run whose chunks all
 *    are; it takes any other run apart into its chunks (`more` still marking all but the last).
 *    Every piece it cuts or joins is a fresh chunk without `headroom` or `more`.
 * 3. The framer writes each message header into the headroom of a `headroom` chunk, in place. The
 *    messages of one run then lie back to back, and it passes them on together, as one array that
 *    starts at offset 0 of the buffer only when it is the whole run. Anything else it copies: a
 *    run cut short is copied out, so no part of a run ever goes out at offset 0 alone.
 * 4. The sink gives a buffer back to the pool only after the socket has taken what was written,
 *    and only for an array at offset 0 (a whole run); the pool ignores buffers not its own.
 *
 * So a buffer is read into again only when nothing refers to its bytes.
 *
 * A run served from the shared `WalBlockCache` is the same, except that many senders send from
 * one buffer, which is never read into again: its chunks carry their `block`, the framer leaves a
 * header that another sender's write in flight may be sending, and the pool ignores the buffer.
 *
 * @module
 */

import type { Lsn } from "../wal/lsn.ts";
import type { WalBlock } from "./block_cache.ts";

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
  /**
   * Set by the source when the next chunk of the same run follows at once, in the same buffer
   * right after this one's bytes and the next header's room: the framer then sends them together
   * (the buffer-reuse rule above). The last chunk of a run never has it, so nothing waits for WAL
   * that was not read yet.
   */
  more?: boolean;
  /**
   * The other chunks of the run this chunk begins, in order, when the source sends the run down
   * the pipeline as one (the buffer-reuse rule above); each of them but the last is `more`.
   */
  rest?: WalChunk[];
  /** The shared block the chunk's buffer is, when it was served from the block cache. */
  block?: WalBlock;
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
  #allocated = 0;

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

  /** Bytes per buffer. */
  get size(): number {
    return this.#size;
  }

  /** Buffers the pool has allocated so far (each kept, or left to the collector). */
  get allocated(): number {
    return this.#allocated;
  }

  /** A buffer of the pool's size, reused when one is free. */
  take(): ArrayBuffer {
    const b = this.#free.pop();
    if (b) return b;
    const fresh = new ArrayBuffer(this.#size);
    this.#mine.add(fresh);
    this.#allocated++;
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
