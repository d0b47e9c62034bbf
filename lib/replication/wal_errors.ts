/**
 * The WAL layer's errors as a client sees them: each fact (a segment gone, a timeline unknown, a
 * file of another cluster) becomes the SQLSTATE and the message PostgreSQL's walsender sends for
 * it. This is the one place those words are chosen, so an operator's grep finds them.
 *
 * @module
 */

import { PgError, SqlState } from "../pgwire/error.ts";
import {
  UnknownTimelineError,
  WalFileMissingError,
  WalHistoryError,
  WalSegmentRemovedError,
  WalSystemMismatchError,
} from "../wal/errors.ts";
import { WalSegmentDamagedError } from "../wal/segment_validation.ts";
import { formatLsn } from "../wal/lsn.ts";
import { ArchiveFormatError } from "../archive/errors.ts";

/**
 * The ErrorResponse for an error of the WAL layer; any other error is returned as it is.
 *
 * @example
 * ```ts
 * import { pgErrorOf } from "./wal_errors.ts";
 * import { WalSegmentRemovedError } from "../wal/errors.ts";
 * import assert from "node:assert/strict";
 * const e = pgErrorOf(new WalSegmentRemovedError("000000010000000000000003"));
 * assert.equal((e as { code: string }).code, "58P01");
 * ```
 */
export function pgErrorOf(e: unknown): unknown {
  if (e instanceof WalSegmentRemovedError) {
    return new PgError(
      SqlState.UNDEFINED_FILE,
      `requested WAL segment ${e.fileName} has already been removed`,
      { routine: "WalSndSegmentOpen" },
    );
  }
  if (e instanceof WalFileMissingError) {
    return new PgError(
      SqlState.UNDEFINED_FILE,
      `could not open file "${e.fileName}": No such file or directory`,
    );
  }
  if (e instanceof UnknownTimelineError) {
    return new PgError(
      SqlState.INTERNAL_ERROR,
      `requested timeline ${e.tli} is not in this server's history`,
      { routine: "tliSwitchPoint" },
    );
  }
  if (e instanceof WalHistoryError) {
    // timeline.c raises these without an errcode, hence XX000; the message quotes the file.
    return new PgError(SqlState.INTERNAL_ERROR, e.message, e.hint ? { hint: e.hint } : {});
  }
  if (e instanceof WalSystemMismatchError) {
    return new PgError(
      SqlState.DATA_CORRUPTED,
      `WAL file "${e.fileName}" is from a different database system`,
      {
        detail: `WAL file database system identifier is ${e.systemId}, ` +
          `the served system identifier is ${e.expectedSystemId}.`,
      },
    );
  }
  if (e instanceof WalSegmentDamagedError) {
    // xlogreader's words, naming the file; the detail says how far the WAL was sent.
    return new PgError(
      SqlState.DATA_CORRUPTED,
      `WAL file "${e.fileName}" is damaged: ${e.failure.message}`,
      { detail: `Valid WAL ends at ${formatLsn(e.validEnd)}.` },
    );
  }
  if (e instanceof ArchiveFormatError) {
    // An archived file that does not decode to the segment its name promises: data corrupted,
    // naming the file as stored and its format.
    return new PgError(
      SqlState.DATA_CORRUPTED,
      e.problem === "unsupported" || e.problem === "encrypted"
        ? `could not read archived WAL file "${e.file}": ${e.message.replace(/^[^:]*: /, "")}`
        : `archived WAL file "${e.file}" is damaged: ${e.message.replace(/^[^:]*: /, "")}`,
    );
  }
  return e;
}
