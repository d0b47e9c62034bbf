/**
 * Decoded archived WAL files, shared by every sender: an archived segment is decompressed once,
 * however many clients read it, while it stays in the cache.
 *
 * @module
 */

import { ArchiveFormatError } from "./errors.ts";
import type { ArchiveEntry } from "./layout.ts";
import { type ArchivedFile, readArchivedFile } from "./read_segment.ts";
import { DecodePool } from "./_decode_pool.ts";

/** Options of {@linkcode SegmentCache}. */
export interface SegmentCacheOptions {
  /**
   * Bytes of decoded WAL kept; the least recently used go first. Default 256 MiB. A sender
   * reading a segment holds its bytes until it moves on, so memory may briefly exceed this by a
   * segment per sender reading one that was evicted.
   */
  capacity?: number;
  /**
   * Worker threads that decode (default 2), so decompression runs beside the streaming thread
   * and the next segment decodes while this one is sent; 0 decodes in the caller's thread.
   */
  workers?: number;
}

/** What {@linkcode SegmentCache.read} returns: the file read, and its metadata when read. */
export interface CachedFile extends ArchivedFile {
  /** The archived file's metadata; its identity identifies the decoded bytes too. */
  info: Deno.FileInfo;
}

interface Slot {
  /** The file's identity (device, inode, size, modification time) when it was decoded. */
  key: string;
  promise: Promise<CachedFile>;
  /** Decoded bytes held, once known. */
  bytes: number;
  /** The result, once decoded. */
  value?: CachedFile;
}

/** An evicted file whose bytes a sender may still hold. */
interface Evicted {
  key: string;
  data: WeakRef<Uint8Array>;
  file: Omit<CachedFile, "data">;
}

/** The cache's default capacity, 256 MiB. */
export const DEFAULT_CACHE_SIZE = 256 * 1024 * 1024;

/**
 * A bounded cache of decoded archived WAL files, keyed by path and file identity. Concurrent
 * requests for one file share one decode; a file that changed (a pg_receivewal `.partial` being
 * rewritten) is decoded again. A file that fails to decode fails the same way for every reader
 * until it changes, without being decoded again.
 *
 * @example
 * ```ts
 * import { SegmentCache } from "./segment_cache.ts";
 * import { gzipSync } from "node:zlib";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * const path = `${dir}/000000010000000000000003.gz`;
 * await Deno.writeFile(path, gzipSync(new Uint8Array(1 << 20)));
 * const cache = new SegmentCache({ capacity: 4 << 20 });
 * const entry = { name: "000000010000000000000003", path, format: "gzip" as const };
 * const [a, b] = await Promise.all([
 *   cache.read(entry, { segmentSize: 1 << 20 }),
 *   cache.read(entry, { segmentSize: 1 << 20 }),
 * ]);
 * assert.equal(a.data, b.data);
 * assert.equal(cache.decodes, 1);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class SegmentCache {
  /** Bytes of decoded WAL kept at most. */
  readonly capacity: number;
  readonly #slots = new Map<string, Slot>();
  /**
   * Evicted files by path, weakly: while a sender still reads one, the next sender to open it
   * takes the same bytes instead of decoding them again (a client far behind others, whose
   * segments the cache has let go).
   */
  readonly #evicted = new Map<string, Evicted>();
  readonly #pool: DecodePool | undefined;
  #bytes = 0;
  #decodes = 0;
  #hits = 0;
  #evictions = 0;

  /** @param options The capacity in bytes. */
  constructor(options: SegmentCacheOptions = {}) {
    this.capacity = Math.max(0, options.capacity ?? DEFAULT_CACHE_SIZE);
    const workers = options.workers ?? 2;
    this.#pool = workers > 0 ? new DecodePool(workers) : undefined;
  }

  /** Files decoded so far. */
  get decodes(): number {
    return this.#decodes;
  }

  /** Reads answered from the cache (or from a decode already under way). */
  get hits(): number {
    return this.#hits;
  }

  /** Decoded files dropped to stay within the capacity. */
  get evictions(): number {
    return this.#evictions;
  }

  /** Decoded bytes held now. */
  get bytes(): number {
    return this.#bytes;
  }

  /**
   * The plain bytes of an archived file, as {@linkcode readArchivedFile} reads them, decoded once
   * for all callers.
   *
   * @throws {Deno.errors.NotFound} when the file is gone.
   * @throws {ArchiveFormatError} when it does not decode to what its name promises.
   */
  async read(entry: ArchiveEntry, options: { segmentSize: number }): Promise<CachedFile> {
    const s = await Deno.stat(entry.path);
    const key = `${s.dev}:${s.ino}:${s.size}:${s.mtime?.getTime() ?? "-"}`;
    const slot = this.#slots.get(entry.path);
    if (slot && slot.key === key) {
      this.#hits++;
      // Most recently used goes last: eviction takes the first.
      this.#slots.delete(entry.path);
      this.#slots.set(entry.path, slot);
      return await slot.promise;
    }
    if (slot) this.#drop(entry.path, slot);
    const gone = this.#evicted.get(entry.path);
    const held = gone?.key === key ? gone.data.deref() : undefined;
    if (gone) this.#evicted.delete(entry.path);
    if (held) {
      this.#hits++;
      const value: CachedFile = { ...gone!.file, data: held };
      const back: Slot = { key, promise: Promise.resolve(value), bytes: held.length, value };
      this.#slots.set(entry.path, back);
      this.#bytes += back.bytes;
      this.#evict(back);
      return value;
    }
    const fresh: Slot = { key, promise: undefined!, bytes: 0 };
    this.#decodes++;
    const decoded = this.#pool?.run(entry, options.segmentSize) ??
      readArchivedFile(entry, options);
    fresh.promise = decoded.then((r) => {
      const value: CachedFile = { ...r, info: s };
      fresh.value = value;
      if (this.#slots.get(entry.path) === fresh) {
        fresh.bytes = r.data.length;
        this.#bytes += fresh.bytes;
        this.#evict(fresh);
      }
      return value;
    }, (e) => {
      // A file that does not decode stays known as such; anything else (gone, unreadable) is
      // tried again by the next reader.
      if (!(e instanceof ArchiveFormatError) && this.#slots.get(entry.path) === fresh) {
        this.#slots.delete(entry.path);
      }
      throw e;
    });
    this.#slots.set(entry.path, fresh);
    return await fresh.promise;
  }

  /** Forgets a file (removed from the archive). */
  forget(path: string): void {
    const slot = this.#slots.get(path);
    if (slot) this.#drop(path, slot);
    this.#evicted.delete(path);
  }

  #drop(path: string, slot: Slot): void {
    this.#slots.delete(path);
    this.#bytes -= slot.bytes;
  }

  /** Evicts the least recently used decoded files until the bytes fit, sparing `keep`. */
  #evict(keep: Slot): void {
    for (const [path, slot] of this.#slots) {
      if (this.#bytes <= this.capacity) break;
      // A decode under way holds nothing yet; the newest file is wanted right now.
      if (slot === keep || slot.bytes === 0) continue;
      this.#drop(path, slot);
      this.#evictions++;
      if (slot.value) {
        const { data, ...file } = slot.value;
        this.#evicted.set(path, { key: slot.key, data: new WeakRef(data), file });
      }
    }
    if (this.#evicted.size > 1024) {
      for (const [path, e] of this.#evicted) if (!e.data.deref()) this.#evicted.delete(path);
    }
  }
}
