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
import {
  type ArchiveEntry,
  type ArchiveLayout,
  flatWalFile,
  scanArchive,
} from "../archive/layout.ts";
import { type ArchiveFormat, detectFormat } from "../archive/format.ts";
import { decodeArchived } from "../archive/codec.ts";
import { readArchivedFile } from "../archive/read_segment.ts";

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
  /**
   * The archived file behind the name, when its bytes must be decoded (compressed, or named with
   * a checksum); `size` is then the decoded size.
   */
  archive?: { entry: ArchiveEntry; format: ArchiveFormat };
  /** Why an archived file could not be decoded. */
  archiveError?: string;
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
  /** The directory's layout, and how many files of each format it holds. */
  archive?: { layout: ArchiveLayout; formats: Partial<Record<ArchiveFormat, number>> };
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
 * An archived file as a candidate: decoded once to learn its size and header (the bytes are not
 * kept; validation decodes the file again, checking size and checksum).
 */
async function archivedCandidate(entry: ArchiveEntry): Promise<CandidateFile> {
  const src = await Deno.readFile(entry.path);
  const format = entry.format ?? detectFormat(entry.name, src.subarray(0, 16));
  const c: CandidateFile = {
    name: entry.name,
    path: entry.path,
    size: 0,
    header: undefined,
    archive: { entry, format },
  };
  try {
    const { data } = await decodeArchived(src, format, { file: entry.path });
    c.size = data.length;
    c.header = plausibleHeader(data.subarray(0, SIZE_OF_LONG_PAGE_HEADER));
  } catch (e) {
    c.archiveError = (e as Error).message;
  }
  return c;
}

/**
 * The plain bytes of an archived candidate, checked as the relay checks them (whole segment,
 * pgBackRest's SHA-1).
 *
 * @throws {ArchiveFormatError} naming the file when they are not what its name promises.
 */
export async function readArchivedCandidate(
  f: CandidateFile,
  segmentSize: number,
): Promise<Uint8Array> {
  return (await readArchivedFile(f.archive!.entry, { segmentSize })).data;
}

/** An archive that is not plain files in one directory: its files by their plain names. */
async function scanLayout(path: string, scan: FileScan): Promise<boolean> {
  const listing = await scanArchive(path, { flatMix: true });
  const archived = listing.entries.filter((e) => e.path !== join(path, e.name));
  if (archived.length === 0) return false;
  const formats: Partial<Record<ArchiveFormat, number>> = {};
  for (const e of listing.entries) {
    const history = parseWalFileName(e.name, MIN_SEGMENT_SIZE);
    const plainHere = e.path === join(path, e.name);
    if (history?.kind === "history") {
      const content = plainHere
        ? await Deno.readTextFile(e.path)
        : new TextDecoder().decode((await readArchivedFile(e)).data);
      scan.histories.set(history.tli, { name: e.name, content });
      continue;
    }
    if (!SEGMENT_LIKE.test(e.name)) continue;
    const c = plainHere
      ? await candidate(e.path, e.name, (await Deno.stat(e.path)).size)
      : await archivedCandidate(e);
    const format = c.archive?.format ?? "plain";
    formats[format] = (formats[format] ?? 0) + 1;
    scan.candidates.push(c);
  }
  scan.archive = { layout: listing.layout, formats };
  return true;
}

/**
 * Lists a directory's WAL files and reads every segment's long header, or describes one file.
 * Subdirectories (`archive_status`) and unrelated files are skipped. An archive laid out by a
 * tool (pg_receivewal `--compress`, pgBackRest, Barman, WAL-G) is listed by plain names, its
 * compressed files decoded; so is a single compressed file.
 */
export async function scanPath(
  path: string,
): Promise<{ kind: "directory" | "file"; scan: FileScan }> {
  const st = await Deno.stat(path);
  const scan: FileScan = { candidates: [], histories: new Map(), ignored: [] };
  if (!st.isDirectory) {
    let name = path.slice(path.lastIndexOf("/") + 1);
    const format = detectFormat(name, await readFileHead(path, 16));
    if (format === "plain") {
      scan.candidates.push(await candidate(path, name, st.size));
    } else {
      // The file's name tells the tool: `SEG.gz.partial`, `SEG-<sha1>.zst`, Barman's bare `SEG`.
      const flat = flatWalFile(name);
      const sha = /^([0-9A-F]{24}(?:\.partial)?)-([0-9a-f]{40})(?:\.|$)/.exec(name);
      const layout: ArchiveLayout = sha
        ? "pgbackrest"
        : flat?.format === "plain"
        ? "barman"
        : flat?.format === "gzip" || flat?.format === "lz4"
        ? "pg_receivewal"
        : "wal-g";
      name = sha?.[1] ?? flat?.name ?? name;
      const entry: ArchiveEntry = { name, path, format, ...(sha && { expectedSha1: sha[2]! }) };
      scan.candidates.push(await archivedCandidate(entry));
      scan.archive = { layout, formats: { [format]: 1 } };
    }
    return { kind: "file", scan };
  }
  if (await scanLayout(path, scan)) return { kind: "directory", scan };
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
