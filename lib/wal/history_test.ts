import assert from "node:assert/strict";
import { UnknownTimelineError, WalHistoryError } from "./errors.ts";
import {
  appendHistory,
  formatHistoryLine,
  nextTimeline,
  parseHistory,
  switchPoint,
  timelineOf,
} from "./history.ts";

// 00000003.history as captured from a PostgreSQL 15 server promoted twice (PROTOCOL.md §7.1).
const CAPTURED_3 =
  "1\t0/7311718\tno recovery target specified\n\n2\t0/9025EE0\tno recovery target specified\n";
const CAPTURED_2 = "1\t0/7311718\tno recovery target specified\n";

function assertHistoryError(
  tli: number,
  content: string,
  message: string,
  hint: string,
): void {
  assert.throws(() => parseHistory(tli, content), (e: unknown) => {
    assert.ok(e instanceof WalHistoryError);
    assert.equal(e.message, message);
    assert.equal(e.hint, hint);
    return true;
  });
}

Deno.test("parseHistory reads the captured history files", () => {
  assert.deepEqual(parseHistory(3, CAPTURED_3), [
    { tli: 1, begin: 0n, end: 0x7311718n },
    { tli: 2, begin: 0x7311718n, end: 0x9025EE0n },
    { tli: 3, begin: 0x9025EE0n, end: undefined },
  ]);
  assert.deepEqual(parseHistory(2, CAPTURED_2), [
    { tli: 1, begin: 0n, end: 0x7311718n },
    { tli: 2, begin: 0x7311718n, end: undefined },
  ]);
});

Deno.test("parseHistory: timeline 1, and a missing file, have no parents", () => {
  assert.deepEqual(parseHistory(1, undefined), [{ tli: 1, begin: 0n, end: undefined }]);
  // PostgreSQL never reads a file for timeline 1.
  assert.deepEqual(parseHistory(1, "garbage"), [{ tli: 1, begin: 0n, end: undefined }]);
  assert.deepEqual(parseHistory(5, undefined), [{ tli: 5, begin: 0n, end: undefined }]);
  assert.deepEqual(parseHistory(5, ""), [{ tli: 5, begin: 0n, end: undefined }]);
  assert.throws(() => parseHistory(0, undefined), RangeError);
  assert.throws(() => parseHistory(1.5, undefined), RangeError);
  assert.throws(() => parseHistory(2 ** 32, undefined), RangeError);
});

Deno.test("parseHistory skips blank lines, comments and leading whitespace", () => {
  const content = "# written by hand\n\n   \t\n  1\t0/10\tfirst\n\t# indented comment\n" +
    "4 \t 1/2 trailing text ignored\r\n" + "7\tA/B"; // no final newline
  assert.deepEqual(parseHistory(9, content), [
    { tli: 1, begin: 0n, end: 0x10n },
    { tli: 4, begin: 0x10n, end: 0x1_00000002n },
    { tli: 7, begin: 0x1_00000002n, end: 0xA_0000000Bn },
    { tli: 9, begin: 0xA_0000000Bn, end: undefined },
  ]);
  // The tab of "%u\t%X/%X" matches any run of whitespace, or none.
  assert.deepEqual(parseHistory(3, "2 0/5"), [
    { tli: 2, begin: 0n, end: 5n },
    { tli: 3, begin: 5n, end: undefined },
  ]);
});

Deno.test("parseHistory reports malformed files in PostgreSQL's words", () => {
  assertHistoryError(
    3,
    "one\t0/10\treason\n",
    "syntax error in history file: one\t0/10\treason",
    "Expected a numeric timeline ID.",
  );
  assertHistoryError(
    3,
    "1\n",
    "syntax error in history file: 1",
    "Expected a write-ahead log switchpoint location.",
  );
  assertHistoryError(
    3,
    "1\t0-10\treason\n",
    "syntax error in history file: 1\t0-10\treason",
    "Expected a write-ahead log switchpoint location.",
  );
  assertHistoryError(
    3,
    "1\t100000000/0\treason\n",
    "syntax error in history file: 1\t100000000/0\treason",
    "Expected a write-ahead log switchpoint location.",
  );
  assertHistoryError(
    4,
    "2\t0/10\ta\n\n1\t0/20\tb\n",
    "invalid data in history file: 1\t0/20\tb",
    "Timeline IDs must be in increasing sequence.",
  );
  assertHistoryError(
    4,
    "2\t0/10\ta\n\n2\t0/20\tb\n",
    "invalid data in history file: 2\t0/20\tb",
    "Timeline IDs must be in increasing sequence.",
  );
  assertHistoryError(
    2,
    CAPTURED_3,
    'invalid data in history file "pg_wal/00000002.history"',
    "Timeline IDs must be less than child timeline's ID.",
  );
  assert.throws(() => parseHistory(2, CAPTURED_3, "archive/00000002.history"), {
    message: 'invalid data in history file "archive/00000002.history"',
  });
});

Deno.test("switchPoint and nextTimeline follow tliSwitchPoint", () => {
  const h = parseHistory(3, CAPTURED_3);
  assert.equal(switchPoint(h, 1), 0x7311718n);
  assert.equal(switchPoint(h, 2), 0x9025EE0n);
  assert.equal(switchPoint(h, 3), undefined);
  assert.equal(nextTimeline(h, 1), 2);
  assert.equal(nextTimeline(h, 2), 3);
  assert.equal(nextTimeline(h, 3), undefined);
  for (const f of [switchPoint, nextTimeline]) {
    assert.throws(() => f(h, 4), (e: unknown) => {
      assert.ok(e instanceof UnknownTimelineError);
      assert.equal(e.tli, 4);
      assert.equal(e.message, "requested timeline 4 is not in this server's history");
      return true;
    });
  }
  // A history may skip timelines (a sibling's promotion); those are not in it.
  const skipping = parseHistory(5, "1\t0/100\tx\n\n3\t0/200\ty\n");
  assert.equal(nextTimeline(skipping, 1), 3);
  assert.throws(() => switchPoint(skipping, 2), {
    message: "requested timeline 2 is not in this server's history",
  });
});

Deno.test("timelineOf follows tliOfPointInHistory", () => {
  const h = parseHistory(3, CAPTURED_3);
  assert.equal(timelineOf(h, 0n), 1);
  assert.equal(timelineOf(h, 0x7311717n), 1);
  assert.equal(timelineOf(h, 0x7311718n), 2);
  assert.equal(timelineOf(h, 0x9025EDFn), 2);
  assert.equal(timelineOf(h, 0x9025EE0n), 3);
  assert.equal(timelineOf(h, 0xFFFFFFFF_FFFFFFFFn), 3);
  assert.equal(timelineOf(parseHistory(1, undefined), 0x1234n), 1);
  // A timeline that ended where it began owns no LSN; its child does.
  const empty = parseHistory(3, "1\t0/100\ta\n\n2\t0/100\tb\n");
  assert.equal(timelineOf(empty, 0x100n), 3);
  assert.equal(timelineOf(empty, 0xFFn), 1);
  assert.throws(() => timelineOf([{ tli: 1, begin: 0n, end: 0x10n }], 0x10n), {
    name: "WalHistoryError",
    message: "timeline history was not contiguous",
  });
});

Deno.test("formatHistoryLine and appendHistory write what PostgreSQL writes", () => {
  assert.equal(
    formatHistoryLine(1, 0x7311718n, "no recovery target specified"),
    CAPTURED_2,
  );
  assert.equal(formatHistoryLine(0xFFFFFFFF, 0x1_0000000An, "r"), "4294967295\t1/A\tr\n");
  const two = appendHistory(undefined, 1, 0x7311718n, "no recovery target specified");
  assert.equal(two, CAPTURED_2);
  const three = appendHistory(two, 2, 0x9025EE0n, "no recovery target specified");
  assert.equal(three, CAPTURED_3);
  // What we write, we read back.
  assert.deepEqual(parseHistory(3, three), parseHistory(3, CAPTURED_3));
  assert.throws(() => formatHistoryLine(0, 0n, "r"), RangeError);
});
