/**
 * The last stage of a sender's pipeline: framed messages to the connection, the sender's
 * `sentLsn` advanced as the socket takes them, and read buffers given back to the pool.
 *
 * @module
 */

import type { Lsn } from "../wal/lsn.ts";
import type { Sender } from "../replication/registry.ts";
import { type BufferPool, FRAME_HEADROOM } from "./chunk.ts";
import { xlogDataEnd } from "./framer.ts";

/** The part of a sender's shared state the sink advances (`WalSnd.sentPtr` and its counters). */
export type SinkSender = Pick<Sender, "sentLsn" | "bytesSent" | "state">;

/** Options of {@linkcode WalSink}. */
export interface WalSinkOptions {
  /** Writes one message to the connection; settles once the socket has taken all of it. */
  write: (message: Uint8Array) => Promise<void>;
  /** The sender whose `sentLsn`, `bytesSent` and `state` follow what was written. */
  sender: SinkSender;
  /** The pool the source read into; its buffers come back here. */
  pool?: BufferPool | undefined;
  /** Where catch-up ends: a `catchup` sender that has sent this far is `streaming`. */
  catchupEnd: () => Lsn;
  /** Told after each message, for the idle keepalive's clock. */
  onSent?: () => void;
}

/**
 * Writes framed XLogData messages to the connection, one at a time so backpressure reaches the
 * source. Only what the socket has taken counts as sent, as `sentPtr` does; only then may a
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
  /** @param options Where to write, and whose progress to advance. */
  constructor(options: WalSinkOptions) {
    const { write, sender, pool, catchupEnd, onSent } = options;
    super({
      async write(message) {
        const end = xlogDataEnd(message);
        await write(message);
        // The kernel has the bytes. A message at offset 0 may be a pool buffer framed in place,
        // which nothing else refers to; the pool ignores any other buffer.
        if (message.byteOffset === 0) pool?.release(message.buffer);
        sender.sentLsn = end;
        sender.bytesSent += message.length - FRAME_HEADROOM;
        onSent?.();
        if (sender.state === "catchup" && end >= catchupEnd()) sender.state = "streaming";
      },
    });
  }
}
