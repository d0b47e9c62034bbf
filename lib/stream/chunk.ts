/**
 * The unit that flows from the WAL source to the framer.
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
}

/** `MAX_SEND_SIZE` for 8 kB pages: at most this much WAL per XLogData message. */
export const MAX_SEND_SIZE = 16 * 8192;
