/**
 * What can go wrong reading WAL, as facts: which file, which timeline, which system. The WAL
 * layer speaks no wire protocol; the replication layer turns these into ErrorResponses
 * (`lib/replication/wal_errors.ts`), so the words a client sees are chosen in one place.
 *
 * @module
 */

import type { TimelineId } from "./segment.ts";

/**
 * A segment a reader needs is gone: never there, removed, or recycled under another name while it
 * was read (`WalSndSegmentOpen`, and the re-check after `WALRead`).
 *
 * @example
 * ```ts
 * import { WalSegmentRemovedError } from "./errors.ts";
 * import assert from "node:assert/strict";
 * const e = new WalSegmentRemovedError("000000010000000000000003");
 * assert.equal(e.fileName, "000000010000000000000003");
 * assert.match(e.message, /has already been removed/);
 * ```
 */
export class WalSegmentRemovedError extends Error {
  /** The segment's file name. */
  readonly fileName: string;

  /** @param fileName The segment's file name. */
  constructor(fileName: string) {
    super(`requested WAL segment ${fileName} has already been removed`);
    this.name = "WalSegmentRemovedError";
    this.fileName = fileName;
  }
}

/**
 * A file the directory should hold is missing (a timeline's history file asked for by name).
 *
 * @example
 * ```ts
 * import { WalFileMissingError } from "./errors.ts";
 * import assert from "node:assert/strict";
 * assert.equal(new WalFileMissingError("00000002.history").fileName, "00000002.history");
 * ```
 */
export class WalFileMissingError extends Error {
  /** The file's name in the directory. */
  readonly fileName: string;

  /** @param fileName The file's name in the directory. */
  constructor(fileName: string) {
    super(`could not open file "${fileName}": No such file or directory`);
    this.name = "WalFileMissingError";
    this.fileName = fileName;
  }
}

/**
 * A timeline asked for is not in the history of the newest timeline (`tliSwitchPoint`).
 *
 * @example
 * ```ts
 * import { UnknownTimelineError } from "./errors.ts";
 * import assert from "node:assert/strict";
 * assert.equal(new UnknownTimelineError(7).tli, 7);
 * ```
 */
export class UnknownTimelineError extends Error {
  /** The timeline asked for. */
  readonly tli: TimelineId;

  /** @param tli The timeline asked for. */
  constructor(tli: TimelineId) {
    super(`requested timeline ${tli} is not in this server's history`);
    this.name = "UnknownTimelineError";
    this.tli = tli;
  }
}

/**
 * A history file, or a history built from one, that cannot be right, in `timeline.c`'s words: the
 * message quotes the offending line or file, the hint says what was expected.
 *
 * @example
 * ```ts
 * import { WalHistoryError } from "./errors.ts";
 * import assert from "node:assert/strict";
 * const e = new WalHistoryError("syntax error in history file: x", "Expected a numeric timeline ID.");
 * assert.equal(e.hint, "Expected a numeric timeline ID.");
 * ```
 */
export class WalHistoryError extends Error {
  /** What the file should have held, when known. */
  readonly hint: string | undefined;

  /**
   * @param message What is wrong, naming the line or the file.
   * @param hint What the file should have held.
   */
  constructor(message: string, hint?: string) {
    super(message);
    this.name = "WalHistoryError";
    this.hint = hint;
  }
}

/**
 * A segment file in the directory belongs to another cluster: its long page header carries a
 * different system identifier than the WAL being served.
 *
 * @example
 * ```ts
 * import { WalSystemMismatchError } from "./errors.ts";
 * import assert from "node:assert/strict";
 * const e = new WalSystemMismatchError("000000010000000000000003", 1n, 2n);
 * assert.equal(e.systemId, 1n);
 * assert.equal(e.expectedSystemId, 2n);
 * ```
 */
export class WalSystemMismatchError extends Error {
  /** The segment's file name. */
  readonly fileName: string;
  /** The system identifier in the file's long page header. */
  readonly systemId: bigint;
  /** The system identifier of the WAL served. */
  readonly expectedSystemId: bigint;

  /**
   * @param fileName The segment's file name.
   * @param systemId The system identifier in the file.
   * @param expectedSystemId The system identifier of the WAL served.
   */
  constructor(fileName: string, systemId: bigint, expectedSystemId: bigint) {
    super(`WAL file "${fileName}" is from a different database system`);
    this.name = "WalSystemMismatchError";
    this.fileName = fileName;
    this.systemId = systemId;
    this.expectedSystemId = expectedSystemId;
  }
}
