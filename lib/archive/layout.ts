/**
 * Recognising how a directory of archived WAL is laid out, and listing the WAL files it holds
 * under their plain names. The layouts are those the tools write:
 *
 * - plain: `SEG`, `SEG.partial`, `TTTTTTTT.history` (pg_receivewal, an archive_command `cp`);
 * - pg_receivewal `--compress`: `SEG.gz`, `SEG.lz4` and their `.partial`s;
 * - pgBackRest, the stanza's archive directory `REPO/archive/STANZA`:
 *   `<major>-<id>/<first 16 hex>/SEG-<sha1>[.gz|.lz4|.zst|.bz2]` and `<major>-<id>/TTTTTTTT.history`;
 * - Barman, a server directory or its `wals/`: `wals/<first 16 hex>/SEG`, compressed or not under
 *   the same name, and `wals/TTTTTTTT.history`; beside them `streaming/`, where `receive-wal`
 *   writes `SEG.partial` and leaves the newest segments until `archive-wal` moves them;
 * - WAL-G's file storage, its root or its `wal_005/`: `wal_005/SEG.<lz4|zst|br|lzma>`.
 *
 * @module
 */

import { join } from "../wal/_path.ts";
import { ArchiveLayoutError } from "./errors.ts";
import { type ArchiveFormat, formatOfExtension } from "./format.ts";

/** A layout {@linkcode scanArchive} recognises. */
export type ArchiveLayout = "plain" | "pg_receivewal" | "pgbackrest" | "barman" | "wal-g";

/** One archived WAL file. */
export interface ArchiveEntry {
  /**
   * Its plain name, as PostgreSQL names the file: `000000010000000000000003`,
   * `000000010000000000000009.partial` or `00000002.history`.
   */
  name: string;
  /** Where the file is. */
  path: string;
  /**
   * Its encoding when the name tells it; absent when only its bytes can (Barman keeps the plain
   * name whatever the compression).
   */
  format?: ArchiveFormat;
  /** The SHA-1 of the plain bytes, lower-case hex, when the name carries it (pgBackRest). */
  expectedSha1?: string;
}

/** What {@linkcode scanArchive} found. */
export interface ArchiveListing {
  /** The layout recognised. */
  layout: ArchiveLayout;
  /** The directory holding the WAL: the one given, or `wals/`, `wal_005/`, `<major>-<id>/`. */
  walDir: string;
  /** The WAL files, sorted by plain name. */
  entries: ArchiveEntry[];
}

/** Options of {@linkcode scanArchive}. */
export interface ScanOptions {
  /**
   * Take plain and compressed files side by side in one directory as one flat layout,
   * `pg_receivewal`: the relay's own directory under `--compress` (completed segments compressed,
   * the tail plain), or a pg_receivewal target that was run with and without `--compress`. WAL-G
   * is then told only by its `wal_005` directory.
   */
  flatMix?: boolean;
  /**
   * pgBackRest's archive id (`15-1`) to serve; by default the newest (highest id), which is the
   * stanza's current database after a `stanza-upgrade`.
   */
  archiveId?: string;
}

const SEGMENT = /^[0-9A-F]{24}$/;
const PARTIAL_SEGMENT = /^[0-9A-F]{24}\.partial$/;
const HISTORY = /^[0-9A-F]{8}\.history$/;
const HASH_DIR = /^[0-9A-F]{16}$/;
const ARCHIVE_ID = /^(\d+)-(\d+)$/;
/** A segment or history file, `.partial` or not, and what follows its plain name. */
const WAL_NAME =
  /^([0-9A-F]{24}(?:\.partial)?|[0-9A-F]{8}\.history)(?:\.([a-z0-9]+))?(\.partial)?$/;
const PGBACKREST_NAME = /^([0-9A-F]{24}(?:\.partial)?)-([0-9a-f]{40})(?:\.([a-z0-9]+))?$/;

async function readDir(dir: string): Promise<Deno.DirEntry[]> {
  const out: Deno.DirEntry[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e);
  return out;
}

function parentDir(path: string): string {
  const p = path.replace(/\/+$/, "");
  const i = p.lastIndexOf("/");
  return i < 0 ? "." : i === 0 ? "/" : p.slice(0, i);
}

const byName = (a: ArchiveEntry, b: ArchiveEntry): number =>
  a.name < b.name ? -1 : a.name > b.name ? 1 : 0;

/**
 * Recognises the layout of `dir` and lists its WAL files. Files that are not WAL (backup labels,
 * Barman's `xlog.db`, `archive.info`, temporaries) are passed over. A directory whose WAL follows
 * two layouts at once is an {@linkcode ArchiveLayoutError} naming both: serving one and hiding the
 * other would serve a gap. An empty directory is plain.
 *
 * @example
 * ```ts
 * import { scanArchive } from "./layout.ts";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * await Deno.mkdir(`${dir}/wal_005`);
 * await Deno.writeFile(`${dir}/wal_005/000000010000000000000003.zst`, new Uint8Array(1));
 * const listing = await scanArchive(dir);
 * assert.equal(listing.layout, "wal-g");
 * assert.deepEqual(listing.entries.map((e) => [e.name, e.format]), [
 *   ["000000010000000000000003", "zstd"],
 * ]);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function scanArchive(dir: string, options: ScanOptions = {}): Promise<ArchiveListing> {
  const items = await readDir(dir);
  const kinds = new Map<ArchiveLayout, string>();
  const note = (layout: ArchiveLayout, why: string): void => {
    if (!kinds.has(layout)) kinds.set(layout, why);
  };
  const base = dir.replace(/\/+$/, "").split("/").at(-1) ?? "";
  for (const item of items) {
    const n = item.name;
    if (item.isDirectory) {
      if (ARCHIVE_ID.test(n)) note("pgbackrest", n);
      else if (n === "wals") note("barman", n);
      else if (HASH_DIR.test(n)) note("barman", n);
      else if (n === "wal_005") note("wal-g", n);
      continue;
    }
    if (n === "archive.info") note("pgbackrest", n);
    const m = WAL_NAME.exec(n);
    if (!m) continue;
    const ext = m[2];
    if (ext === undefined) {
      // History files are written plain by pg_receivewal and Barman alike: they tell nothing.
      if (!HISTORY.test(m[1]!)) note(base === "wal_005" ? "wal-g" : "plain", n);
    } else if (base === "wal_005") {
      note("wal-g", n);
    } else if (ext === "zst" || ext === "br" || ext === "lzma") {
      // Flat files, as the relay's own `--compress zstd` writes them, or WAL-G's storage.
      note(options.flatMix ? "pg_receivewal" : "wal-g", n);
    } else if (ext === "gz" || ext === "lz4") note("pg_receivewal", n);
  }
  if (options.flatMix && kinds.has("plain") && kinds.has("pg_receivewal")) kinds.delete("plain");
  if (kinds.size > 1) {
    const [a, b] = [...kinds];
    throw new ArchiveLayoutError(
      dir,
      `mixed WAL layouts: ${a![0]} (${a![1]}) and ${b![0]} (${b![1]})`,
    );
  }
  const layout = [...kinds.keys()][0] ?? "plain";
  switch (layout) {
    case "plain":
    case "pg_receivewal":
      return { layout, walDir: dir, entries: flatEntries(dir, items, layout) };
    case "wal-g": {
      const walDir = items.some((i) => i.isDirectory && i.name === "wal_005")
        ? join(dir, "wal_005")
        : dir;
      const inner = walDir === dir ? items : await readDir(walDir);
      return { layout, walDir, entries: flatEntries(walDir, inner, layout) };
    }
    case "barman": {
      const inServer = items.some((i) => i.isDirectory && i.name === "wals");
      const walDir = inServer ? join(dir, "wals") : dir;
      // Given `wals/` itself, the server directory is its parent.
      const serverDir = inServer ? dir : base === "wals" ? parentDir(dir) : undefined;
      return { layout, walDir, entries: await barmanEntries(walDir, serverDir) };
    }
    case "pgbackrest":
      return await pgbackrestListing(dir, items, options.archiveId);
  }
}

/**
 * The plain name and format of a file in a flat layout (plain, pg_receivewal, WAL-G), whose name
 * is the plain name plus an extension; `undefined` for a file that is not WAL.
 *
 * @example
 * ```ts
 * import { flatWalFile } from "./layout.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(flatWalFile("000000010000000000000003.gz.partial"), {
 *   name: "000000010000000000000003.partial",
 *   format: "gzip",
 * });
 * assert.equal(flatWalFile("000000010000000000000003.00000028.backup"), undefined);
 * ```
 */
export function flatWalFile(
  fileName: string,
): { name: string; format: ArchiveFormat } | undefined {
  const m = WAL_NAME.exec(fileName);
  if (!m) return undefined;
  const ext = m[2];
  const format = ext === undefined ? "plain" : formatOfExtension(ext);
  // An extension we do not know is another tool's file (`.backup`), not WAL.
  if (format === undefined) return undefined;
  // pg_receivewal's `SEG.gz.partial` is the partial segment `SEG.partial`, compressed.
  return { name: m[1]! + (m[3] ?? ""), format };
}

/** Entries of a directory where each file's name is its plain name plus an extension. */
function flatEntries(dir: string, items: Deno.DirEntry[], layout: ArchiveLayout): ArchiveEntry[] {
  const entries: ArchiveEntry[] = [];
  for (const item of items) {
    if (!item.isFile) continue;
    const f = flatWalFile(item.name);
    if (!f) continue;
    if (layout === "wal-g" && f.format !== "plain" && item.name.endsWith(".partial")) continue;
    entries.push({ name: f.name, path: join(dir, item.name), format: f.format });
  }
  return entries.sort(byName);
}

/**
 * Barman's archived WAL, and what its streaming archiver (`receive-wal`, a pg_receivewal) holds
 * in `streaming/` beside `wals/`: the `.partial` being written, and the newest complete segments
 * and history files that `archive-wal` has not moved yet. A file in `wals/` wins over a copy of
 * the same name in `streaming/`. `streaming/` is read first: `archive-wal` writes a file into
 * `wals/` before it removes it from `streaming/`, so a file on its way is seen in one or the other.
 */
async function barmanEntries(walDir: string, serverDir?: string): Promise<ArchiveEntry[]> {
  const entries = new Map<string, ArchiveEntry>();
  const streamed: ArchiveEntry[] = [];
  if (serverDir !== undefined) {
    const streaming = join(serverDir, "streaming");
    let items: Deno.DirEntry[] = [];
    try {
      items = await readDir(streaming);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    for (const f of items) {
      const wal = SEGMENT.test(f.name) || PARTIAL_SEGMENT.test(f.name) || HISTORY.test(f.name);
      if (f.isFile && wal) streamed.push({ name: f.name, path: join(streaming, f.name) });
    }
  }
  for (const item of await readDir(walDir)) {
    if (item.isFile && HISTORY.test(item.name)) {
      entries.set(item.name, { name: item.name, path: join(walDir, item.name) });
    } else if (item.isDirectory && HASH_DIR.test(item.name)) {
      const hashDir = join(walDir, item.name);
      for (const f of await readDir(hashDir)) {
        if (f.isFile && (SEGMENT.test(f.name) || PARTIAL_SEGMENT.test(f.name))) {
          entries.set(f.name, { name: f.name, path: join(hashDir, f.name) });
        }
      }
    }
  }
  for (const e of streamed) if (!entries.has(e.name)) entries.set(e.name, e);
  return [...entries.values()].sort(byName);
}

async function pgbackrestListing(
  dir: string,
  items: Deno.DirEntry[],
  wanted: string | undefined,
): Promise<ArchiveListing> {
  const ids = items.filter((i) => i.isDirectory && ARCHIVE_ID.test(i.name)).map((i) => i.name);
  const idNumber = (id: string): number => Number(ARCHIVE_ID.exec(id)![2]);
  ids.sort((a, b) => idNumber(a) - idNumber(b));
  const archiveId = wanted ?? ids.at(-1);
  if (archiveId === undefined || !ids.includes(archiveId)) {
    throw new ArchiveLayoutError(
      dir,
      wanted === undefined
        ? "pgBackRest archive holds no archive id directory"
        : `pgBackRest archive id ${wanted} not found (have ${ids.join(", ") || "none"})`,
    );
  }
  const walDir = join(dir, archiveId);
  const entries: ArchiveEntry[] = [];
  const seen = new Map<string, string>();
  for (const item of await readDir(walDir)) {
    if (item.isFile && HISTORY.test(item.name)) {
      entries.push({ name: item.name, path: join(walDir, item.name), format: "plain" });
    } else if (item.isDirectory && HASH_DIR.test(item.name)) {
      const hashDir = join(walDir, item.name);
      for (const f of await readDir(hashDir)) {
        const m = f.isFile ? PGBACKREST_NAME.exec(f.name) : null;
        if (!m) continue;
        const format = m[3] === undefined ? "plain" : formatOfExtension(m[3]);
        if (format === undefined) continue;
        const name = m[1]!;
        const other = seen.get(name);
        if (other !== undefined) {
          // pgBackRest refuses to archive a segment twice; two copies mean a damaged repository.
          throw new ArchiveLayoutError(
            dir,
            `two archived copies of ${name}: ${other} and ${f.name}`,
          );
        }
        seen.set(name, f.name);
        entries.push({ name, path: join(hashDir, f.name), format, expectedSha1: m[2]! });
      }
    }
  }
  return { layout: "pgbackrest", walDir, entries: entries.sort(byName) };
}
