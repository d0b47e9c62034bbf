import assert from "node:assert/strict";
import { PgError } from "../pgwire/error.ts";
import {
  UnknownTimelineError,
  WalFileMissingError,
  WalHistoryError,
  WalSegmentRemovedError,
  WalSystemMismatchError,
} from "../wal/errors.ts";
import { parseHistory, switchPoint, timelineOf } from "../wal/history.ts";
import { WalSegmentDamagedError } from "../wal/segment_validation.ts";
import { pgErrorOf } from "./wal_errors.ts";

function mapped(e: unknown): PgError {
  const pg = pgErrorOf(e);
  assert.ok(pg instanceof PgError);
  return pg;
}

Deno.test("wal errors: each reaches the client with PostgreSQL's SQLSTATE and words", () => {
  const removed = mapped(new WalSegmentRemovedError("000000010000000000000003"));
  assert.equal(removed.code, "58P01");
  assert.equal(
    removed.message,
    "requested WAL segment 000000010000000000000003 has already been removed",
  );
  assert.equal(removed.fields.routine, "WalSndSegmentOpen");

  const missing = mapped(new WalFileMissingError("00000009.history"));
  assert.equal(missing.code, "58P01");
  assert.equal(
    missing.message,
    'could not open file "00000009.history": No such file or directory',
  );

  const unknown = mapped(new UnknownTimelineError(9));
  assert.equal(unknown.code, "XX000");
  assert.equal(unknown.message, "requested timeline 9 is not in this server's history");
  assert.equal(unknown.fields.routine, "tliSwitchPoint");

  const foreign = mapped(new WalSystemMismatchError("000000010000000000000003", 7n, 8n));
  assert.equal(foreign.code, "XX001");
  assert.equal(
    foreign.message,
    'WAL file "000000010000000000000003" is from a different database system',
  );
  assert.equal(
    foreign.fields.detail,
    "WAL file database system identifier is 7, the served system identifier is 8.",
  );

  const other = new Error("not ours");
  assert.equal(pgErrorOf(other), other);
});

Deno.test("wal errors: history problems are XX000 with timeline.c's message and hint", () => {
  const syntax = (() => {
    try {
      parseHistory(3, "one\t0/10\treason\n");
    } catch (e) {
      return e;
    }
  })();
  assert.ok(syntax instanceof WalHistoryError);
  const e = mapped(syntax);
  assert.equal(e.code, "XX000");
  assert.equal(e.message, "syntax error in history file: one\t0/10\treason");
  assert.equal(e.fields.hint, "Expected a numeric timeline ID.");

  const h = parseHistory(2, "1\t0/7311718\tno recovery target specified\n");
  assert.throws(() => switchPoint(h, 3), (e: unknown) => {
    assert.equal(mapped(e).code, "XX000");
    return true;
  });
  assert.throws(() => timelineOf([{ tli: 1, begin: 0n, end: 0x10n }], 0x10n), (e: unknown) => {
    const pg = mapped(e);
    assert.equal(pg.code, "XX000");
    assert.equal(pg.message, "timeline history was not contiguous");
    assert.deepEqual(pg.fields, {});
    return true;
  });
});

Deno.test("wal errors: a damaged segment is XX001, naming the file and the LSN", () => {
  const e = mapped(
    new WalSegmentDamagedError("000000010000000000000005", {
      lsn: 0x5012345n,
      message: "incorrect resource manager data checksum in record at 0/5012345",
    }, 0x5012345n),
  );
  assert.equal(e.code, "XX001");
  assert.equal(
    e.message,
    'WAL file "000000010000000000000005" is damaged: ' +
      "incorrect resource manager data checksum in record at 0/5012345",
  );
  assert.equal(e.fields.detail, "Valid WAL ends at 0/5012345.");
});
