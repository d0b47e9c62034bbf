import assert from "node:assert/strict";
import type { FieldDescription } from "../pgwire/messages.ts";
import { resultColumns, showColumns } from "./result_sets.ts";

/** A RowDescription's fields as PROTOCOL.md writes them: name(typeoid,typlen,typmod). */
function described(fields: readonly FieldDescription[]): string {
  return fields.map((f) => `${f.name}(${f.typeOid},${f.typeLen},${f.typeMod ?? -1})`).join(" ");
}

// Captured from real 15.18, 17.12 and 18.6 servers (PROTOCOL.md §10.3; TIMELINE_HISTORY too).
const CAPTURED: Record<string, Record<string, string>> = {
  15: {
    IDENTIFY_SYSTEM: "systemid(25,-1,-1) timeline(23,4,-1) xlogpos(25,-1,-1) dbname(25,-1,-1)",
    TIMELINE_HISTORY: "filename(25,-1,0) content(25,-1,0)",
    READ_REPLICATION_SLOT: "slot_type(25,-1,-1) restart_lsn(25,-1,-1) restart_tli(20,8,-1)",
    CREATE_REPLICATION_SLOT:
      "slot_name(25,-1,-1) consistent_point(25,-1,-1) snapshot_name(25,-1,-1) output_plugin(25,-1,-1)",
    START_REPLICATION: "next_tli(20,8,-1) next_tli_startpos(25,-1,-1)",
  },
  17: {
    IDENTIFY_SYSTEM: "systemid(25,-1,-1) timeline(20,8,-1) xlogpos(25,-1,-1) dbname(25,-1,-1)",
    TIMELINE_HISTORY: "filename(25,-1,-1) content(25,-1,-1)",
    READ_REPLICATION_SLOT: "slot_type(25,-1,-1) restart_lsn(25,-1,-1) restart_tli(20,8,-1)",
    CREATE_REPLICATION_SLOT:
      "slot_name(25,-1,-1) consistent_point(25,-1,-1) snapshot_name(25,-1,-1) output_plugin(25,-1,-1)",
    START_REPLICATION: "next_tli(20,8,-1) next_tli_startpos(25,-1,-1)",
  },
};
CAPTURED[18] = CAPTURED[17]!;
// 16 from its source: the int8 timeline and TIMELINE_HISTORY's tuple descriptor came after 15
// branched (in the walsender's 2022 result-set rework), so 16 describes its columns as 17 does.
CAPTURED[16] = CAPTURED[17]!;

Deno.test("result sets: every command's columns as a server of each major describes them", () => {
  for (const major of [15, 16, 17, 18]) {
    const columns = resultColumns(major);
    for (const [command, expected] of Object.entries(CAPTURED[major]!)) {
      assert.equal(
        described(columns[command as keyof typeof columns]),
        expected,
        `${major} ${command}`,
      );
    }
  }
});

Deno.test("result sets: SHOW's column is text with typmod -1 in every major", () => {
  assert.equal(described(showColumns("wal_segment_size")), "wal_segment_size(25,-1,-1)");
});
