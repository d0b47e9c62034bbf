/**
 * Opens WAL from a directory as a `ReadableStream`, for embedding walrelay's reader.
 *
 * @module
 */

import type { Lsn } from "../wal/lsn.ts";
import type { TimelineId } from "../wal/segment.ts";
import { WalStore } from "../wal/store.ts";
import type { WalChunk } from "./chunk.ts";
import { openWalSource } from "./source.ts";

/** Options of {@linkcode openWalStream}. */
export interface OpenWalStreamOptions {
  /** The first LSN to read. */
  start: Lsn;
  /** Stop here (exclusive). Default: the directory's durable end when opened, unless `follow`. */
  end?: Lsn;
  /** Timeline to read; default the newest. A historic timeline ends at its switch point. */
  tli?: TimelineId;
  /** Keep waiting for new WAL instead of ending at the current end. */
  follow?: boolean;
  /** Ends a following stream. */
  signal?: AbortSignal;
}

/**
 * Reads the WAL range `[start, end)` of a directory of segment files as chunks of bytes at their
 * LSNs, exactly as a client of the relay would receive them.
 *
 * @example
 * ```ts
 * import { openWalStream } from "./open_wal_stream.ts";
 * import assert from "node:assert/strict";
 * const stream = await openWalStream("testdata/wal", { start: 0x600000n, end: 0x600100n, tli: 1 });
 * const chunks = await Array.fromAsync(stream);
 * assert.equal(chunks[0]!.start, 0x600000n);
 * assert.equal(chunks.reduce((n, c) => n + c.bytes.length, 0), 0x100);
 * ```
 */
export async function openWalStream(
  dir: string,
  options: OpenWalStreamOptions,
): Promise<ReadableStream<WalChunk>> {
  const store = await WalStore.open(dir);
  const tli = options.tli ?? store.timeline;
  const end = options.follow ? options.end : options.end ?? store.endOf(tli);
  return openWalSource(store, {
    tli,
    start: options.start,
    ...(options.signal ? { signal: options.signal } : {}),
    ...(end !== undefined ? { stopAt: () => end } : {}),
  });
}
