/**
 * The WAL files of a directory as the store lists them, whatever layout and compression the tool
 * that wrote them chose: plain names, and the plain bytes of every file that is not a plain
 * segment in the directory itself. Not part of the public API.
 *
 * @module
 */

import { hasDecoder } from "../archive/codec.ts";
import { ArchiveFormatError } from "../archive/errors.ts";
import {
  type ArchiveEntry,
  type ArchiveLayout,
  flatWalFile,
  scanArchive,
} from "../archive/layout.ts";
import { archivedFormat } from "../archive/read_segment.ts";
import {
  type CachedFile,
  type CachedLease,
  type DecodedSegments,
  SegmentCache,
} from "../archive/segment_cache.ts";
import { join } from "./_path.ts";

/** One WAL file of the directory. */
export interface ListedFile {
  /** Its plain name, as PostgreSQL names the file. */
  name: string;
  /** Present when its bytes must be decoded (or checked) before the WAL layer sees them. */
  entry?: ArchiveEntry;
}

/** Options of {@linkcode ArchivedFiles.open}. */
export interface ArchivedFilesOptions {
  /** Bytes of decoded WAL kept in memory for every sender. */
  cacheSize?: number;
  /** Decoded files read through this instead of a cache of its own (another thread's). */
  decoded?: DecodedSegments;
}

/**
 * The directory's layout and its archived files. Flat layouts (plain, pg_receivewal) are listed
 * from the directory itself, where plain and compressed files may stand side by side; the
 * others (pgBackRest, Barman, WAL-G) through their own trees.
 */
export class ArchivedFiles {
  /** The directory given. */
  readonly dir: string;
  /** Decoded files, shared by every sender. */
  readonly cache: DecodedSegments;
  #layout: ArchiveLayout;
  #walDir: string;
  #entries = new Map<string, ArchiveEntry>();

  private constructor(
    dir: string,
    layout: ArchiveLayout,
    walDir: string,
    cache: DecodedSegments,
  ) {
    this.dir = dir;
    this.#layout = layout;
    this.#walDir = walDir;
    this.cache = cache;
  }

  /**
   * Recognises the directory's layout and checks that every archived file has a decoder here.
   *
   * @throws {ArchiveLayoutError} when the directory mixes layouts.
   * @throws {ArchiveFormatError} naming the first file whose format has no decoder.
   */
  static async open(dir: string, options: ArchivedFilesOptions = {}): Promise<ArchivedFiles> {
    const listing = await scanArchive(dir, { flatMix: true });
    const cacheOptions = options.cacheSize === undefined ? {} : { capacity: options.cacheSize };
    const files = new ArchivedFiles(
      dir,
      listing.layout,
      listing.walDir,
      options.decoded ?? new SegmentCache(cacheOptions),
    );
    for (const e of listing.entries) {
      if (e.format === "plain") continue;
      const format = await archivedFormat(e).catch(() => undefined);
      if (format !== undefined && !hasDecoder(format)) {
        throw new ArchiveFormatError(e.path, format, "unsupported");
      }
    }
    return files;
  }

  /** The layout recognised. */
  get layout(): ArchiveLayout {
    return this.#layout;
  }

  /** The directory that holds the WAL files (or their hash directories). */
  get walDir(): string {
    return this.#walDir;
  }

  /** Whether the files lie in the directory itself, by their names. */
  get flat(): boolean {
    return this.#layout === "plain" || this.#layout === "pg_receivewal";
  }

  /**
   * The WAL files now. A compressed copy wins over a plain file of the same segment: it appears
   * only whole (written aside and renamed), and the relay's `--compress` removes the plain file
   * once the store has seen the copy, so a sender opening the segment meanwhile finds it.
   */
  async list(): Promise<ListedFile[]> {
    const out = new Map<string, ListedFile>();
    const entries = new Map<string, ArchiveEntry>();
    if (this.flat) {
      for await (const item of Deno.readDir(this.dir)) {
        if (!item.isFile) continue;
        const f = flatWalFile(item.name);
        if (!f) continue;
        if (f.format === "plain" && f.name === item.name) {
          if (!out.has(f.name)) out.set(f.name, { name: f.name });
        } else {
          const entry = { name: f.name, path: join(this.dir, item.name), format: f.format };
          out.set(f.name, { name: f.name, entry });
          entries.set(f.name, entry);
        }
      }
      if (entries.size > 0) this.#layout = "pg_receivewal";
    } else {
      const listing = await scanArchive(this.dir, { flatMix: true });
      this.#layout = listing.layout;
      this.#walDir = listing.walDir;
      for (const entry of listing.entries) {
        out.set(entry.name, { name: entry.name, entry });
        entries.set(entry.name, entry);
      }
    }
    for (const [name, e] of this.#entries) {
      if (entries.get(name)?.path !== e.path) this.cache.forget(e.path);
    }
    this.#entries = entries;
    return [...out.values()];
  }

  /** The archived file behind a plain name; `undefined` when it is a plain file in the directory. */
  entry(name: string): ArchiveEntry | undefined {
    return this.#entries.get(name);
  }

  /**
   * The plain bytes of an archived file, decoded once for every reader while cached.
   *
   * @throws {Deno.errors.NotFound} when there is no such archived file (any more).
   * @throws {ArchiveFormatError} when it does not decode to what its name promises.
   */
  async read(name: string, segmentSize: number): Promise<Uint8Array> {
    return (await this.readWithInfo(name, segmentSize)).data;
  }

  /** {@linkcode ArchivedFiles.read}, with the archived file's metadata. */
  async readWithInfo(name: string, segmentSize: number): Promise<CachedFile> {
    const entry = this.#entries.get(name);
    if (!entry) throw new Deno.errors.NotFound(`no archived WAL file ${name}`);
    return await this.cache.read(entry, { segmentSize });
  }

  /**
   * {@linkcode ArchivedFiles.readWithInfo}, lent until `release()` (`SegmentCache.acquire`): the
   * way to read segments, whose memory then serves again.
   */
  async acquire(name: string, segmentSize: number): Promise<CachedLease> {
    const entry = this.#entries.get(name);
    if (!entry) throw new Deno.errors.NotFound(`no archived WAL file ${name}`);
    return await this.cache.acquire(entry, { segmentSize });
  }

  /** Starts decoding a file ahead of need, for the cache; errors are left to its readers. */
  prefetch(name: string, segmentSize: number): void {
    this.acquire(name, segmentSize).then((lease) => lease.release(), () => {});
  }
}
