/**
 * Validating one complete segment, with nothing shared: what runs in the validation worker, or in
 * the caller's thread when no worker can be started.
 *
 * @module
 */

import { readFull } from "../_io.ts";
import { type WalReaderError, WalValidator } from "./reader.ts";
import { segmentStart } from "./segment.ts";
import type { SegmentCheck, SegmentCheckRequest } from "./segment_validation.ts";

/** The WAL's identity, as validation needs it. */
export interface ValidationSettings {
  segmentSize: number;
  blockSize: number;
  magic: number;
  systemId: bigint;
  /** Bytes per read. */
  chunkSize: number;
}

/** What the next segment's identity must still be for a result to hold. */
export interface NextDependency {
  path: string;
  /** `absent`: there was no next file; `inode`: same file; `full`: same file, unchanged. */
  kind: "absent" | "inode" | "full";
  key: string;
}

/** A validation's result and what it depends on besides the segment file itself. */
export interface ValidationOutcome {
  check: SegmentCheck;
  next: NextDependency | undefined;
}

/** The identity of a file as far as its bytes go: the same identity means the same bytes. */
export function identityOf(s: Deno.FileInfo): string {
  return `${s.dev}:${s.ino}:${s.size}:${s.mtime?.getTime() ?? "-"}`;
}

/**
 * `Deno.statSync`, or `undefined` when the file is not there. Synchronous: every sender checks
 * each segment it reaches, and an asynchronous stat is a turn of the event loop on a thread of
 * its own for one system call.
 */
export function statOrUndefined(path: string): Deno.FileInfo | undefined {
  try {
    return Deno.statSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/** The key a next file is remembered by. */
export function dependencyKey(
  kind: NextDependency["kind"],
  s: Deno.FileInfo | undefined,
): string {
  if (!s) return "absent";
  return kind === "full" ? identityOf(s) : `${s.dev}:${s.ino}`;
}

function whole(request: SegmentCheckRequest, segmentSize: number): SegmentCheck {
  const validEnd = segmentStart(request.segno + 1n, segmentSize);
  return { fileName: request.name, validEnd, error: undefined, errorFile: undefined };
}

/**
 * Checks every record that begins in the segment, following the last one into the next file as
 * far as that file's WAL is valid and durable.
 */
export async function validateSegment(
  request: SegmentCheckRequest,
  settings: ValidationSettings,
): Promise<ValidationOutcome> {
  const segSize = settings.segmentSize;
  const start = segmentStart(request.segno, segSize);
  const segEnd = start + BigInt(segSize);
  const v = new WalValidator({
    segmentSize: segSize,
    blockSize: settings.blockSize,
    magic: settings.magic,
    systemId: settings.systemId,
    start,
    timeline: request.tli,
  });
  // The read buffer, for a segment read from its file; archived ones come decoded.
  let buf: Uint8Array | undefined;
  if (request.data) {
    // An archived segment comes decoded (its file is the compressed one): validated in place.
    // The validator keeps no reference, and a record wholly inside one push is checked without
    // being assembled.
    v.push(start, request.data.subarray(0, segSize));
  } else {
    using f = await Deno.open(request.path);
    buf = new Uint8Array(settings.chunkSize);
    let pos = start;
    while (pos < segEnd) {
      const want = Math.min(buf.length, Number(segEnd - pos));
      const got = await readFull(f, buf.subarray(0, want));
      if (got === 0) break;
      v.push(pos, buf.subarray(0, got));
      pos += BigInt(got);
      // After an XLOG_SWITCH the validator wants the next segment: the rest is padding.
      if (v.error || v.resumeLsn >= segEnd || got < want) break;
    }
  }
  let next: NextDependency | undefined;
  const n = request.next;
  if (!v.error && v.validEnd < segEnd) {
    // The last record runs on into the next segment: follow it there, as far as that file's
    // WAL is known to be valid and durable.
    const stat = n ? statOrUndefined(n.path) : undefined;
    if (!n || !stat) {
      next = { path: "", kind: "absent", key: "absent" };
    } else {
      let pos = segEnd;
      const limit = segEnd + BigInt(Math.min(n.bytes, segSize));
      // The next file is read a piece at a time: the record running on into it is usually short.
      const pieceSize = Math.min(settings.chunkSize, 64 * 1024);
      const data = n.data;
      while (data && pos < limit && !v.error && v.validEnd < segEnd) {
        const from = Number(pos - segEnd);
        const got = Math.min(pieceSize, Number(limit - pos), data.length - from);
        if (got <= 0) break;
        v.push(pos, data.subarray(from, from + got));
        pos += BigInt(got);
      }
      using f = data ? undefined : await Deno.open(n.path);
      const piece = f && (buf ?? new Uint8Array(pieceSize)).subarray(0, pieceSize);
      while (f && piece && pos < limit && !v.error && v.validEnd < segEnd) {
        const want = Math.min(pieceSize, Number(limit - pos));
        const got = await readFull(f, piece.subarray(0, want));
        if (got === 0) break;
        v.push(pos, piece.subarray(0, got));
        pos += BigInt(got);
      }
      // A next file whose first page header fails (another cluster's, a recycled one) is not
      // the next segment at all: reading it fails on its own when a sender gets there.
      // (The getter's value changed with the pushes; the compiler only saw the check above.)
      const failure = v.error as WalReaderError | undefined;
      if (failure?.lsn === segEnd) {
        return {
          check: whole(request, segSize),
          next: { path: n.path, kind: "full", key: dependencyKey("full", stat) },
        };
      }
      // A next file still growing has fixed bytes where it was read: only its replacement
      // matters. Unless the record could not be followed to its end: then look again once
      // the file has changed.
      const finished = v.error !== undefined || v.validEnd >= segEnd;
      const kind = n.complete || !finished ? "full" : "inode";
      next = { path: n.path, kind, key: dependencyKey(kind, stat) };
    }
  }
  if (v.validEnd >= segEnd || !v.error) {
    // Whole, or a last record whose end is not written yet: that is the tail's business.
    return { check: whole(request, segSize), next };
  }
  const error = v.error;
  const errorFile = error.lsn < segEnd ? request.name : n?.name ?? request.name;
  // Before the first record that begins in the file comes the end of one begun earlier, which
  // was checked with the previous segment: it is served up to where this file's failure is.
  let validEnd = v.records > 0 ? v.validEnd : error.lsn;
  if (validEnd > segEnd) validEnd = segEnd;
  if (validEnd < start) validEnd = start;
  return { check: { fileName: request.name, validEnd, error, errorFile }, next };
}
