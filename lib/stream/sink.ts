/**
 * The last stage of a sender's pipeline: framed messages to the connection, the sender's
 * `sentLsn` advanced as the socket takes them, and read buffers given back to the pool.
 *
 * @module
 */

import type { Lsn } from "../wal/lsn.ts";
import type { Sender } from "../replication/registry.ts";
import type { WalBlockCache } from "./block_cache.ts";
import type { BufferPool } from "./chunk.ts";
import { xlogDataExtent } from "./framer.ts";

/** The part of a sender's shared state the sink advances (`WalSnd.sentPtr` and its counters). */
export type SinkSender = Pick<Sender, "sentLsn" | "bytesSent" | "state">;

/** Options of {@linkcode WalSink}. */
export interface WalSinkOptions {
  /** Writes messages to the connection; settles once the socket has taken all of them. */
  write: (message: Uint8Array) => Promise<void>;
  /** The sender whose `sentLsn`, `bytesSent` and `state` follow what was written. */
  sender: SinkSender;
  /** The pool the source read into; its buffers come back here. */
  pool?: BufferPool | undefined;
  /** The shared block cache the source served from: writes of its blocks are counted there. */
  cache?: WalBlockCache | undefined;
  /** Where catch-up ends: a `catchup` sender that has sent this far is `streaming`. */
  catchupEnd: () => Lsn;
  /** Told after each message, for the idle keepalive's clock. */
  onSent?: () => void;
}

/**
 * Writes framed XLogData messages to the connection, one array (a message, or a run of them) at a
 * time so backpressure reaches the source. Only what the socket has taken counts as sent, as `sentPtr` does; only then may a
 * buffer framed in place be read into again (the buffer-reuse rule of `chunk.ts`).
 *
 * @example
 * ```ts
 * import { WalSink } from "./sink.ts";
 * import { WalFramer } from "./framer.ts";
 * import assert from "node:assert/strict";
 * const written: Uint8Array[] = [];
 * const sender = { sentLsn: 0n, bytesSent: 0, state: "catchup" as const };
 * const sink = new WalSink({
 *   write: (m) => Promise.resolve(void written.push(m)),
 *   sender,
 *   catchupEnd: () => 8n,
 * });
 * const chunk = { start: 0n, bytes: new Uint8Array(8), walEnd: 8n };
 * await ReadableStream.from([chunk]).pipeThrough(new WalFramer()).pipeTo(sink);
 * assert.equal(written.length, 1);
 * assert.deepEqual(sender, { sentLsn: 8n, bytesSent: 8, state: "streaming" });
 * ```
 */
export class WalSink extends WritableStream<Uint8Array> {
  /**
   * Moves a `catchup` sender that has sent up to where catch-up ends to `streaming`. Called after
   * each write, and by the pipeline's source when it has read all there is: a client that started
   * at the end is sent nothing, and is streaming all the same, as in PostgreSQL.
   */
  readonly caughtUp: () => void;

  /** @param options Where to write, and whose progress to advance. */
  constructor(options: WalSinkOptions) {
    const { write, sender, pool, cache, catchupEnd, onSent } = options;
    const caughtUp = () => {
      if (sender.state === "catchup" && sender.sentLsn >= catchupEnd()) sender.state = "streaming";
    };
    super({
      async write(messages) {
        const { end, payloadBytes } = xlogDataExtent(messages);
        // While the socket takes a shared block, no sender may rewrite the headers in it.
        const block = cache?.blockOf(messages.buffer);
        if (block) block.inFlight++;
        try {
          await write(messages);
        } finally {
          if (block) block.inFlight--;
        }
        // A whole block written: this sender is done with it.
        if (block && messages.byteOffset === 0 && messages.length === block.buffer.byteLength) {
          cache!.release(block);
        }
        // The kernel has the bytes. Messages at offset 0 may be a whole run framed in place in a
        // pool buffer, which nothing else refers to; the pool ignores any other buffer.
        if (messages.byteOffset === 0) pool?.release(messages.buffer);
        sender.sentLsn = end;
        sender.bytesSent += payloadBytes;
        onSent?.();
        caughtUp();
      },
    });
    this.caughtUp = caughtUp;
  }
}
