/**
 * Finding the WAL files of a directory (or one file) and reading each segment's long page header,
 * without reading the segments themselves. Private to `lib/inspect/`.
 *
 * @module
 */

import {
  type LongPageHeader,
  readLongPageHeader,
  SIZE_OF_LONG_PAGE_HEADER,
} from "../wal/page_header.ts";
import {
  isValidSegmentSize,
  MIN_SEGMENT_SIZE,
  parseWalFileName,
  segmentStart,
  type TimelineId,
} from "../wal/segment.ts";
import { join } from "../wal/_path.ts";
import { readFileHead } from "../_io.ts";

/** A file whose name looks like a segment's, with what its first page claims. */
export interface CandidateFile {
  /** The file name, e.g. `000000010000000000000006` or `….partial`. */
  name: string;
  /** Where to open it. */
  path: string;
  /** Size in bytes. */
  size: number;
  /** The long page header, when the file begins with one that could be PostgreSQL's. */
  header: LongPageHeader | undefined;
}

/** A segment file placed on its timeline, once the segment size is known. */
export interface SegmentEntry extends CandidateFile {
  tli: TimelineId;
  segno: bigint;
  partial: boolean;
}

/** What a directory (or a single file) holds before any validation. */
export interface FileScan {
  /** Files named like segments (`.partial` too), sorted by name. */
  candidates: CandidateFile[];
  /** History files by the timeline they describe: their text. */
  histories: Map<TimelineId, { name: string; content: string }>;
  /** Other entries, skipped. */
  ignored: string[];
}

// Any segment size: the name's third field is checked against the real size later.
const SEGMENT_LIKE = /^[0-9A-F]{24}(\.partial)?$/;

/**
 * The long page header at the start of a file, or `undefined` when there is none PostgreSQL
 * could have written: a zero-filled or truncated file, or sizes no build accepts. The magic is
 * not judged here; the validator names a wrong one in xlogreader's words.
 */
function plausibleHeader(head: Uint8Array): LongPageHeader | undefined {
  const h = readLongPageHeader(head);
  if (h === undefined || !isValidSegmentSize(h.segmentSize)) return undefined;
  const bs = h.blockSize;
  if (bs < 1024 || (bs & (bs - 1)) !== 0 || bs > h.segmentSize) return undefined;
  return h;
}

async function candidate(path: string, name: string, size: number): Promise<CandidateFile> {
  return {
    name,
    path,
    size,
    header: plausibleHeader(await readFileHead(path, SIZE_OF_LONG_PAGE_HEADER)),
  };
}

/**
 * Lists a directory's WAL files and reads every segment's long header, or describes one file.
 * Subdirectories (`archive_status`) and unrelated files are skipped.
 */
export async function scanPath(
  path: string,
): Promise<{ kind: "directory" | "file"; scan: FileScan }> {
  const st = await Deno.stat(path);
  const scan: FileScan = { candidates: [], histories: new Map(), ignored: [] };
  if (!st.isDirectory) {
    const name = path.slice(path.lastIndexOf("/") + 1);
    scan.candidates.push(await candidate(path, name, st.size));
    return { kind: "file", scan };
  }
  const names: string[] = [];
  for await (const e of Deno.readDir(path)) {
    // Archives sometimes link segments in from elsewhere; archive_status is a directory.
    if (e.isFile || e.isSymlink) names.push(e.name);
  }
  names.sort();
  for (const name of names) {
    const full = join(path, name);
    if (!(await Deno.stat(full).then((s) => s.isFile, () => false))) {
      scan.ignored.push(name);
      continue;
    }
    const history = parseWalFileName(name, MIN_SEGMENT_SIZE);
    if (history?.kind === "history") {
      scan.histories.set(history.tli, { name, content: await Deno.readTextFile(full) });
    } else if (SEGMENT_LIKE.test(name)) {
      scan.candidates.push(await candidate(full, name, (await Deno.stat(full)).size));
    } else {
      scan.ignored.push(name);
    }
  }
  return { kind: "directory", scan };
}

/**
 * Places a candidate on its timeline by name; a file whose name is no segment name for this
 * segment size (a single file given by another name) is placed by its page header instead.
 */
export function placeSegment(f: CandidateFile, segmentSize: number): SegmentEntry | undefined {
  const parsed = parseWalFileName(f.name, segmentSize);
  if (parsed?.kind === "segment") return { ...f, ...parsed };
  const h = f.header;
  if (h === undefined || h.segmentSize !== segmentSize || h.tli < 1) return undefined;
  if (h.pageAddr % BigInt(segmentSize) !== 0n) return undefined;
  return { ...f, tli: h.tli, segno: h.pageAddr / BigInt(segmentSize), partial: false };
}

/** Whether a segment's first page is WAL for the position its name gives (not recycled, not zero). */
export function claimsPosition(f: SegmentEntry, segmentSize: number, magic: number): boolean {
  return f.header !== undefined && f.header.magic === magic &&
    f.header.pageAddr === segmentStart(f.segno, segmentSize);
}
