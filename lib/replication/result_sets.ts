/**
 * The columns of every result set a replication command returns, in one place, as the walsender
 * describes them; and the result set that ends a historic timeline.
 *
 * @module
 */

import { commandComplete, type FieldDescription, resultSet, TypeOid } from "../pgwire/messages.ts";
import type { TimelineHistory } from "../wal/history.ts";
import { formatLsn, type Lsn } from "../wal/lsn.ts";
import type { TimelineId } from "../wal/segment.ts";

const text = (name: string): FieldDescription => ({ name, typeOid: TypeOid.TEXT, typeLen: -1 });

/** Each command's columns, as `walsender.c` builds its tuple descriptors. */
export const COLUMNS: Readonly<
  Record<
    | "IDENTIFY_SYSTEM"
    | "TIMELINE_HISTORY"
    | "READ_REPLICATION_SLOT"
    | "CREATE_REPLICATION_SLOT"
    | "START_REPLICATION",
    readonly FieldDescription[]
  >
> = {
  IDENTIFY_SYSTEM: [
    text("systemid"),
    { name: "timeline", typeOid: TypeOid.INT4, typeLen: 4 },
    text("xlogpos"),
    text("dbname"),
  ],
  // SendTimeLineHistory builds this descriptor by hand, with a typmod of 0.
  TIMELINE_HISTORY: [
    { name: "filename", typeOid: TypeOid.TEXT, typeLen: -1, typeMod: 0 },
    { name: "content", typeOid: TypeOid.TEXT, typeLen: -1, typeMod: 0 },
  ],
  READ_REPLICATION_SLOT: [
    text("slot_type"),
    text("restart_lsn"),
    { name: "restart_tli", typeOid: TypeOid.INT8, typeLen: 8 },
  ],
  CREATE_REPLICATION_SLOT: [
    text("slot_name"),
    text("consistent_point"),
    text("snapshot_name"),
    text("output_plugin"),
  ],
  // Sent when streaming of a historic timeline ends: where the next timeline starts.
  START_REPLICATION: [
    { name: "next_tli", typeOid: TypeOid.INT8, typeLen: 8 },
    text("next_tli_startpos"),
  ],
};

/** `SHOW`'s one column, named after the setting. */
export function showColumns(name: string): FieldDescription[] {
  return [text(name)];
}

/**
 * The `next_tli` result set and both CommandCompletes that end a historic timeline, as
 * `StartReplication` sends them after COPY (or instead of it, when the start is the switch point).
 *
 * @example
 * ```ts
 * import { endOfTimeline } from "./result_sets.ts";
 * import assert from "node:assert/strict";
 * const history = [{ tli: 1, begin: 0n, end: 0x7311718n }, { tli: 2, begin: 0x7311718n, end: undefined }];
 * const messages = endOfTimeline(history, 1, 0x7311718n);
 * assert.deepEqual(messages.map((m) => String.fromCharCode(m[0]!)), ["T", "D", "C", "C"]);
 * ```
 */
export function endOfTimeline(
  history: TimelineHistory,
  tli: TimelineId,
  switchPoint: Lsn,
): Uint8Array[] {
  const idx = history.findIndex((h) => h.tli === tli);
  const next = history[idx + 1]?.tli ?? tli + 1;
  return [
    ...resultSet(
      COLUMNS.START_REPLICATION,
      [[String(next), formatLsn(switchPoint)]],
      "START_STREAMING",
    ),
    commandComplete("START_REPLICATION"),
  ];
}
