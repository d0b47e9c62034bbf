/**
 * Decoded archived WAL files, shared by every sender: an archived segment is decompressed once,
 * however many clients read it, while it stays in the cache.
 *
 * @module
 */

import { ArchiveFormatError } from "./errors.ts";
import type { ArchiveEntry } from "./layout.ts";
import type { ArchivedFile } from "./read_segment.ts";
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

/**
 * What {@linkcode SegmentCache.acquire} returns: a file read, whose bytes stay as they are until
 * {@linkcode CachedLease.release} is called, and must not be touched after.
 */
export interface CachedLease extends CachedFile {
  /** Gives the bytes back: the memory may hold another segment soon after. Once only. */
  release(): void;
}

/** One decode's result and who holds its bytes. */
interface Held {
  value?: CachedFile;
  /** The decode pool's buffer behind `value.data`, when it may go back to the pool. */
  slab?: SharedArrayBuffer;
  /** Leases not yet released, counted from the request on, before the bytes exist. */
  leases: number;
  /** Whether the cache itself keeps it. */
  cached: boolean;
  /** Handed out by {@linkcode SegmentCache.read}, with no end: never reused. */
  pinned: boolean;
}

interface Slot {
  /** The file's identity (device, inode, size, modification time) when it was decoded. */
  key: string;
  promise: Promise<CachedFile>;
  /** Decoded bytes held, once known. */
  bytes: number;
  held: Held;
}

/** An evicted file whose bytes a sender may still hold. */
interface Evicted {
  key: string;
  /** Leased: held until the last lease ends. */
  held?: Held;
  /** Read without a lease: held weakly, as long as a reader keeps them alive. */
  data?: WeakRef<Uint8Array>;
  file: Omit<CachedFile, "data">;
}

/**
 * What reads archived files for a store: a {@linkcode SegmentCache}, or one reached in another
 * thread, so that threads serving the same archive share its decodes.
 */
export interface DecodedSegments {
  /** Bytes of decoded WAL kept at most. */
  readonly capacity: number;
  /** Files decoded so far. */
  readonly decodes: number;
  /** Reads answered from the cache. */
  readonly hits: number;
  /** Decoded files dropped to stay within the capacity. */
  readonly evictions: number;
  /** Decoded bytes held now. */
  readonly bytes: number;
  /** Seconds spent reading and decoding archived files, on whichever thread did it. */
  readonly decodeSeconds: number;
  /** {@linkcode SegmentCache.read}. */
  read(entry: ArchiveEntry, options: { segmentSize: number }): Promise<CachedFile>;
  /** {@linkcode SegmentCache.acquire}. */
  acquire(entry: ArchiveEntry, options: { segmentSize: number }): Promise<CachedLease>;
  /** {@linkcode SegmentCache.forget}. */
  forget(path: string): void;
}

/** A decoded-segment cache's counters, as `/status` shows them. */
export type SegmentCacheStats = Pick<
  DecodedSegments,
  "capacity" | "decodes" | "hits" | "evictions" | "bytes" | "decodeSeconds"
>;

/**
 * The counters of `cache` as plain data, to report or to pass to another thread.
 *
 * @example
 * ```ts
 * import { SegmentCache, segmentCacheStats } from "./segment_cache.ts";
 * import assert from "node:assert/strict";
 * const stats = segmentCacheStats(new SegmentCache({ capacity: 1 << 20, workers: 0 }));
 * assert.deepEqual(stats, {
 *   capacity: 1 << 20,
 *   decodes: 0,
 *   hits: 0,
 *   evictions: 0,
 *   bytes: 0,
 *   decodeSeconds: 0,
 * });
 * ```
 */
export function segmentCacheStats(cache: SegmentCacheStats): SegmentCacheStats {
  const { capacity, decodes, hits, evictions, bytes, decodeSeconds } = cache;
  return { capacity, decodes, hits, evictions, bytes, decodeSeconds };
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
export class SegmentCache implements DecodedSegments {
  /** Bytes of decoded WAL kept at most. */
  readonly capacity: number;
  readonly #slots = new Map<string, Slot>();
  /**
   * Evicted files by path, weakly: while a sender still reads one, the next sender to open it
   * takes the same bytes instead of decoding them again (a client far behind others, whose
   * segments the cache has let go).
   */
  readonly #evicted = new Map<string, Evicted>();
  readonly #pool: DecodePool;
  #bytes = 0;
  #decodes = 0;
  #hits = 0;
  #evictions = 0;

  /** @param options The capacity in bytes. */
  constructor(options: SegmentCacheOptions = {}) {
    this.capacity = Math.max(0, options.capacity ?? DEFAULT_CACHE_SIZE);
    const workers = options.workers ?? 2;
    this.#pool = new DecodePool(workers);
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

  /** Seconds spent reading and decoding archived files, by the decode workers or this thread. */
  get decodeSeconds(): number {
    return this.#pool.decodeSeconds;
  }

  /**
   * The plain bytes of an archived file, as {@linkcode readArchivedFile} reads them, decoded once
   * for all callers. The bytes are the caller's to keep; {@linkcode acquire} lends them instead,
   * so that their memory serves again once every reader is done.
   *
   * @throws {Deno.errors.NotFound} when the file is gone.
   * @throws {ArchiveFormatError} when it does not decode to what its name promises.
   */
  async read(entry: ArchiveEntry, options: { segmentSize: number }): Promise<CachedFile> {
    const { release: _, ...file } = await this.#lease(entry, options, true);
    return file;
  }

  /**
   * {@linkcode read}, lent: the bytes stay valid until `release()`. Decoded segments live in
   * buffers the decode workers fill again once the cache has let a segment go and its last lease
   * has ended; reusing them spares the page faults of fresh memory and bounds it, which the
   * garbage collector, seldom run on a heap this small, would not.
   *
   * @throws {Deno.errors.NotFound} when the file is gone.
   * @throws {ArchiveFormatError} when it does not decode to what its name promises.
   */
  acquire(entry: ArchiveEntry, options: { segmentSize: number }): Promise<CachedLease> {
    return this.#lease(entry, options, false);
  }

  async #lease(
    entry: ArchiveEntry,
    options: { segmentSize: number },
    pin: boolean,
  ): Promise<CachedLease> {
    const s = await Deno.stat(entry.path);
    const key = `${s.dev}:${s.ino}:${s.size}:${s.mtime?.getTime() ?? "-"}`;
    const slot = this.#slots.get(entry.path);
    if (slot && slot.key === key) {
      this.#hits++;
      // Most recently used goes last: eviction takes the first.
      this.#slots.delete(entry.path);
      this.#slots.set(entry.path, slot);
      return await this.#hold(slot.held, slot.promise, pin);
    }
    if (slot) this.#drop(entry.path, slot);
    const gone = this.#evicted.get(entry.path);
    if (gone) this.#evicted.delete(entry.path);
    const back = gone?.key === key ? this.#revive(gone) : undefined;
    if (back) {
      this.#hits++;
      const again: Slot = {
        key,
        promise: Promise.resolve(back.value!),
        bytes: back.value!.data.length,
        held: back,
      };
      back.cached = true;
      this.#slots.set(entry.path, again);
      this.#bytes += again.bytes;
      this.#evict(again);
      return await this.#hold(back, again.promise, pin);
    }
    const held: Held = { leases: 0, cached: true, pinned: false };
    const fresh: Slot = { key, promise: undefined!, bytes: 0, held };
    this.#decodes++;
    const decoded = this.#pool.run(entry, options.segmentSize);
    fresh.promise = decoded.then((r) => {
      const { slab, ...file } = r as typeof r & { slab?: SharedArrayBuffer };
      const value: CachedFile = { ...file, info: s };
      held.value = value;
      if (slab) held.slab = slab;
      if (this.#slots.get(entry.path) === fresh) {
        fresh.bytes = r.data.length;
        this.#bytes += fresh.bytes;
        this.#evict(fresh);
      } else {
        // Let go while it decoded: only the readers waiting for it hold it.
        this.#recycle(held);
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
    return await this.#hold(held, fresh.promise, pin);
  }

  /**
   * A lease on `held` once `promise` settles. It is counted before waiting: bytes that arrive
   * after the cache let the slot go must not be reused while a reader is still to take them.
   */
  async #hold(held: Held, promise: Promise<CachedFile>, pin: boolean): Promise<CachedLease> {
    held.leases++;
    if (pin) held.pinned = true;
    let value: CachedFile;
    try {
      value = await promise;
    } catch (e) {
      this.#unlease(held);
      throw e;
    }
    let released = pin;
    if (pin) this.#unlease(held);
    return {
      ...value,
      release: () => {
        if (released) return;
        released = true;
        this.#unlease(held);
      },
    };
  }

  #unlease(held: Held): void {
    held.leases--;
    this.#recycle(held);
  }

  /** Gives a buffer no one holds back to the decode pool. */
  #recycle(held: Held): void {
    if (held.leases > 0 || held.cached || held.pinned || !held.slab) return;
    const slab = held.slab;
    delete held.slab;
    delete held.value;
    this.#pool.giveBack(slab);
  }

  /** The bytes of an evicted file, when a reader still holds them. */
  #revive(gone: Evicted): Held | undefined {
    if (gone.held) return gone.held.value ? gone.held : undefined;
    const data = gone.data?.deref();
    return data
      ? { value: { ...gone.file, data }, leases: 0, cached: true, pinned: true }
      : undefined;
  }

  /** Forgets a file (removed from the archive). */
  forget(path: string): void {
    const slot = this.#slots.get(path);
    if (slot) this.#drop(path, slot);
    const gone = this.#evicted.get(path);
    this.#evicted.delete(path);
    if (gone?.held) this.#recycle(gone.held);
  }

  #drop(path: string, slot: Slot): void {
    this.#slots.delete(path);
    this.#bytes -= slot.bytes;
    slot.held.cached = false;
    this.#recycle(slot.held);
  }

  /** Evicts the least recently used decoded files until the bytes fit, sparing `keep`. */
  #evict(keep: Slot): void {
    for (const [path, slot] of this.#slots) {
      if (this.#bytes <= this.capacity) break;
      // A decode under way holds nothing yet; the newest file is wanted right now.
      if (slot === keep || slot.bytes === 0) continue;
      this.#drop(path, slot);
      this.#evictions++;
      const held = slot.held;
      const value = held.value;
      if (!value) continue;
      const { data, ...file } = value;
      if (held.pinned) {
        this.#evicted.set(path, { key: slot.key, data: new WeakRef(data), file });
      } else if (held.leases > 0) {
        // Until its last reader is done, the next sender to open it takes the same bytes
        // instead of decoding them again (a client far behind the others).
        this.#evicted.set(path, { key: slot.key, held, file });
      }
    }
    if (this.#evicted.size > 1024) {
      for (const [path, e] of this.#evicted) {
        if (e.held ? !e.held.value : !e.data?.deref()) this.#evicted.delete(path);
      }
    }
  }
}
