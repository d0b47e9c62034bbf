/**
 * Complete segment files checked record by record before any of their bytes is served, once per
 * file identity (device, inode, size, modification time) for every sender together.
 *
 * A complete segment is trusted by nobody: an archive suffers bit rot and bad copies, and a
 * damaged byte must never reach a client. Each record that begins in the segment passes
 * xlogreader's checks, CRC included; the record that runs on into the next segment is followed
 * there. The head of the segment, the end of a record begun in the previous one, was checked with
 * that segment, so validation starts at the first record that begins in the file, as the tail
 * validator of the store does.
 *
 * @module
 */

import { readFull } from "../_io.ts";
import { formatLsn, type Lsn } from "./lsn.ts";
import { type WalReaderError, WalValidator } from "./reader.ts";
import { segmentStart, type TimelineId } from "./segment.ts";

/** What validation found in one complete segment. */
export interface SegmentCheck {
  /** The segment file checked. */
  fileName: string;
  /**
   * Where the segment's valid WAL ends: the segment's end when every record in it passed,
   * otherwise the end of the last valid record (or the start of the first invalid one when none
   * before it began in the file).
   */
  validEnd: Lsn;
  /** Why the valid WAL ends before the segment does; `undefined` when all of it is valid. */
  error: WalReaderError | undefined;
  /** The file the failure was found in (the next segment's, when the record ran on into it). */
  errorFile: string | undefined;
}

/** One segment to check, and the next one for the record that may run on into it. */
export interface SegmentCheckRequest {
  /** Timeline of the file name (used in messages). */
  tli: TimelineId;
  /** Segment number. */
  segno: bigint;
  /** File name in the directory. */
  name: string;
  /** Full path. */
  path: string;
  /** The next segment's file, if there is one. */
  next?: {
    /** File name in the directory. */
    name: string;
    /** Full path. */
    path: string;
    /** Bytes of it known to be valid and durable, from its start (a tail still growing). */
    bytes: number;
    /** Whether the whole file is complete, so its identity fixes its bytes. */
    complete: boolean;
  } | undefined;
}

/** Options of {@linkcode SegmentValidations}. */
export interface SegmentValidationsOptions {
  /** `wal_segment_size`. */
  segmentSize: number;
  /** `XLOG_BLCKSZ`. */
  blockSize: number;
  /** `XLOG_PAGE_MAGIC` of the WAL served. */
  magic: number;
  /** System identifier every long page header must carry. */
  systemId: bigint;
  /** Results remembered; the least recently used go first. Default 4096. */
  capacity?: number;
  /** Bytes per read. Default 1 MiB. */
  chunkSize?: number;
  /** Told once per validation that finds damage. */
  log?: (message: string) => void;
}

/** What the next segment's identity must still be for a remembered result to hold. */
interface NextDependency {
  path: string;
  /** `absent`: there was no next file; `inode`: same file; `full`: same file, unchanged. */
  kind: "absent" | "inode" | "full";
  key: string;
}

interface Entry {
  identity: string;
  promise: Promise<SegmentCheck>;
  /** Set once validation is done; `undefined` when the result does not depend on the next file. */
  next: NextDependency | undefined;
  done: boolean;
}

/**
 * A complete segment's WAL ends early: the message names the file and the LSN in xlogreader's
 * words. The replication layer reports it as `XX001` (`data_corrupted`).
 *
 * @example
 * ```ts
 * import { WalSegmentDamagedError } from "./segment_validation.ts";
 * import assert from "node:assert/strict";
 * const e = new WalSegmentDamagedError("000000010000000000000005", {
 *   lsn: 0x5012345n,
 *   message: "incorrect resource manager data checksum in record at 0/5012345",
 * }, 0x5012345n);
 * assert.equal(
 *   e.message,
 *   'WAL file "000000010000000000000005" is damaged: incorrect resource manager data checksum in record at 0/5012345',
 * );
 * ```
 */
export class WalSegmentDamagedError extends Error {
  /** The damaged file. */
  readonly fileName: string;
  /** Where validation failed, and why. */
  readonly failure: WalReaderError;
  /** End of the valid WAL before the damage: what was served of the file. */
  readonly validEnd: Lsn;

  /**
   * @param fileName The damaged file.
   * @param failure Where validation failed, and why.
   * @param validEnd End of the valid WAL before the damage.
   */
  constructor(fileName: string, failure: WalReaderError, validEnd: Lsn) {
    super(`WAL file "${fileName}" is damaged: ${failure.message}`);
    this.name = "WalSegmentDamagedError";
    this.fileName = fileName;
    this.failure = failure;
    this.validEnd = validEnd;
  }
}

/** The identity of a file as far as its bytes go: the same identity means the same bytes. */
function identityOf(s: Deno.FileInfo): string {
  return `${s.dev}:${s.ino}:${s.size}:${s.mtime?.getTime() ?? "-"}`;
}

async function statOrUndefined(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

function dependencyKey(kind: NextDependency["kind"], s: Deno.FileInfo | undefined): string {
  if (!s) return "absent";
  return kind === "full" ? identityOf(s) : `${s.dev}:${s.ino}`;
}

/**
 * Validation results of complete segments, remembered per file identity and shared by every
 * sender: a segment is read and checked once, concurrent requests for it wait on the same
 * validation, and it is checked again only when the file changes (another inode, size or
 * modification time). Memory is bounded by `capacity` results.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SegmentValidations } from "./segment_validation.ts";
 * import { WalStore } from "./store.ts";
 * const store = await WalStore.open("testdata/wal");
 * const v = new SegmentValidations(store.identity);
 * const name = "000000010000000000000006";
 * const request = { tli: 1, segno: 6n, name, path: store.path(name) };
 * const [a, b] = await Promise.all([v.check(request), v.check(request)]);
 * assert.equal(a, b);
 * assert.equal(a.error, undefined);
 * assert.equal(a.validEnd, 0x700000n);
 * assert.equal(v.runs, 1);
 * ```
 */
export class SegmentValidations {
  readonly #segmentSize: number;
  readonly #blockSize: number;
  readonly #magic: number;
  readonly #systemId: bigint;
  readonly #capacity: number;
  readonly #chunkSize: number;
  readonly #log: (message: string) => void;
  readonly #entries = new Map<string, Entry>();
  #runs = 0;

  /** @param options The WAL's identity, the number of results to keep, where to log damage. */
  constructor(options: SegmentValidationsOptions) {
    this.#segmentSize = options.segmentSize;
    this.#blockSize = options.blockSize;
    this.#magic = options.magic;
    this.#systemId = options.systemId;
    this.#capacity = Math.max(1, options.capacity ?? 4096);
    this.#chunkSize = options.chunkSize ?? 1 << 20;
    this.#log = options.log ?? (() => {});
  }

  /** Validations run so far (a result reused is not counted). */
  get runs(): number {
    return this.#runs;
  }

  /** Results remembered now. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * The validation result of a complete segment: remembered when the file (and, for a record
   * that runs on into it, the next file) is unchanged, otherwise validated now.
   *
   * @throws {Deno.errors.NotFound} when the segment file is gone.
   */
  async check(request: SegmentCheckRequest): Promise<SegmentCheck> {
    const identity = identityOf(await Deno.stat(request.path));
    const entry = this.#entries.get(request.path);
    if (entry && entry.identity === identity && await this.#holds(entry, request)) {
      // Most recently used goes last: eviction takes the first.
      this.#entries.delete(request.path);
      this.#entries.set(request.path, entry);
      return entry.promise;
    }
    const fresh: Entry = { identity, promise: undefined!, next: undefined, done: false };
    fresh.promise = this.#validate(request).then(
      ({ check, next }) => {
        fresh.next = next;
        fresh.done = true;
        return check;
      },
      (e) => {
        if (this.#entries.get(request.path) === fresh) this.#entries.delete(request.path);
        throw e;
      },
    );
    this.#entries.delete(request.path);
    this.#entries.set(request.path, fresh);
    while (this.#entries.size > this.#capacity) {
      this.#entries.delete(this.#entries.keys().next().value!);
    }
    return fresh.promise;
  }

  /** Whether a remembered result still holds for the next file as it is now. */
  async #holds(entry: Entry, request: SegmentCheckRequest): Promise<boolean> {
    // A validation in progress is shared: it read the files as they are.
    if (!entry.done || entry.next === undefined) return true;
    const dep = entry.next;
    const path = request.next?.path;
    if (dep.kind === "absent") return path === undefined;
    if (path !== dep.path) return false;
    return dependencyKey(dep.kind, await statOrUndefined(path)) === dep.key;
  }

  #whole(request: SegmentCheckRequest): SegmentCheck {
    const validEnd = segmentStart(request.segno + 1n, this.#segmentSize);
    return { fileName: request.name, validEnd, error: undefined, errorFile: undefined };
  }

  /** The segment is whole as far as it goes; the next file must change before it is read again. */
  #provisional(
    request: SegmentCheckRequest,
    next: { path: string },
    stat: Deno.FileInfo,
  ): { check: SegmentCheck; next: NextDependency } {
    return {
      check: this.#whole(request),
      next: { path: next.path, kind: "full", key: dependencyKey("full", stat) },
    };
  }

  async #validate(
    request: SegmentCheckRequest,
  ): Promise<{ check: SegmentCheck; next: NextDependency | undefined }> {
    this.#runs++;
    const segSize = this.#segmentSize;
    const start = segmentStart(request.segno, segSize);
    const segEnd = start + BigInt(segSize);
    let records = 0;
    const v = new WalValidator({
      segmentSize: segSize,
      blockSize: this.#blockSize,
      magic: this.#magic,
      systemId: this.#systemId,
      start,
      timeline: request.tli,
      onRecord: () => records++,
    });
    const buf = new Uint8Array(this.#chunkSize);
    {
      using f = await Deno.open(request.path, { read: true });
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
      const stat = n ? await statOrUndefined(n.path) : undefined;
      if (!n || !stat) {
        next = { path: "", kind: "absent", key: "absent" };
      } else {
        using f = await Deno.open(n.path, { read: true });
        let pos = segEnd;
        const limit = segEnd + BigInt(Math.min(n.bytes, segSize));
        const piece = buf.subarray(0, Math.min(buf.length, 64 * 1024));
        while (pos < limit && !v.error && v.validEnd < segEnd) {
          const want = Math.min(piece.length, Number(limit - pos));
          const got = await readFull(f, piece.subarray(0, want));
          if (got === 0) break;
          v.push(pos, piece.subarray(0, got));
          pos += BigInt(got);
        }
        // A next file whose first page header fails (another cluster's, a recycled one) is not
        // the next segment at all: reading it fails on its own when a sender gets there.
        // (The getter's value changed with the pushes; the compiler only saw the check above.)
        const failure = v.error as WalReaderError | undefined;
        if (failure?.lsn === segEnd) return this.#provisional(request, n, stat);
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
      return { check: this.#whole(request), next };
    }
    const error = v.error;
    const errorFile = error.lsn < segEnd ? request.name : n?.name ?? request.name;
    // Before the first record that begins in the file comes the end of one begun earlier, which
    // was checked with the previous segment: it is served up to where this file's failure is.
    let validEnd = records > 0 ? v.validEnd : error.lsn;
    if (validEnd > segEnd) validEnd = segEnd;
    if (validEnd < start) validEnd = start;
    this.#log(
      `WAL file "${errorFile}" is damaged: ${error.message}; ` +
        `valid WAL of segment ${request.name} ends at ${formatLsn(validEnd)}`,
    );
    return { check: { fileName: request.name, validEnd, error, errorFile }, next };
  }
}
