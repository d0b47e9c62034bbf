/**
 * Renders an {@linkcode InspectReport}: as text for an operator (the statistics laid out as
 * `pg_waldump --stats=rmgr` lays them out), or as JSON-ready values.
 *
 * @module
 */

import { formatLsn } from "../wal/lsn.ts";
import type { InspectReport, TimelineReport, TimelineStop } from "./inspect.ts";

function pct(part: number, whole: number): string {
  // pg_waldump prints "%6.02f" and 0 for an empty total.
  return (whole === 0 ? 0 : (100 * part) / whole).toFixed(2).padStart(6);
}

function size(bytes: number): string {
  const mb = bytes / (1024 * 1024);
  if (mb >= 1024 && bytes % (1024 * 1024 * 1024) === 0) return `${mb / 1024} GB`;
  if (bytes % (1024 * 1024) === 0) return `${mb} MB`;
  return `${bytes} bytes`;
}

function magicText(magic: number): string {
  return "0x" + magic.toString(16).toUpperCase().padStart(4, "0");
}

function stopText(stop: TimelineStop, validEnd: bigint): string {
  const end = formatLsn(validEnd);
  return stop.message === "" ? `${end} (end of the last segment file)` : `${end}: ${stop.message}`;
}

function rmgrTable(t: TimelineReport): string[] {
  const head = "Type".padEnd(28) + "N".padStart(12) + "      (%)" + "Combined size".padStart(20) +
    "      (%)";
  const rule = "----".padEnd(28) + "-".padStart(12) + "      ---" + "-------------".padStart(20) +
    "      ---";
  const rows = t.rmgrs.map((r) =>
    r.name.padEnd(28) + String(r.records).padStart(12) + ` (${pct(r.records, t.records)})` +
    String(r.bytes).padStart(20) + ` (${pct(r.bytes, t.recordBytes)})`
  );
  const total = "Total".padEnd(28) + String(t.records).padStart(12) + " ".repeat(9) +
    String(t.recordBytes).padStart(20) + " [100%]";
  return [head, rule, ...rows, total].map((l) => "  " + l);
}

function timelineText(t: TimelineReport): string[] {
  const lines = [`timeline ${t.timeline}`];
  const range = t.segments === 1 ? t.firstSegment : `${t.firstSegment} .. ${t.lastSegment}`;
  lines.push(
    `  segments    ${range} (${t.segments} file${t.segments === 1 ? "" : "s"}, ` +
      `${formatLsn(t.startLsn)} to ${formatLsn(t.endLsn)})`,
  );
  lines.push(
    "  gaps        " +
      (t.gaps.length === 0
        ? "none"
        : t.gaps.map((g) =>
          g.count === 1 ? g.first : `${g.first} .. ${g.last} (${g.count} segments)`
        ).join(", ")),
  );
  const version = t.serverMajor === undefined ? "unknown version" : `PostgreSQL ${t.serverMajor}`;
  lines.push(
    `  system      ${t.systemIds.join(" and ") || "unknown"}, segment size ${
      size(t.segmentSize)
    }, ` +
      `block size ${t.blockSize}, ${version} (page magic ${magicText(t.magic)})`,
  );
  const history: string[] = [];
  if (t.parent !== undefined && t.switchpoint !== undefined) {
    history.push(`from timeline ${t.parent} at ${formatLsn(t.switchpoint)}`);
  }
  if (t.forkedAt) {
    history.push(`to timeline ${t.forkedAt.timeline} at ${formatLsn(t.forkedAt.lsn)}`);
  }
  if (history.length > 0) lines.push(`  switch      ${history.join(", ")}`);
  const span = t.firstRecord === undefined || t.lastRecord === undefined
    ? ""
    : `, first at ${formatLsn(t.firstRecord)}, last at ${formatLsn(t.lastRecord)}`;
  lines.push(`  records     ${t.records} (${t.recordBytes} bytes)${span}`);
  lines.push(`  valid end   ${stopText(t.stop, t.validEnd)}`);
  if (t.records > 0) lines.push("", ...rmgrTable(t));
  return lines;
}

/**
 * The report as text: a header, then per timeline its segments, gaps, identity, switch points,
 * valid end with the reason, and the per resource manager table; then the verdict.
 *
 * @example
 * ```ts
 * import { inspectWal } from "./inspect.ts";
 * import { formatInspectText } from "./format.ts";
 * import assert from "node:assert/strict";
 * const report = await inspectWal(new URL("../../testdata/wal", import.meta.url).pathname);
 * const text = formatInspectText(report);
 * assert.match(text, /^timeline 2$/m);
 * assert.match(text, /^consistent$/m);
 * ```
 */
export function formatInspectText(report: InspectReport): string {
  const files = report.timelines.reduce((n, t) => n + t.segments, 0);
  const lines = [
    `${report.path}: ${report.kind}, ${files} segment file${files === 1 ? "" : "s"} on ` +
    `${report.timelines.length} timeline${report.timelines.length === 1 ? "" : "s"}`,
  ];
  if (report.archive) {
    const formats = Object.entries(report.archive.formats).map(([f, n]) => `${f} ${n}`);
    lines.push(`archive: ${report.archive.layout} layout, ${formats.join(", ")}`);
  }
  for (const t of report.timelines) lines.push("", ...timelineText(t));
  lines.push("");
  for (const w of report.warnings) lines.push(`warning: ${w}`);
  if (report.consistent) {
    lines.push("consistent");
  } else {
    lines.push("inconsistent:");
    for (const i of report.issues) lines.push(`  ${i.message}`);
  }
  return lines.join("\n") + "\n";
}

/** A JSON value. */
export type JsonValue =
  | string
  | number
  | boolean
  | null
  | JsonValue[]
  | { [key: string]: JsonValue };

function lsnOrNull(lsn: bigint | undefined): string | null {
  return lsn === undefined ? null : formatLsn(lsn);
}

function timelineJson(t: TimelineReport): JsonValue {
  return {
    timeline: t.timeline,
    parent: t.parent ?? null,
    switchpoint: lsnOrNull(t.switchpoint),
    forkedAt: t.forkedAt ? { timeline: t.forkedAt.timeline, lsn: formatLsn(t.forkedAt.lsn) } : null,
    firstSegment: t.firstSegment,
    lastSegment: t.lastSegment,
    segments: t.segments,
    fileBytes: t.fileBytes,
    startLsn: formatLsn(t.startLsn),
    endLsn: formatLsn(t.endLsn),
    gaps: t.gaps.map((g) => ({
      first: g.first,
      last: g.last,
      count: g.count,
      startLsn: formatLsn(g.startLsn),
    })),
    systemIds: t.systemIds.map(String),
    segmentSize: t.segmentSize,
    blockSize: t.blockSize,
    magic: t.magic,
    serverMajor: t.serverMajor ?? null,
    firstRecord: lsnOrNull(t.firstRecord),
    lastRecord: lsnOrNull(t.lastRecord),
    validEnd: formatLsn(t.validEnd),
    stop: { kind: t.stop.kind, lsn: formatLsn(t.stop.lsn), message: t.stop.message },
    records: t.records,
    recordBytes: t.recordBytes,
    rmgrs: t.rmgrs.map((r) => ({ ...r })),
  };
}

/**
 * The report as a JSON value, field for field: LSNs as PostgreSQL prints them (`%X/%X`), system
 * identifiers as decimal strings (as `IDENTIFY_SYSTEM` reports them), absent values as `null`.
 *
 * @example
 * ```ts
 * import { inspectWal } from "./inspect.ts";
 * import { inspectReportJson } from "./format.ts";
 * import assert from "node:assert/strict";
 * const report = await inspectWal(new URL("../../testdata/wal", import.meta.url).pathname);
 * const json = JSON.parse(JSON.stringify(inspectReportJson(report)));
 * assert.equal(json.timelines[1].parent, 1);
 * assert.equal(typeof json.systemId, "string");
 * ```
 */
export function inspectReportJson(report: InspectReport): JsonValue {
  return {
    path: report.path,
    kind: report.kind,
    archive: report.archive
      ? { layout: report.archive.layout, formats: { ...report.archive.formats } }
      : null,
    consistent: report.consistent,
    systemId: report.systemId === undefined ? null : String(report.systemId),
    segmentSize: report.segmentSize,
    blockSize: report.blockSize,
    magic: report.magic,
    serverMajor: report.serverMajor ?? null,
    timelines: report.timelines.map(timelineJson),
    issues: report.issues.map((i) => ({
      kind: i.kind,
      timeline: i.timeline ?? null,
      message: i.message,
    })),
    warnings: report.warnings,
    bytesValidated: report.bytesValidated,
    elapsedMs: Math.round(report.elapsedMs),
  };
}
