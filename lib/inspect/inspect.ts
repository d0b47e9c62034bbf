/**
 * What a WAL directory (or one segment file) holds: the cluster's identity, each timeline's
 * segments and gaps, where the validating reader stops and why, and per resource manager record
 * counts, as `pg_waldump --stats=rmgr` would give them. Also whether the directory is
 * consistent: no gaps inside a timeline, one system identifier, no invalid WAL before the end.
 *
 * @module
 */

import { parseHistory } from "../wal/history.ts";
import { formatLsn, type Lsn } from "../wal/lsn.ts";
import {
  majorVersionOfMagic,
  PAGE_MAGIC_BY_MAJOR,
  unsupportedMagicMessage,
} from "../wal/page_header.ts";
import { rmgrName } from "../wal/record_header.ts";
import {
  DEFAULT_BLOCK_SIZE,
  segmentFileName,
  segmentOf,
  segmentStart,
  type TimelineId,
} from "../wal/segment.ts";
import {
  type CandidateFile,
  claimsPosition,
  placeSegment,
  scanPath,
  type SegmentEntry,
} from "./_files.ts";
import { type TimelineStop, validateTimeline } from "./_validate_timeline.ts";
import type { ArchiveLayout } from "../archive/layout.ts";
import type { ArchiveFormat } from "../archive/format.ts";
import { walDirHint } from "../archive/_layout_hint.ts";

export type { TimelineStop } from "./_validate_timeline.ts";

/** Records of one resource manager on a timeline, as a row of `pg_waldump --stats=rmgr`. */
export interface RmgrStats {
  /** `xl_rmid`. */
  rmid: number;
  /** The name `pg_waldump` prints. */
  name: string;
  /** Records read (`N`). */
  records: number;
  /** Sum of their `xl_tot_len` (`Combined size`). */
  bytes: number;
}

/** A run of missing segments inside a timeline's range. */
export interface SegmentGap {
  /** The first missing segment's file name. */
  first: string;
  /** The last missing segment's file name. */
  last: string;
  /** How many segments are missing. */
  count: number;
  /** Where the missing WAL starts. */
  startLsn: Lsn;
}

/** One timeline of the directory. */
export interface TimelineReport {
  /** The timeline ID. */
  timeline: TimelineId;
  /** Its parent, from its history file; `undefined` for timeline 1 or without a history file. */
  parent: TimelineId | undefined;
  /** Where it forked off its parent (its history file's last switch point). */
  switchpoint: Lsn | undefined;
  /** Where a child timeline forked off it, from the child's history file. */
  forkedAt: { timeline: TimelineId; lsn: Lsn } | undefined;
  /** The first segment file (by position). */
  firstSegment: string;
  /** The last segment file. */
  lastSegment: string;
  /** Segment files present. */
  segments: number;
  /** Their sizes added up. */
  fileBytes: number;
  /** Start of the first segment. */
  startLsn: Lsn;
  /** End of the last segment. */
  endLsn: Lsn;
  /** Missing segments between the first and the last. */
  gaps: SegmentGap[];
  /** System identifiers in the long page headers of the timeline's files. */
  systemIds: bigint[];
  /** `wal_segment_size`. */
  segmentSize: number;
  /** `XLOG_BLCKSZ`. */
  blockSize: number;
  /** `XLOG_PAGE_MAGIC` of the files. */
  magic: number;
  /** The PostgreSQL major version of that magic, if known. */
  serverMajor: number | undefined;
  /** Start of the first record read. */
  firstRecord: Lsn | undefined;
  /** Start of the last valid record. */
  lastRecord: Lsn | undefined;
  /** Where the last valid record ends: how far this timeline's WAL is valid. */
  validEnd: Lsn;
  /** Why the reader stopped at (or, for `invalid`, right after) the valid end. */
  stop: TimelineStop;
  /** Records read. */
  records: number;
  /** Their `xl_tot_len` added up. */
  recordBytes: number;
  /** Per resource manager, by `xl_rmid`; only those with records. */
  rmgrs: RmgrStats[];
}

/** A reason the directory is inconsistent. */
export interface InspectIssue {
  /** What is wrong. */
  kind:
    | "gap"
    | "mixed-system-id"
    | "mixed-identity"
    | "invalid-before-end"
    | "unsupported-major"
    | "damaged-archive";
  /** The timeline concerned, when it is one. */
  timeline: TimelineId | undefined;
  /** An operator's sentence naming the files and LSNs involved. */
  message: string;
}

/** What {@linkcode inspectWal} found. */
export interface InspectReport {
  /** The path inspected. */
  path: string;
  /** Whether it was a directory or one file. */
  kind: "directory" | "file";
  /**
   * For an archive laid out by a tool, or compressed files: the layout, and how many segment
   * files of each format it holds. `undefined` for plain files in one directory.
   */
  archive: { layout: ArchiveLayout; formats: Partial<Record<ArchiveFormat, number>> } | undefined;
  /** The system identifier most segments carry. */
  systemId: bigint | undefined;
  /** `wal_segment_size` most segments carry (16 MB when none is readable). */
  segmentSize: number;
  /** `XLOG_BLCKSZ` most segments carry. */
  blockSize: number;
  /** `XLOG_PAGE_MAGIC` most segments carry. */
  magic: number;
  /** The PostgreSQL major version of that magic, if known. */
  serverMajor: number | undefined;
  /** Timelines with at least one segment file, ascending. */
  timelines: TimelineReport[];
  /** Why the directory is inconsistent; empty when it is consistent. */
  issues: InspectIssue[];
  /** Oddities that do not make it inconsistent (skipped files, duplicates, recycled segments). */
  warnings: string[];
  /** `issues.length === 0`. */
  consistent: boolean;
  /** Bytes of segment files covered (read, or skipped as padding or past a stop). */
  bytesValidated: number;
  /** How long validation took, in milliseconds. */
  elapsedMs: number;
}

/** Options of {@linkcode inspectWal}. */
export interface InspectOptions {
  /** Told how far validation got: bytes covered of the segment files' total. */
  onProgress?: (done: number, total: number) => void;
  /** Read size (default 1 MB). */
  chunkSize?: number;
}

const DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024;

interface Identity {
  systemId: bigint | undefined;
  segmentSize: number;
  blockSize: number;
  magic: number;
}

/** The identity most readable headers share; ties go to the one seen first (by file name). */
function majorityIdentity(files: CandidateFile[]): Identity {
  const groups = new Map<string, { identity: Identity; count: number }>();
  for (const f of files) {
    const h = f.header;
    if (!h) continue;
    const key = `${h.systemId}/${h.segmentSize}/${h.blockSize}/${h.magic}`;
    const g = groups.get(key);
    if (g) {
      g.count++;
    } else {
      groups.set(key, {
        identity: {
          systemId: h.systemId,
          segmentSize: h.segmentSize,
          blockSize: h.blockSize,
          magic: h.magic,
        },
        count: 1,
      });
    }
  }
  let best: { identity: Identity; count: number } | undefined;
  for (const g of groups.values()) {
    if (!best || g.count > best.count) best = g;
  }
  return best?.identity ?? {
    systemId: undefined,
    segmentSize: DEFAULT_SEGMENT_SIZE,
    blockSize: DEFAULT_BLOCK_SIZE,
    magic: PAGE_MAGIC_BY_MAJOR[15]!,
  };
}

function hex4(n: number): string {
  return "0x" + n.toString(16).toUpperCase().padStart(4, "0");
}

function listNames(names: string[], max = 3): string {
  const shown = names.slice(0, max).join(", ");
  return names.length > max ? `${shown} and ${names.length - max} more` : shown;
}

function byPosition(a: SegmentEntry, b: SegmentEntry): number {
  return a.segno < b.segno ? -1 : a.segno > b.segno ? 1 : 0;
}

/** Missing segment numbers between consecutive files. */
function findGaps(tli: TimelineId, files: SegmentEntry[], seg: number): SegmentGap[] {
  const gaps: SegmentGap[] = [];
  for (let i = 1; i < files.length; i++) {
    const before = files[i - 1]!.segno;
    const after = files[i]!.segno;
    if (after - before > 1n) {
      gaps.push({
        first: segmentFileName(tli, before + 1n, seg),
        last: segmentFileName(tli, after - 1n, seg),
        count: Number(after - before - 1n),
        startLsn: segmentStart(before + 1n, seg),
      });
    }
  }
  return gaps;
}

/** Issues about identity: more than one system identifier, or other sizes or versions. */
function identityIssues(files: SegmentEntry[], identity: Identity): InspectIssue[] {
  const issues: InspectIssue[] = [];
  const bySystem = new Map<bigint, string[]>();
  for (const f of files) {
    if (!f.header) continue;
    const names = bySystem.get(f.header.systemId) ?? [];
    names.push(f.name);
    bySystem.set(f.header.systemId, names);
  }
  if (bySystem.size > 1) {
    const parts = [...bySystem].map(([id, names]) =>
      id === identity.systemId
        ? `${id} (${names.length} file${names.length === 1 ? "" : "s"})`
        : `${id} (${listNames(names)})`
    );
    issues.push({
      kind: "mixed-system-id",
      timeline: undefined,
      message: `mixed system identifiers: ${parts.join(", ")}`,
    });
  }
  const odd = files.filter((f) =>
    f.header && f.header.systemId === identity.systemId &&
    (f.header.segmentSize !== identity.segmentSize || f.header.blockSize !== identity.blockSize ||
      f.header.magic !== identity.magic)
  );
  for (const f of odd) {
    const h = f.header!;
    issues.push({
      kind: "mixed-identity",
      timeline: f.tli,
      message: `segment ${f.name} has segment size ${h.segmentSize}, block size ${h.blockSize}, ` +
        `page magic ${hex4(h.magic)}; the others ${identity.segmentSize}, ${identity.blockSize}, ` +
        hex4(identity.magic),
    });
  }
  return issues;
}

/** Issues about WAL of a major walrelay cannot serve: one per unknown page magic, naming files. */
function unsupportedMajorIssues(files: SegmentEntry[]): InspectIssue[] {
  const byMagic = new Map<number, string[]>();
  for (const f of files) {
    if (!f.header || majorVersionOfMagic(f.header.magic) !== undefined) continue;
    const names = byMagic.get(f.header.magic) ?? [];
    names.push(f.name);
    byMagic.set(f.header.magic, names);
  }
  return [...byMagic].map(([magic, names]) => ({
    kind: "unsupported-major",
    timeline: undefined,
    message: `${unsupportedMagicMessage(magic)}: ${names.length === 1 ? "file" : "files"} ` +
      listNames(names),
  }));
}

/**
 * Inspects a WAL directory or a single segment file: groups segments by timeline, finds gaps and
 * identity conflicts, and runs the validating reader over each timeline from its first segment,
 * streaming the files in chunks.
 *
 * A timeline's WAL is *invalid before the end* when the reader stops inside it while later
 * segments of the same timeline hold WAL for their own position. Later segments that do not —
 * recycled ones (an old `xlp_pageaddr`) or zero-filled ones, as a live `pg_wal` keeps ahead of
 * the insert position — are only a warning.
 *
 * @param path A directory of segment files, or one segment file.
 * @param opts A progress callback and the read size.
 * @returns The report; `consistent` is false when there is an issue.
 * @throws {Deno.errors.NotFound} when the path does not exist; {@linkcode Error} when a single
 * file given is no WAL segment.
 *
 * @example
 * ```ts
 * import { inspectWal } from "./inspect.ts";
 * import assert from "node:assert/strict";
 * const report = await inspectWal(new URL("../../testdata/wal", import.meta.url).pathname);
 * assert.ok(report.consistent);
 * assert.deepEqual(report.timelines.map((t) => t.timeline), [1, 2]);
 * ```
 */
export async function inspectWal(
  path: string,
  opts: InspectOptions = {},
): Promise<InspectReport> {
  const began = performance.now();
  const { kind, scan } = await scanPath(path);
  const identity = majorityIdentity(scan.candidates);
  const seg = identity.segmentSize;
  const warnings: string[] = [];
  if (scan.ignored.length > 0) {
    warnings.push(`skipped ${scan.ignored.length} other file(s): ${listNames(scan.ignored)}`);
  }
  if (kind === "directory" && scan.candidates.length === 0) {
    const hint = await walDirHint(path);
    if (hint) warnings.push(`no WAL files here: ${hint}`);
  }

  // Place every file on its timeline; a complete copy wins over a .partial of the same segment.
  const byTimeline = new Map<TimelineId, Map<bigint, SegmentEntry>>();
  for (const c of scan.candidates) {
    const f = placeSegment(c, seg);
    if (!f && kind === "file") {
      throw new Error(`"${c.path}" is not a WAL segment file`);
    }
    if (!f) {
      warnings.push(`skipped ${c.name}: not a WAL segment of ${seg} bytes`);
      continue;
    }
    if (f.size !== seg) {
      warnings.push(`${f.name} has ${f.size} bytes, should be ${seg}`);
    }
    const m = byTimeline.get(f.tli) ?? new Map<bigint, SegmentEntry>();
    byTimeline.set(f.tli, m);
    const other = m.get(f.segno);
    if (other) {
      const keep = other.partial && !f.partial ? f : other;
      warnings.push(`both ${other.name} and ${f.name} present; inspecting ${keep.name}`);
      m.set(f.segno, keep);
    } else {
      m.set(f.segno, f);
    }
  }
  const timelineIds = [...byTimeline.keys()].sort((a, b) => a - b);
  const placed = timelineIds.flatMap((t) => [...byTimeline.get(t)!.values()].sort(byPosition));
  const issues = [...unsupportedMajorIssues(placed), ...identityIssues(placed, identity)];
  for (const c of scan.candidates) {
    if (c.archiveError !== undefined) {
      issues.push({ kind: "damaged-archive", timeline: undefined, message: c.archiveError });
    }
  }

  // What the history files say: each timeline's parent and switch point.
  const histories = new Map<TimelineId, { parent: TimelineId; switchpoint: Lsn }>();
  for (const [tli, h] of [...scan.histories].sort((a, b) => a[0] - b[0])) {
    try {
      const entries = parseHistory(tli, h.content, h.name);
      const parent = entries[entries.length - 2];
      if (parent?.end !== undefined) {
        histories.set(tli, { parent: parent.tli, switchpoint: parent.end });
      }
    } catch (e) {
      warnings.push(`${h.name}: ${(e as Error).message}`);
    }
  }

  const total = placed.reduce((n, f) => n + f.size, 0);
  let done = 0;
  const onBytes = (n: number): void => {
    done += n;
    opts.onProgress?.(done, total);
  };
  const chunk = new Uint8Array(opts.chunkSize ?? 1 << 20);
  const timelines: TimelineReport[] = [];
  for (const tli of timelineIds) {
    const files = [...byTimeline.get(tli)!.values()].sort(byPosition);
    const first = files[0]!;
    const last = files[files.length - 1]!;
    const gaps = findGaps(tli, files, seg);
    for (const g of gaps) {
      const what = g.count === 1 ? `segment ${g.first} is` : `segments ${g.first} to ${g.last} are`;
      issues.push({
        kind: "gap",
        timeline: tli,
        message: `timeline ${tli}: ${what} missing (WAL from ${formatLsn(g.startLsn)})`,
      });
    }
    const v = await validateTimeline(tli, files, identity, chunk, onBytes);

    if (v.stop.kind === "invalid" || v.stop.kind === "short") {
      const stopSeg = segmentOf(v.stop.lsn, seg);
      const later = files.filter((f) => f.segno > stopSeg);
      const genuine = later.filter((f) => claimsPosition(f, seg, identity.magic));
      if (genuine.length > 0) {
        issues.push({
          kind: "invalid-before-end",
          timeline: tli,
          message: `timeline ${tli}: invalid WAL at ${formatLsn(v.stop.lsn)} before the end: ` +
            `${v.stop.message}; ${genuine.length} later segment(s) follow: ` +
            listNames(genuine.map((f) => f.name)),
        });
      } else if (later.length > 0) {
        warnings.push(
          `timeline ${tli}: ${later.length} segment(s) after the valid end hold no WAL for their ` +
            `position (recycled or zero-filled): ${listNames(later.map((f) => f.name))}`,
        );
      }
    }

    const systemIds = [...new Set(files.flatMap((f) => f.header ? [f.header.systemId] : []))];
    const rmgrs = [...v.rmgrs].sort((a, b) => a[0] - b[0]).map(([rmid, c]) => ({
      rmid,
      name: rmgrName(rmid),
      records: c.records,
      bytes: c.bytes,
    }));
    const own = histories.get(tli);
    let forkedAt: TimelineReport["forkedAt"];
    for (const [child, h] of histories) {
      if (h.parent === tli && (forkedAt === undefined || child < forkedAt.timeline)) {
        forkedAt = { timeline: child, lsn: h.switchpoint };
      }
    }
    // A short parent matters to a client following the history, but the archive itself may
    // simply not hold it; an issue above already names a stop inside the files.
    const hasIssue = issues.some((i) => i.timeline === tli);
    if (forkedAt && v.validEnd < forkedAt.lsn && !hasIssue) {
      warnings.push(
        `timeline ${tli}: valid WAL ends at ${formatLsn(v.validEnd)}, before the switch point ` +
          `${formatLsn(forkedAt.lsn)} to timeline ${forkedAt.timeline}`,
      );
    }
    timelines.push({
      timeline: tli,
      parent: own?.parent,
      switchpoint: own?.switchpoint,
      forkedAt,
      firstSegment: first.name,
      lastSegment: last.name,
      segments: files.length,
      fileBytes: files.reduce((n, f) => n + f.size, 0),
      startLsn: segmentStart(first.segno, seg),
      endLsn: segmentStart(last.segno + 1n, seg),
      gaps,
      systemIds,
      segmentSize: seg,
      blockSize: identity.blockSize,
      magic: identity.magic,
      serverMajor: majorVersionOfMagic(identity.magic),
      firstRecord: v.firstRecord,
      lastRecord: v.lastRecord,
      validEnd: v.validEnd,
      stop: v.stop,
      records: rmgrs.reduce((n, r) => n + r.records, 0),
      recordBytes: rmgrs.reduce((n, r) => n + r.bytes, 0),
      rmgrs,
    });
  }
  return {
    path,
    kind,
    archive: scan.archive,
    systemId: identity.systemId,
    segmentSize: seg,
    blockSize: identity.blockSize,
    magic: identity.magic,
    serverMajor: majorVersionOfMagic(identity.magic),
    timelines,
    issues,
    warnings,
    consistent: issues.length === 0,
    bytesValidated: done,
    elapsedMs: performance.now() - began,
  };
}
