/**
 * Runs the validating reader over one timeline's segment files, in chunks, counting records per
 * resource manager as the reader accepts them. Private to `lib/inspect/`.
 *
 * @module
 */

import { formatLsn, type Lsn } from "../wal/lsn.ts";
import { WalValidator } from "../wal/reader.ts";
import { segmentFileName, segmentOf, segmentStart, type TimelineId } from "../wal/segment.ts";
import { readArchivedCandidate, type SegmentEntry } from "./_files.ts";
import { BytesFile, type SegmentHandle } from "../wal/segment_handle.ts";
import { ArchiveFormatError } from "../archive/errors.ts";

/** Why the reader stopped on a timeline. */
export interface TimelineStop {
  /**
   * `invalid`: a check failed (the message is xlogreader's); `missing`: the next segment file is
   * absent; `short`: a file ends before its segment does; `end`: the files ran out (the message
   * says so when a record was left unfinished, and is empty otherwise).
   */
  kind: "invalid" | "missing" | "short" | "end";
  /** The LSN the message is about (the reader's error LSN, or the valid end). */
  lsn: Lsn;
  /** The reason; empty when the files ended right after a record. */
  message: string;
}

/** Records of one resource manager. */
export interface RmgrCount {
  /** Records read. */
  records: number;
  /** Sum of their `xl_tot_len`. */
  bytes: number;
}

/** What the reader found on one timeline. */
export interface TimelineValidation {
  /** Start of the first record read (found as `pg_waldump` finds it). */
  firstRecord: Lsn | undefined;
  /** Start of the last valid record. */
  lastRecord: Lsn | undefined;
  /** Where the last valid record ends (`EndRecPtr`); the first segment's start if none. */
  validEnd: Lsn;
  /** Why reading stopped there. */
  stop: TimelineStop;
  /** Counts by `xl_rmid`. */
  rmgrs: Map<number, RmgrCount>;
}

/** The identity the validator enforces. */
export interface ValidationIdentity {
  systemId: bigint | undefined;
  segmentSize: number;
  blockSize: number;
  magic: number;
}

/**
 * Validates `files` (one timeline, ascending, without duplicates) from the start of the first.
 * `onBytes` is told of every byte read or skipped, so progress adds up to the files' sizes.
 */
export async function validateTimeline(
  tli: TimelineId,
  files: SegmentEntry[],
  identity: ValidationIdentity,
  chunk: Uint8Array,
  onBytes: (n: number) => void,
): Promise<TimelineValidation> {
  const seg = identity.segmentSize;
  const first = files[0]!;
  const rmgrs = new Map<number, RmgrCount>();
  let firstRecord: Lsn | undefined;
  let lastRecord: Lsn | undefined;
  const validator = new WalValidator({
    segmentSize: seg,
    blockSize: identity.blockSize,
    magic: identity.magic,
    ...(identity.systemId !== undefined ? { systemId: identity.systemId } : {}),
    start: segmentStart(first.segno, seg),
    timeline: tli,
    onRecord: (r) => {
      firstRecord ??= r.lsn;
      lastRecord = r.lsn;
      const c = rmgrs.get(r.rmid);
      if (c) {
        c.records++;
        c.bytes += r.totLen;
      } else {
        rmgrs.set(r.rmid, { records: 1, bytes: r.totLen });
      }
    },
  });
  let stop: TimelineStop | undefined;
  let accounted = 0;
  for (const file of files) {
    const fileStart = segmentStart(file.segno, seg);
    const want = validator.resumeLsn;
    if (fileStart > want) {
      const missing = segmentFileName(tli, segmentOf(want, seg), seg);
      stop = {
        kind: "missing",
        lsn: validator.validEnd,
        message: `could not find file "${missing}": No such file or directory`,
      };
      break;
    }
    // Never read past the segment: a longer file's tail is no WAL of this position.
    const limit = Math.min(file.size, seg);
    let f: SegmentHandle;
    try {
      f = file.archive
        ? new BytesFile(await readArchivedCandidate(file, seg))
        : await Deno.open(file.path);
    } catch (e) {
      if (!(e instanceof ArchiveFormatError)) throw e;
      stop = { kind: "invalid", lsn: validator.validEnd, message: e.message };
      break;
    }
    using _ = f;
    let offset = 0;
    while (offset < limit) {
      const r = await f.read(chunk.subarray(0, Math.min(chunk.length, limit - offset)));
      if (r === null) break;
      validator.push(fileStart + BigInt(offset), chunk.subarray(0, r));
      offset += r;
      onBytes(r);
      accounted += r;
      if (validator.error) break;
      const skipTo = Number(validator.resumeLsn - fileStart);
      if (skipTo > offset) {
        // The rest of a switched segment: padding the reader does not look at.
        const to = Math.min(skipTo, limit);
        onBytes(to - offset);
        accounted += to - offset;
        offset = to;
        if (offset < limit) await f.seek(offset, Deno.SeekMode.Start);
      }
    }
    const error = validator.error;
    if (error) {
      stop = { kind: "invalid", lsn: error.lsn, message: error.message };
      break;
    }
    if (validator.resumeLsn < fileStart + BigInt(seg)) {
      stop = {
        kind: "short",
        lsn: validator.validEnd,
        message: `file "${file.name}" ends at offset ${offset}, short of its segment size ${seg}`,
      };
      break;
    }
  }
  // Bytes never read (after a stop) still count as done for the progress total.
  const total = files.reduce((n, f) => n + f.size, 0);
  if (total > accounted) onBytes(total - accounted);
  const validEnd = validator.validEnd;
  if (!stop) {
    // The files ran out: cleanly after a record, or in the middle of one.
    const last = files[files.length - 1]!;
    const lastEnd = segmentStart(last.segno + 1n, seg);
    const message = validEnd < lastEnd
      ? `the record at ${formatLsn(validEnd)} continues past the end of ${last.name}`
      : "";
    stop = { kind: "end", lsn: validEnd, message };
  }
  return { firstRecord, lastRecord, validEnd, stop, rmgrs };
}
