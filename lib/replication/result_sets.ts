/**
 * The columns of every result set a replication command returns, BASE_BACKUP's included, in one
 * place, as the walsender of each PostgreSQL major describes them; and the result set that ends a
 * historic timeline.
 *
 * @module
 */

import { commandComplete, type FieldDescription, resultSet, TypeOid } from "../pgwire/messages.ts";
import type { TimelineHistory } from "../wal/history.ts";
import { formatLsn, type Lsn } from "../wal/lsn.ts";
import type { TimelineId } from "../wal/segment.ts";

const text = (name: string): FieldDescription => ({ name, typeOid: TypeOid.TEXT, typeLen: -1 });

/** The commands whose result sets walrelay sends, START_REPLICATION's end of timeline included. */
export type ResultSetCommand =
  | "IDENTIFY_SYSTEM"
  | "TIMELINE_HISTORY"
  | "READ_REPLICATION_SLOT"
  | "CREATE_REPLICATION_SLOT"
  | "START_REPLICATION";

/** Each command's columns, as one major's `walsender.c` describes them. */
export type ResultColumns = Readonly<Record<ResultSetCommand, readonly FieldDescription[]>>;

/** What every major from 15 to 18 sends alike. */
const COMMON = {
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
} as const;

/** 15: the timeline is int4, and SendTimeLineHistory builds its descriptor by hand (typmod 0). */
const COLUMNS_15: ResultColumns = {
  ...COMMON,
  IDENTIFY_SYSTEM: [
    text("systemid"),
    { name: "timeline", typeOid: TypeOid.INT4, typeLen: 4 },
    text("xlogpos"),
    text("dbname"),
  ],
  TIMELINE_HISTORY: [
    { name: "filename", typeOid: TypeOid.TEXT, typeLen: -1, typeMod: 0 },
    { name: "content", typeOid: TypeOid.TEXT, typeLen: -1, typeMod: 0 },
  ],
};

/**
 * 16 on: the timeline is int8, as in every other command, and TIMELINE_HISTORY's descriptor
 * comes from a tuple descriptor (typmod -1). Both changes came in the same 2022 rework of the
 * walsender's result sets, after 15 branched.
 */
const COLUMNS_16: ResultColumns = {
  ...COMMON,
  IDENTIFY_SYSTEM: [
    text("systemid"),
    { name: "timeline", typeOid: TypeOid.INT8, typeLen: 8 },
    text("xlogpos"),
    text("dbname"),
  ],
  TIMELINE_HISTORY: [text("filename"), text("content")],
};

/**
 * The columns a server of `major` sends for each command.
 *
 * @example
 * ```ts
 * import { resultColumns } from "./result_sets.ts";
 * import assert from "node:assert/strict";
 * assert.equal(resultColumns(15).IDENTIFY_SYSTEM[1]!.typeOid, 23);
 * assert.equal(resultColumns(18).IDENTIFY_SYSTEM[1]!.typeOid, 20);
 * ```
 */
export function resultColumns(major: number): ResultColumns {
  return major <= 15 ? COLUMNS_15 : COLUMNS_16;
}

/** `oid`, the type of BASE_BACKUP's `spcoid`. */
const OID_TYPE = 26;

/**
 * Columns of the BASE_BACKUP result sets as `SendXlogRecPtrResult` and `SendTablespaceList` of
 * a server of `major` build them.
 *
 * @example
 * ```ts
 * import { baseBackupColumns } from "./result_sets.ts";
 * import assert from "node:assert/strict";
 * assert.equal(baseBackupColumns(15).position[1]!.typeLen, -1);
 * assert.equal(baseBackupColumns(17).position[1]!.typeLen, 8);
 * ```
 */
export function baseBackupColumns(
  major: number,
): { position: FieldDescription[]; tablespaces: FieldDescription[] } {
  // 15 builds the descriptors by hand (typmod 0, and int8 with typlen -1); 16 on take them from
  // a tuple descriptor (typmod -1, typlen 8).
  const mod = major <= 15 ? 0 : -1;
  return {
    position: [
      { name: "recptr", typeOid: TypeOid.TEXT, typeLen: -1, typeMod: mod },
      { name: "tli", typeOid: TypeOid.INT8, typeLen: major <= 15 ? -1 : 8, typeMod: mod },
    ],
    tablespaces: [
      { name: "spcoid", typeOid: OID_TYPE, typeLen: 4, typeMod: mod },
      { name: "spclocation", typeOid: TypeOid.TEXT, typeLen: -1, typeMod: mod },
      { name: "size", typeOid: TypeOid.INT8, typeLen: 8, typeMod: mod },
    ],
  };
}

/**
 * `SHOW`'s one column, named after the setting; the same in every major.
 *
 * @example
 * ```ts
 * import { showColumns } from "./result_sets.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(showColumns("wal_segment_size").map((f) => f.typeOid), [25]);
 * ```
 */
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
      COMMON.START_REPLICATION,
      [[String(next), formatLsn(switchPoint)]],
      "START_STREAMING",
    ),
    commandComplete("START_REPLICATION"),
  ];
}
