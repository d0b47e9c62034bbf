/**
 * Timeline history files (`%08X.history`), read and written as `timeline.c` does.
 *
 * @module
 */

import { UnknownTimelineError, WalHistoryError } from "./errors.ts";
import { formatLsn, type Lsn } from "./lsn.ts";
import { historyFileName, type TimelineId } from "./segment.ts";

/** One timeline of a history (`TimeLineHistoryEntry`). */
export interface TimelineHistoryEntry {
  /** The timeline. */
  tli: TimelineId;
  /** Where it starts: its parent's switch point, or 0 for the first timeline. */
  begin: Lsn;
  /** Its switch point, where its child forked off; `undefined` for the newest timeline. */
  end: Lsn | undefined;
}

/** A timeline's ancestry, oldest first; the last entry is the timeline itself. */
export type TimelineHistory = readonly TimelineHistoryEntry[];

const MAX_TLI = 0xFFFF_FFFF;

function checkTli(tli: number): void {
  if (!Number.isInteger(tli) || tli < 1 || tli > MAX_TLI) {
    throw new RangeError(`invalid timeline ${tli}`);
  }
}

// sscanf("%u\t%X/%X"): numbers may follow C whitespace, and the tab matches any run of it.
const TLI_FIELD = /^[ \t\n\v\f\r]*(\d+)/;
const SWITCHPOINT_FIELD =
  /^[ \t\n\v\f\r]*(?:0[xX])?([0-9A-Fa-f]+)\/[ \t\n\v\f\r]*(?:0[xX])?([0-9A-Fa-f]+)/;
const LEADING_SPACE = /^[ \t\n\v\f\r]*/;

/** A `%u` or `%X` field narrowed to 32 bits; wider numbers make the line unreadable. */
function uint32(digits: string, radix: 10 | 16): number | undefined {
  const v = BigInt(radix === 16 ? "0x" + digits : digits);
  return v > BigInt(MAX_TLI) ? undefined : Number(v);
}

/**
 * Parses the content of a timeline's history file, as `readTimeLineHistory` does: blank lines
 * and `#` comments are skipped, each other line is `parentTLI <tab> switchpoint <tab> reason`
 * (the reason is ignored), and parents must be listed in increasing order, all below `tli`.
 *
 * Timeline 1 has no parents and no file; neither does a timeline whose file is missing
 * (`content` undefined), which PostgreSQL also takes to have no parents.
 *
 * @param tli The timeline the file belongs to.
 * @param content The file's text, or `undefined` when there is no file.
 * @param path The file's name for error messages; defaults to `pg_wal/%08X.history`.
 * @returns The history, oldest timeline first, ending with `tli` itself.
 * @throws {WalHistoryError} when the file is malformed.
 *
 * @example
 * ```ts
 * import { parseHistory } from "./history.ts";
 * import assert from "node:assert/strict";
 * const content = "1\t0/7311718\tno recovery target specified\n\n" +
 *   "2\t0/9025EE0\tno recovery target specified\n";
 * assert.deepEqual(parseHistory(3, content), [
 *   { tli: 1, begin: 0n, end: 0x7311718n },
 *   { tli: 2, begin: 0x7311718n, end: 0x9025EE0n },
 *   { tli: 3, begin: 0x9025EE0n, end: undefined },
 * ]);
 * assert.deepEqual(parseHistory(1, undefined), [{ tli: 1, begin: 0n, end: undefined }]);
 * ```
 */
export function parseHistory(
  tli: TimelineId,
  content: string | undefined,
  path: string = `pg_wal/${historyFileName(tli)}`,
): TimelineHistory {
  checkTli(tli);
  if (tli === 1 || content === undefined) return [{ tli, begin: 0n, end: undefined }];

  const history: TimelineHistoryEntry[] = [];
  let prevEnd = 0n;
  for (const line of content.split("\n")) {
    const trimmed = line.replace(LEADING_SPACE, "");
    if (trimmed === "" || trimmed.startsWith("#")) continue;

    const t = TLI_FIELD.exec(line);
    const parent = t ? uint32(t[1]!, 10) : undefined;
    if (!t || parent === undefined) {
      throw new WalHistoryError(
        `syntax error in history file: ${line}`,
        "Expected a numeric timeline ID.",
      );
    }
    const sp = SWITCHPOINT_FIELD.exec(line.slice(t[0].length));
    const hi = sp ? uint32(sp[1]!, 16) : undefined;
    const lo = sp ? uint32(sp[2]!, 16) : undefined;
    if (hi === undefined || lo === undefined) {
      throw new WalHistoryError(
        `syntax error in history file: ${line}`,
        "Expected a write-ahead log switchpoint location.",
      );
    }
    const last = history.at(-1);
    if (last && parent <= last.tli) {
      throw new WalHistoryError(
        `invalid data in history file: ${line}`,
        "Timeline IDs must be in increasing sequence.",
      );
    }
    const end = (BigInt(hi) << 32n) | BigInt(lo);
    history.push({ tli: parent, begin: prevEnd, end });
    prevEnd = end;
  }

  const last = history.at(-1);
  if (last && tli <= last.tli) {
    throw new WalHistoryError(
      `invalid data in history file "${path}"`,
      "Timeline IDs must be less than child timeline's ID.",
    );
  }
  history.push({ tli, begin: prevEnd, end: undefined });
  return history;
}

function indexOf(history: TimelineHistory, tli: TimelineId): number {
  const i = history.findIndex((e) => e.tli === tli);
  if (i < 0) throw new UnknownTimelineError(tli);
  return i;
}

/**
 * Where a timeline ended, forking into its child (`tliSwitchPoint`); `undefined` for the newest
 * timeline, which has not ended.
 *
 * @throws {UnknownTimelineError} when `tli` is not in the history.
 *
 * @example
 * ```ts
 * import { parseHistory, switchPoint } from "./history.ts";
 * import assert from "node:assert/strict";
 * const history = parseHistory(2, "1\t0/7311718\tno recovery target specified\n");
 * assert.equal(switchPoint(history, 1), 0x7311718n);
 * assert.equal(switchPoint(history, 2), undefined);
 * assert.throws(() => switchPoint(history, 3), { name: "UnknownTimelineError", tli: 3 });
 * ```
 */
export function switchPoint(history: TimelineHistory, tli: TimelineId): Lsn | undefined {
  return history[indexOf(history, tli)]!.end;
}

/**
 * The timeline that followed `tli` in this history (the `nextTLI` of `tliSwitchPoint`), or
 * `undefined` when `tli` is the newest.
 *
 * @throws {UnknownTimelineError} when `tli` is not in the history.
 *
 * @example
 * ```ts
 * import { nextTimeline, parseHistory } from "./history.ts";
 * import assert from "node:assert/strict";
 * const history = parseHistory(3, "1\t0/7311718\treason\n\n2\t0/9025EE0\treason\n");
 * assert.equal(nextTimeline(history, 1), 2);
 * assert.equal(nextTimeline(history, 3), undefined);
 * ```
 */
export function nextTimeline(history: TimelineHistory, tli: TimelineId): TimelineId | undefined {
  return history[indexOf(history, tli) + 1]?.tli;
}

/**
 * The timeline an LSN belongs to in this history (`tliOfPointInHistory`): the one whose range
 * `[begin, end)` holds it, the newest timeline being open-ended. A switch point itself belongs
 * to the child.
 *
 * @throws {WalHistoryError} when the history has a gap, which a parsed history never has.
 *
 * @example
 * ```ts
 * import { parseHistory, timelineOf } from "./history.ts";
 * import assert from "node:assert/strict";
 * const history = parseHistory(2, "1\t0/7311718\tno recovery target specified\n");
 * assert.equal(timelineOf(history, 0x7311717n), 1);
 * assert.equal(timelineOf(history, 0x7311718n), 2);
 * ```
 */
export function timelineOf(history: TimelineHistory, lsn: Lsn): TimelineId {
  // Newest first, as PostgreSQL's list is: a zero-length timeline yields to its child.
  for (let i = history.length - 1; i >= 0; i--) {
    const e = history[i]!;
    if (e.begin <= lsn && (e.end === undefined || lsn < e.end)) return e.tli;
  }
  throw new WalHistoryError("timeline history was not contiguous");
}

/**
 * The line that records a timeline switch: `parentTLI \t switchpoint \t reason \n`.
 *
 * @example
 * ```ts
 * import { formatHistoryLine } from "./history.ts";
 * import assert from "node:assert/strict";
 * assert.equal(
 *   formatHistoryLine(2, 0x9025EE0n, "no recovery target specified"),
 *   "2\t0/9025EE0\tno recovery target specified\n",
 * );
 * ```
 */
export function formatHistoryLine(parentTli: TimelineId, switchpoint: Lsn, reason: string): string {
  checkTli(parentTli);
  return `${parentTli}\t${formatLsn(switchpoint)}\t${reason}\n`;
}

/**
 * The content of a new timeline's history file, as `writeTimeLineHistory` builds it: the
 * parent's file copied, then a newline (in case the parent's lacked a final one; hence the blank
 * lines between entries), then the switch line. A parent without a file (timeline 1) contributes
 * nothing, not even the newline.
 *
 * @param parentContent The parent's history file, or `undefined` when it has none.
 *
 * @example
 * ```ts
 * import { appendHistory } from "./history.ts";
 * import assert from "node:assert/strict";
 * const two = appendHistory(undefined, 1, 0x7311718n, "no recovery target specified");
 * assert.equal(two, "1\t0/7311718\tno recovery target specified\n");
 * assert.equal(
 *   appendHistory(two, 2, 0x9025EE0n, "no recovery target specified"),
 *   "1\t0/7311718\tno recovery target specified\n\n2\t0/9025EE0\tno recovery target specified\n",
 * );
 * ```
 */
export function appendHistory(
  parentContent: string | undefined,
  parentTli: TimelineId,
  switchpoint: Lsn,
  reason: string,
): string {
  const line = formatHistoryLine(parentTli, switchpoint, reason);
  return parentContent === undefined ? line : parentContent + "\n" + line;
}
