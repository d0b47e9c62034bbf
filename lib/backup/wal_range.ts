/**
 * The WAL a backup needs, from its start to its end, as segment files of the relay's store: what
 * `BASE_BACKUP (WAL)` puts into `pg_wal/`, and what an import checks is there.
 *
 * @module
 */

import { PgError, SqlState } from "../pgwire/error.ts";
import { timelineOf } from "../wal/history.ts";
import type { Lsn } from "../wal/lsn.ts";
import { segmentFileName, segmentOf, segmentStart, type TimelineId } from "../wal/segment.ts";
import type { SegmentFile, WalStore } from "../wal/store.ts";

/** A backup's WAL range. */
export interface WalRange {
  /** Backup start. */
  startLsn: Lsn;
  /** Timeline at the start. */
  timeline: TimelineId;
  /** Backup end. */
  endLsn: Lsn;
  /** Timeline at the end. */
  endTimeline: TimelineId;
}

function durableEnd(store: WalStore, tli: TimelineId): Lsn {
  try {
    return store.endOf(tli);
  } catch {
    return 0n;
  }
}

/** Whether `file` holds its whole segment, below the durable end of its timeline. */
function complete(store: WalStore, file: SegmentFile): boolean {
  const segSize = store.identity.segmentSize;
  if (file.partial || file.size !== segSize) return false;
  let end: Lsn;
  try {
    end = store.endOf(file.tli);
  } catch {
    return true; // a timeline the history no longer names: finished long ago
  }
  return file.tli !== store.timeline || segmentStart(file.segno + 1n, segSize) <= end;
}

/** A segment of a backup's WAL range, and how much of it is durable WAL. */
export interface RangeSegment {
  /** The file. */
  file: SegmentFile;
  /** Its name in `pg_wal/`: the segment's, never a `.partial`. */
  name: string;
  /** Bytes of the file to send; the rest of the segment goes out as zeros. */
  validBytes: number;
}

/**
 * The segment files from the start's segment to the one holding the last byte before the end
 * (`XLByteToPrevSeg`), each complete, or the name of the first one that is not (yet) there.
 * With `partialLast`, the last one may be incomplete once the durable end has passed the
 * backup's end (a backup from a standby ends without a segment switch): it is sent up to the
 * durable end, zeros after, as a standby's own `pg_wal/` would hold it.
 *
 * @example
 * ```ts
 * import { WalStore } from "../wal/store.ts";
 * import { walRangeFiles } from "./wal_range.ts";
 * import assert from "node:assert/strict";
 * const store = await WalStore.open("testdata/wal");
 * // Across the switch to timeline 2 at 0/997C58: its segment comes from timeline 2's file.
 * const r = walRangeFiles(store, { startLsn: 0x700028n, timeline: 1, endLsn: 0xA00100n, endTimeline: 2 });
 * assert.ok("files" in r);
 * assert.deepEqual(r.files.map((s) => s.name), [
 *   "000000010000000000000007", "000000010000000000000008", "000000020000000000000009",
 *   "00000002000000000000000A",
 * ]);
 * const past = walRangeFiles(store, { startLsn: 0xB00028n, timeline: 2, endLsn: 0xC00100n, endTimeline: 2 });
 * assert.deepEqual(past, { missing: "00000002000000000000000C" });
 * ```
 */
export function walRangeFiles(
  store: WalStore,
  range: WalRange,
  options: { partialLast?: boolean } = {},
): { files: RangeSegment[] } | { missing: string } {
  const segSize = store.identity.segmentSize;
  const first = segmentOf(range.startLsn, segSize);
  const last = segmentOf(range.endLsn - 1n, segSize);
  const files: RangeSegment[] = [];
  for (let segno = first; segno <= last; segno++) {
    const at = segno === first ? range.startLsn : segmentStart(segno, segSize);
    let tli: TimelineId;
    try {
      tli = timelineOf(store.history, at);
    } catch {
      tli = segno === last ? range.endTimeline : range.timeline;
    }
    if (tli < range.timeline) tli = range.timeline;
    const file = store.segmentFile(tli, segno);
    const name = segmentFileName(tli, segno, segSize);
    if (file && complete(store, file)) {
      files.push({ file, name: segmentFileName(file.tli, segno, segSize), validBytes: segSize });
      continue;
    }
    const durable = file && segno === last && options.partialLast ? durableEnd(store, tli) : 0n;
    if (!file || durable < range.endLsn) return { missing: name };
    const segEnd = segmentStart(segno + 1n, segSize);
    const validBytes = Number((durable < segEnd ? durable : segEnd) - segmentStart(segno, segSize));
    files.push({ file, name: segmentFileName(file.tli, segno, segSize), validBytes });
  }
  return { files };
}

/** How long to wait for the last segment to complete before sending it as far as it is durable. */
const PARTIAL_AFTER_MS = 2000;

/**
 * Waits until the store holds the whole range (in relay mode the last segment completes once the
 * upstream's segment switch at the backup's end is durable here), or throws PostgreSQL's
 * `could not find WAL file`.
 */
export async function waitForWalRange(
  store: WalStore,
  range: WalRange,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<RangeSegment[]> {
  const started = Date.now();
  const deadline = started + timeoutMs;
  while (true) {
    // A moment for the segment switch that ends a backup on a primary; after it, what is durable.
    const r = walRangeFiles(store, range, {
      partialLast: Date.now() - started >= PARTIAL_AFTER_MS,
    });
    if ("files" in r) return r.files;
    const left = deadline - Date.now();
    if (left <= 0 || signal?.aborted) {
      throw new PgError(SqlState.UNDEFINED_FILE, `could not find WAL file "${r.missing}"`);
    }
    await store.latch.wait(Math.min(left, 250), signal);
    await store.refresh();
  }
}
