/**
 * The WAL source: a `ReadableStream` of WAL read from segment files, from a start LSN up to the
 * valid, durable end, waiting on the store's latch when caught up.
 *
 * @module
 */

import { readFull, readFullSync } from "../_io.ts";
import { WalSegmentRemovedError, WalSystemMismatchError } from "../wal/errors.ts";
import type { Lsn } from "../wal/lsn.ts";
import { segmentOf, segmentOffset, segmentStart, type TimelineId } from "../wal/segment.ts";
import type { SegmentFile, WalStore } from "../wal/store.ts";
import type { SegmentHandle } from "../wal/segment_handle.ts";
import { type SegmentCheck, WalSegmentDamagedError } from "../wal/segment_validation.ts";
import { type BufferPool, FRAME_HEADROOM, MAX_SEND_SIZE, type WalChunk } from "./chunk.ts";
import type { WalBlockCache, WalBlockReader } from "./block_cache.ts";
import { readLongPageHeader, SIZE_OF_LONG_PAGE_HEADER } from "../wal/page_header.ts";

/**
 * A sender ahead of others in the block cache waits at most this many times this long before
 * each read: the group keeps together, and a slow client costs the others at most 2 ms a run.
 */
const HOLD_BACK_WAITS = 2;
const HOLD_BACK_MS = 1;

/** Options of {@linkcode openWalSource}. */
export interface WalSourceOptions {
  /** The timeline to stream; a historic one ends at its switch point. */
  tli: TimelineId;
  /** The first LSN to send. */
  start: Lsn;
  /** Stops waiting and ends the stream. */
  signal?: AbortSignal;
  /** Bytes per file read; rounded to whole pages. Default `MAX_SEND_SIZE`, one message a read. */
  readSize?: number;
  /** Told where each chunk came from: the store's in-memory tail, or a segment file. */
  onRead?: (source: "memory" | "disk") => void;
  /**
   * Where file reads get their buffers; the sink gives each back once the socket has taken its
   * messages (the buffer-reuse rule of `chunk.ts`). A buffer with room for several messages is
   * filled with as many as are there to read, sent in one write. Without a pool, every read
   * allocates.
   */
  pool?: BufferPool;
  /**
   * Runs of complete segments shared with other senders: while two or more senders have joined
   * it, a whole run at a run-aligned offset is read once into the cache and sent from there by
   * every sender that reaches it (the run's size is the pool buffer's). Needs `pool`.
   */
  cache?: WalBlockCache | undefined;
  /**
   * This sender's place among the cache's readers ({@linkcode WalBlockCache.join}): the source
   * keeps its position at the next LSN to read, so the cache keeps the blocks it will reach.
   */
  reader?: WalBlockReader | undefined;
  /** The periodic wake of a caught-up source, in milliseconds. Default 1000. */
  wakeMs?: number;
  /** Called each time the source has read all there is and waits for more. */
  onCaughtUp?: () => void;
  /**
   * Ends the stream once this LSN has been read, even on the newest timeline (used by shutdown,
   * which sends everything up to the end and then stops).
   */
  stopAt?: () => Lsn | undefined;
  /**
   * How far the consumer has delivered what was read (the sender's `sentLsn`). Before a damaged
   * segment fails the stream, the source waits until the valid WAL before the damage is out:
   * an error tears down the pipeline with whatever it still holds.
   */
  sent?: () => Lsn;
}

/**
 * Opens WAL from a store as a stream of chunks. The stream ends at the switch point of a historic
 * timeline (the caller then runs the end-of-timeline exchange), when `stopAt` is reached, or when the
 * signal aborts. A segment that is missing, or removed while it was read, errors the stream with
 * {@linkcode WalSegmentRemovedError}; a segment of another cluster with
 * {@linkcode WalSystemMismatchError}. Nothing read from a file that vanished is sent.
 *
 * A complete segment is validated (`WalStore.checkSegment`) before its first byte is read for
 * sending, and the next one ahead of need while it streams. A damaged segment is sent up to the
 * end of its last valid record; then the stream errors with {@linkcode WalSegmentDamagedError}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { WalStore } from "../wal/store.ts";
 * import { openWalSource } from "./source.ts";
 * const store = await WalStore.open("testdata/wal");
 * // Timeline 1 is historic: its stream ends by itself at the switch point.
 * let end = 0n;
 * for await (const chunk of openWalSource(store, { tli: 1, start: 0x600000n })) {
 *   end = chunk.start + BigInt(chunk.bytes.length);
 * }
 * assert.equal(end, store.endOf(1));
 * ```
 */
export function openWalSource(
  store: WalStore,
  options: WalSourceOptions,
): ReadableStream<WalChunk> {
  const { tli, signal } = options;
  const segSize = store.identity.segmentSize;
  const block = BigInt(store.identity.blockSize);
  const readSize = BigInt(Math.max(options.readSize ?? MAX_SEND_SIZE, store.identity.blockSize));
  const pool = options.pool;
  const cache = pool ? options.cache : undefined;
  const reader = cache ? options.reader : undefined;
  // A run fills a pool buffer: this many messages of `readSize` with their header room.
  const slot = FRAME_HEADROOM + Number(readSize);
  const runMessages = pool ? Math.max(1, Math.floor(pool.size / slot)) : 1;
  const runBytes = runMessages * Number(readSize);
  const wakeMs = options.wakeMs ?? 1000;
  let sent = options.start;
  if (reader) reader.position = sent;
  let file: SegmentHandle | undefined;
  let current: SegmentFile | undefined;
  // Where the next read of `file` starts without a seek; reads are mostly sequential.
  let filePos = -1;
  // The open file's identity (device, inode, size, mtime), keying its blocks in the cache.
  let fileKey: string | undefined;
  // The validation of the segment being read (undefined while it is not complete), and those
  // started ahead for the next segments: settled before the stream ends, so no read outlives
  // them. Two ahead: the validation worker then has the next one queued when it finishes one,
  // instead of waiting for this sender to reach a segment boundary to ask.
  let check: { segno: bigint; result: SegmentCheck | undefined } | undefined;
  const ahead = new Set<Promise<unknown>>();
  let settling = false;
  // Waits for the senders behind since the last read (WalBlockCache.holdBack).
  let heldBack = 0;

  // Joined to the latch from the first wait until the stream ends: its timer then stays armed
  // across advances rather than being set and cleared for each.
  let member: Disposable | undefined;

  /** The stream ends: it leaves the latch, and the validations under way settle. */
  const endStream = async (): Promise<void> => {
    member?.[Symbol.dispose]();
    member = undefined;
    settling = true;
    const a = [...ahead];
    ahead.clear();
    await Promise.all(a);
  };

  /**
   * Validates segment `k` and, once it proved whole, the `more` after it (a result already
   * remembered, or under way, costs a stat).
   */
  const validateAhead = async (k: bigint, more: number): Promise<void> => {
    if (settling) return;
    const next = store.checkSegment(tli, k)?.catch(() => undefined);
    // Not complete yet: asked again from a later segment.
    if (!next) return;
    const result = await next;
    if (more > 0 && result && !result.error) await validateAhead(k + 1n, more - 1);
  };

  const checkOf = async (segno: bigint): Promise<SegmentCheck | undefined> => {
    if (check?.segno === segno && check.result) return check.result;
    let result: SegmentCheck | undefined;
    try {
      result = await store.checkSegment(tli, segno);
    } catch (e) {
      // Gone under us: the read that follows reports it as removed.
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    // Not complete yet: ask again on the next read, which may find it complete.
    check = { segno, result };
    if (result && !result.error) {
      // Validate the next segments while this one streams.
      const next = validateAhead(segno + 1n, 1);
      ahead.add(next);
      next.then(() => ahead.delete(next));
    }
    return result;
  };

  /** Waits until everything read before `lsn` has been delivered, or the signal aborts. */
  const delivered = async (lsn: Lsn): Promise<void> => {
    if (!options.sent) return;
    while (options.sent() < lsn && !signal?.aborted) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  };

  const closeFile = () => {
    try {
      file?.close();
    } catch { /* already closed */ }
    file = undefined;
    current = undefined;
    filePos = -1;
    fileKey = undefined;
  };

  return new ReadableStream<WalChunk>({
    async pull(controller) {
      try {
        while (true) {
          if (signal?.aborted) {
            closeFile();
            await endStream();
            controller.close();
            return;
          }
          const historic = tli !== store.timeline;
          let end = store.endOf(tli);
          const stop = options.stopAt?.();
          if (stop !== undefined && stop < end) end = stop;
          if (sent >= end) {
            if (historic || stop !== undefined) {
              closeFile();
              await endStream();
              controller.close();
              return;
            }
            options.onCaughtUp?.();
            // Not after the stream ended (a wait under way when it was cancelled).
            if (!settling) member ??= store.latch.join();
            await store.latch.wait(wakeMs, signal);
            continue;
          }
          const segno = segmentOf(sent, segSize);
          const segEnd = segmentStart(segno + 1n, segSize);
          let until = (sent + readSize) - (sent + readSize) % block;
          if (until > segEnd) until = segEnd;
          if (until > end) until = end;
          // Read from disk only up to where the in-memory tail takes over.
          const memStart = store.memoryStart(tli);
          if (memStart !== undefined && memStart > sent && memStart < until) until = memStart;
          // The hot tail comes from memory (relay mode); older WAL from the segment files.
          const fromMemory = store.readMemory(tli, sent, Number(until - sent));
          if (fromMemory) {
            options.onRead?.("memory");
            controller.enqueue({ start: sent, bytes: fromMemory, walEnd: end });
            sent += BigInt(fromMemory.length);
            if (reader) reader.position = sent;
            return;
          }
          // A run of messages read at once may go on past `until`, as far as one read could.
          let limit = segEnd < end ? segEnd : end;
          if (memStart !== undefined && memStart > sent && memStart < limit) limit = memStart;
          // Nothing of a complete segment goes out before it is validated; a damaged one only up
          // to its last valid record, and that chunk ends the valid WAL for this client.
          // (The segment open and its check already known are the common case: no await.)
          const known = store.segmentFile(tli, segno);
          const wanted = known && current?.name === known.name
            ? known
            : await openSegment(store, tli, segno);
          let validEnd: Lsn | undefined;
          const checked = check?.segno === segno && check.result
            ? check.result
            : await checkOf(segno);
          if (checked?.error && checked.validEnd < segEnd) {
            if (sent >= checked.validEnd) {
              await delivered(sent);
              if (signal?.aborted) continue;
              throw new WalSegmentDamagedError(
                checked.errorFile ?? checked.fileName,
                checked.error,
                checked.validEnd,
              );
            }
            validEnd = checked.validEnd;
            if (until > validEnd) until = validEnd;
            if (limit > validEnd) limit = validEnd;
          }
          // Only the valid WAL of a complete segment is the same for every sender.
          const shareable = !historic && validEnd === undefined && !wanted.partial &&
            segEnd <= end;
          // Senders pulling the same WAL share a read only while they stay within the cache of
          // each other: a sender that ran ahead lets those behind close up, a little at a time.
          if (shareable && reader && heldBack < HOLD_BACK_WAITS && cache?.holdBack(reader)) {
            heldBack++;
            await new Promise((resolve) => setTimeout(resolve, HOLD_BACK_MS));
            continue;
          }
          heldBack = 0;
          const run = shareable && cache?.shared
            ? sharedRun(store, wanted, sent, limit, end) ??
              readRun(store, wanted, sent, until, limit, end, validEnd)
            : readRun(store, wanted, sent, until, limit, end, validEnd);
          options.onRead?.("disk");
          // The run goes down the pipeline as one chunk: one pass through each stage.
          if (run.length > 1) run[0]!.rest = run.slice(1);
          controller.enqueue(run[0]!);
          sent = run[run.length - 1]!.start + BigInt(run[run.length - 1]!.bytes.length);
          if (reader) reader.position = sent;
          return;
        }
      } catch (e) {
        closeFile();
        await endStream();
        throw e;
      }
    },
    async cancel() {
      closeFile();
      await endStream();
    },
  }, { highWaterMark: 0 });

  /** Opens the file of a segment unless it is open already; returns it. */
  async function openSegment(
    store: WalStore,
    tli: TimelineId,
    segno: bigint,
  ): Promise<SegmentFile> {
    let wanted = store.segmentFile(tli, segno);
    if (!wanted) throw new WalSegmentRemovedError(store.fileName(tli, segno));
    if (current?.name !== wanted.name) {
      closeFile();
      const open = async (name: string): Promise<SegmentHandle | undefined> => {
        try {
          // An archived segment opens as its decoded bytes, shared with every sender.
          return await store.openSegment(name);
        } catch (e) {
          if (e instanceof Deno.errors.NotFound) return undefined;
          throw e;
        }
      };
      let opened = await open(wanted.name);
      if (!opened && wanted.partial) {
        // A `.partial` completed and renamed to its final name (by pg_receivewal, or by the
        // relay's writer) since the store last looked: look again before calling it removed.
        await store.refresh();
        const renamed = store.segmentFile(tli, segno);
        if (renamed && renamed.name !== wanted.name) {
          wanted = renamed;
          opened = await open(wanted.name);
        }
      }
      if (!opened) throw new WalSegmentRemovedError(wanted.name);
      file = opened;
      current = wanted;
      // A recycled file keeps its old pages until overwritten: its first page must carry this
      // segment's address and this cluster's identity, or it is not the segment we want.
      const head = new Uint8Array(SIZE_OF_LONG_PAGE_HEADER);
      const h = readLongPageHeader(head.subarray(0, await readFull(file, head)));
      if (h && h.magic === store.identity.magic && h.systemId !== store.identity.systemId) {
        closeFile();
        throw new WalSystemMismatchError(wanted.name, h.systemId, store.identity.systemId);
      }
      if (!h || h.magic !== store.identity.magic || h.pageAddr !== segmentStart(segno, segSize)) {
        closeFile();
        throw new WalSegmentRemovedError(wanted.name);
      }
      filePos = SIZE_OF_LONG_PAGE_HEADER;
    }
    return wanted;
  }

  /**
   * Reads WAL from `lsn` of `wanted`, the file {@linkcode openSegment} opened, as one or more
   * messages into one buffer: the first up to `until`, then whole messages cut as the slicer cuts
   * them, up to `limit`, as many as the buffer holds. Each gets the header's room in front, so that
   * framed in place they lie back to back and go out in one write (the buffer-reuse rule of
   * chunk.ts); all but the last are marked `more`. Every chunk's `walEnd` is `end`, but the one
   * ending at `validEnd`, where a damaged segment's valid WAL stops.
   */
  function readRun(
    store: WalStore,
    wanted: SegmentFile,
    lsn: Lsn,
    until: Lsn,
    limit: Lsn,
    end: Lsn,
    validEnd: Lsn | undefined,
  ): WalChunk[] {
    const first = Number(until - lsn);
    const buffer = pool && FRAME_HEADROOM + first <= pool.size
      ? pool.take()
      : new ArrayBuffer(FRAME_HEADROOM + first);
    const run: WalChunk[] = [];
    let at = 0;
    let pos = lsn;
    let cut = until;
    while (true) {
      const out = new Uint8Array(buffer, at + FRAME_HEADROOM, Number(cut - pos));
      readSegment(store, wanted, pos, out);
      run.push({
        start: pos,
        bytes: out,
        walEnd: cut === validEnd ? validEnd : end,
        headroom: true,
      });
      at += FRAME_HEADROOM + out.length;
      pos = cut;
      if (pos >= limit) break;
      let next = (pos + readSize) - (pos + readSize) % block;
      if (next > limit) next = limit;
      if (at + FRAME_HEADROOM + Number(next - pos) > buffer.byteLength) break;
      cut = next;
    }
    for (let i = 0; i < run.length - 1; i++) run[i]!.more = true;
    return run;
  }

  /**
   * The whole run at `lsn` from the block cache, read into it first if no sender has; `undefined`
   * unless `lsn` is run-aligned and a whole run lies below `limit`.
   */
  function sharedRun(
    store: WalStore,
    wanted: SegmentFile,
    lsn: Lsn,
    limit: Lsn,
    end: Lsn,
  ): WalChunk[] | undefined {
    const offset = segmentOffset(lsn, segSize);
    if (offset % runBytes !== 0 || lsn + BigInt(runBytes) > limit) return undefined;
    if (fileKey === undefined) {
      // Files only: a segment held in memory already reads as cheaply as a hit would.
      const st = (file as { statSync?: () => Deno.FileInfo }).statSync?.();
      if (!st) return undefined;
      fileKey = `${st.dev}:${st.ino}:${st.size}:${st.mtime?.getTime()}`;
    }
    const n = Number(readSize);
    const view = (buffer: ArrayBuffer, i: number): Uint8Array =>
      new Uint8Array(buffer, i * slot + FRAME_HEADROOM, n);
    const block = cache!.getOrFill(fileKey, offset, runMessages * slot, (buffer) => {
      for (let i = 0; i < runMessages; i++) {
        // A reused buffer's old headers must not pass for framed ones (framer.ts).
        new Uint8Array(buffer, i * slot, FRAME_HEADROOM).fill(0);
        readSegment(store, wanted, lsn + BigInt(i * n), view(buffer, i));
      }
    }, { lsn, reader });
    // As after a read: a segment removed since is not sent, even from memory.
    if (store.isRemoved(wanted)) {
      closeFile();
      throw new WalSegmentRemovedError(wanted.name);
    }
    const run: WalChunk[] = [];
    for (let i = 0; i < runMessages; i++) {
      run.push({
        start: lsn + BigInt(i * n),
        bytes: view(block.buffer, i),
        walEnd: end,
        headroom: true,
        more: i < runMessages - 1,
        block,
      });
    }
    return run;
  }

  /** Reads `out.length` bytes at `lsn` from `wanted`, the file {@linkcode openSegment} opened. */
  function readSegment(
    store: WalStore,
    wanted: SegmentFile,
    lsn: Lsn,
    out: Uint8Array,
  ): void {
    const offset = segmentOffset(lsn, segSize);
    // Synchronous reads, as the walsender's pread: WAL being streamed is almost always in the
    // page cache, where a 128 kB read costs about 25 µs in place against about 100 µs for an
    // async read through the blocking-thread pool; with fifty clients that halves the relay's
    // CPU for reading. A cold read does hold the event loop for its duration.
    if (offset !== filePos) file!.seekSync(offset, Deno.SeekMode.Start);
    const got = readFullSync(file!, out);
    filePos = offset + got;
    // Re-check after reading, as the walsender does: a file removed or recycled while we read it
    // may have handed us bytes of another segment.
    if (got < out.length || store.isRemoved(wanted)) {
      closeFile();
      throw new WalSegmentRemovedError(wanted.name);
    }
  }
}
