/**
 * What a backup's archives say about it: `backup_label`, `tablespace_map`, `PG_VERSION`, the
 * system identifier in `global/pg_control`, and the sizes PostgreSQL reports for PROGRESS.
 *
 * @module
 */

import { concatBytes } from "../_io.ts";
import { type Lsn, parseLsn } from "../wal/lsn.ts";
import type { TimelineId } from "../wal/segment.ts";
import { paddingAfter, TAR_BLOCK_SIZE, tarEvents } from "./tar.ts";

/** The lines of `backup_label` a relay needs. */
export interface BackupLabel {
  /** `START WAL LOCATION`. */
  startLsn: Lsn;
  /** `START TIMELINE`. */
  timeline: TimelineId;
  /** `LABEL`. */
  label: string;
  /** `START TIME`, as written. */
  startTime: string;
}

/**
 * Parses `backup_label`.
 *
 * @throws {Error} when a line the relay needs is missing.
 *
 * @example
 * ```ts
 * import { parseBackupLabel } from "./archive_info.ts";
 * import assert from "node:assert/strict";
 * const l = parseBackupLabel("START WAL LOCATION: 0/7000028 (file 000000010000000000000007)\n" +
 *   "START TIME: 2026-12-01 21:48:33 UTC\nLABEL: x\nSTART TIMELINE: 1\n");
 * assert.equal(l.startLsn, 0x7000028n);
 * assert.equal(l.timeline, 1);
 * ```
 */
export function parseBackupLabel(text: string): BackupLabel {
  const line = (key: string): string | undefined =>
    text.split("\n").find((l) => l.startsWith(`${key}: `))?.slice(key.length + 2);
  const start = parseLsn(line("START WAL LOCATION")?.split(" ")[0] ?? "");
  if (start === undefined) throw new Error('backup_label has no "START WAL LOCATION"');
  const tli = Number(line("START TIMELINE") ?? NaN);
  if (!(tli >= 1)) throw new Error('backup_label has no "START TIMELINE"');
  return {
    startLsn: start,
    timeline: tli,
    label: line("LABEL") ?? "",
    startTime: line("START TIME") ?? "",
  };
}

/** What the main archive says. */
export interface BaseArchiveFacts {
  /** Archive size in bytes. */
  bytes: number;
  /** The PROGRESS estimate in kB. */
  estimateKb: number;
  /** `backup_label`. */
  backupLabel: BackupLabel;
  /** `PG_VERSION`. */
  major: number;
  /** The system identifier from `global/pg_control`. */
  systemId: bigint;
  /** `tablespace_map` lines, in order; empty when there is no map. */
  tablespaceMap: { oid: string; location: string }[];
  /** Whether the archive holds WAL files under `pg_wal/`. */
  holdsWal: boolean;
}

/** Members the PROGRESS estimate leaves out: `sendDir(sizeonly)` does not count them. */
const NOT_ESTIMATED = new Set(["backup_label", "tablespace_map", "global/pg_control"]);

const decoder = new TextDecoder();

/**
 * Reads the main archive (`base.tar`) through.
 *
 * @throws {Error} when `backup_label`, `PG_VERSION` or `global/pg_control` is missing.
 */
export async function scanBaseArchive(
  chunks: AsyncIterable<Uint8Array>,
): Promise<BaseArchiveFacts> {
  let bytes = 0;
  let estimate = 0;
  let current: string | undefined;
  const wanted = new Map<string, Uint8Array[]>();
  let holdsWal = false;
  for await (const ev of tarEvents(chunks)) {
    if (ev.kind === "member") {
      bytes += TAR_BLOCK_SIZE;
      const h = ev.header;
      current = h.name;
      const isWal = h.typeflag === "0" && h.name.startsWith("pg_wal/");
      if (isWal) holdsWal = true;
      if (!NOT_ESTIMATED.has(h.name) && !isWal) {
        estimate += TAR_BLOCK_SIZE + h.size + paddingAfter(h.size);
      }
      if (["backup_label", "tablespace_map", "PG_VERSION", "global/pg_control"].includes(h.name)) {
        wanted.set(h.name, []);
      }
    } else if (ev.kind === "data") {
      bytes += ev.bytes.length;
      if (current !== undefined) wanted.get(current)?.push(ev.bytes.slice());
    } else {
      bytes += ev.bytes.length;
    }
  }
  const text = (name: string): string | undefined => {
    const parts = wanted.get(name);
    return parts ? decoder.decode(concatBytes(...parts)) : undefined;
  };
  const label = text("backup_label");
  if (label === undefined) throw new Error("base.tar holds no backup_label");
  const version = text("PG_VERSION");
  if (version === undefined) throw new Error("base.tar holds no PG_VERSION");
  const control = wanted.get("global/pg_control");
  if (!control) throw new Error("base.tar holds no global/pg_control");
  const controlBytes = concatBytes(...control);
  const tablespaceMap = (text("tablespace_map") ?? "").split("\n").filter((l) => l !== "").map(
    (l) => {
      const cut = l.indexOf(" ");
      return { oid: l.slice(0, cut), location: l.slice(cut + 1) };
    },
  );
  return {
    bytes,
    // Plain format counts a symlink entry per tablespace where -Ft has the map.
    estimateKb: Math.floor((estimate + TAR_BLOCK_SIZE * tablespaceMap.length) / 1024),
    backupLabel: parseBackupLabel(label),
    major: parseInt(version.trim(), 10),
    systemId: new DataView(controlBytes.buffer, controlBytes.byteOffset).getBigUint64(0, true),
    tablespaceMap,
    holdsWal,
  };
}

/** A tablespace archive's size and PROGRESS estimate (everything but the trailer). */
export async function scanTablespaceArchive(
  chunks: AsyncIterable<Uint8Array>,
): Promise<{ bytes: number; estimateKb: number }> {
  let bytes = 0;
  let trailer = 0;
  for await (const ev of tarEvents(chunks)) {
    if (ev.kind === "member") bytes += TAR_BLOCK_SIZE;
    else bytes += ev.bytes.length;
    if (ev.kind === "end") trailer = ev.bytes.length;
  }
  return { bytes, estimateKb: Math.floor((bytes - trailer) / 1024) };
}
