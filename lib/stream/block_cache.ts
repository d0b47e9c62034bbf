/**
 * WAL blocks shared by every sender: a run of messages read once and sent from the same buffer
 * to every client that reaches the same place, so that N clients catching up through the same WAL
 * cost one read and N sends.
 *
 * @module
 */

import type { Lsn } from "../wal/lsn.ts";

/**
 * One cached run: messages' WAL laid out as the source reads a run (each after `FRAME_HEADROOM`
 * bytes of header room; see `chunk.ts`). The header room is shared: a sender writes its header
 * there only while no other sender's write of the block is in flight, else sends the header a
 * concurrent sender wrote a moment ago (same `dataStart`; its `walEnd` and `sendTime` then).
 */
export interface WalBlock {
  /** The run's buffer. */
  readonly buffer: ArrayBuffer;
  /** Writes of this block that the socket has not taken yet, over all senders. */
  inFlight: number;
  /**
   * Senders that took the block and have not yet sent all of it: only a block no one holds is
   * read into again once evicted.
   */
  holders: number;
  /** Set once the block has left the cache. */
  evicted: boolean;
  /** Where the block's WAL begins, as a number, when its filler said. */
  readonly at?: number | undefined;
}

/**
 * A sender reading through the cache, from {@linkcode WalBlockCache.join} until disposed. Its
 * position tells the cache which blocks it will still read.
 */
export interface WalBlockReader extends Disposable {
  /** The LSN this sender reads next; while unset it does not count in choosing what to evict. */
  position: Lsn | undefined;
}

/**
 * The default size of a {@linkcode WalBlockCache}: 32 MiB.
 *
 * @example
 * ```ts
 * import { WAL_BLOCK_CACHE_BYTES } from "./block_cache.ts";
 * console.assert(WAL_BLOCK_CACHE_BYTES === 32 * 1024 * 1024);
 * ```
 */
export const WAL_BLOCK_CACHE_BYTES = 32 * 1024 * 1024;

/** Options of {@linkcode WalBlockCache}. */
export interface WalBlockCacheOptions {
  /** Bytes of blocks kept; the least recently used go first. Default 32 MiB. */
  maxBytes?: number;
  /** The clock, in milliseconds, that tells a moving sender from a stopped one. */
  now?: () => number;
}

/**
 * A sender that has not moved for this long (a stalled client, one caught up and waiting for WAL)
 * holds no one back: see {@linkcode WalBlockCache.holdBack}.
 */
const MOVING_MS = 50;

/** The distance of a block no sender will read again, or of one whose LSN is not known. */
const NEVER = Infinity;

/**
 * WAL between a block at `lsn` and the nearest reader at or behind it (`positions` sorted), or
 * {@linkcode NEVER} when there is none, or nothing to measure.
 */
function nextReadIn(lsn: number | undefined, positions: readonly number[]): number {
  if (lsn === undefined) return NEVER;
  let lo = 0;
  let hi = positions.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (positions[mid]! <= lsn) lo = mid + 1;
    else hi = mid;
  }
  return lo === 0 ? NEVER : lsn - positions[lo - 1]!;
}

/** What {@linkcode WalBlockCache.stats} reports. */
export interface WalBlockCacheStats {
  /** Blocks taken from the cache. */
  hits: number;
  /** Blocks read into it. */
  misses: number;
  /** Blocks dropped to stay within `maxBytes`. */
  evictions: number;
  /** Bytes of blocks held now. */
  bytes: number;
  /** Bytes of blocks kept at most. */
  maxBytes: number;
}

/**
 * A bounded cache of {@linkcode WalBlock}s, keyed by where their bytes come from: an identity of
 * the segment's bytes (a file's device, inode, size and mtime; or, say, a decompressed archive
 * segment's name and checksum) and the offset in the segment. Whoever misses fills the block;
 * anything that can produce a segment's bytes can feed it.
 *
 * What goes when the cache is full is a block no one holds, if there is one (see below), and of
 * those the one whose next reader is farthest away: blocks of known LSN are measured against the
 * positions of the senders that joined, and the one with the longest stretch of WAL between it
 * and the nearest sender behind it goes first (with no sender behind it, it is read by no one
 * again). That is Belady's choice when senders move at about the same speed. Clients streaming
 * the same WAL drift apart; least recently used eviction then keeps the blocks every client
 * touches in turn only while the whole spread fits, so a spread a little wider than the cache
 * made most reads misses. Blocks with nothing to measure go least recently used first.
 *
 * Whoever takes a block holds it until {@linkcode WalBlockCache.release}: an evicted block's
 * buffer is filled again only once no one holds it (a holder that never releases, say a client
 * gone mid-write, leaves it to the collector). So a miss costs a read, not an allocation. Held
 * blocks are evicted last: fifty senders each holding the block they write, evicted first for
 * having no one behind them, made the cache's buffers twice its size.
 *
 * @example
 * ```ts
 * import { WalBlockCache } from "./block_cache.ts";
 * import assert from "node:assert/strict";
 * const cache = new WalBlockCache({ maxBytes: 2048 });
 * let reads = 0;
 * const fill = (buffer: ArrayBuffer): void => void (reads++, new Uint8Array(buffer).fill(7));
 * const a = cache.getOrFill("seg-1", 0, 1024, fill);
 * const b = cache.getOrFill("seg-1", 0, 1024, fill);
 * assert.equal(a, b);
 * assert.equal(reads, 1);
 * assert.equal(cache.blockOf(a.buffer), a);
 * cache.release(a);
 * cache.release(b);
 * ```
 */
export class WalBlockCache {
  readonly #maxBytes: number;
  // Map order is insertion order: a hit moves its block to the end, eviction takes the front.
  readonly #blocks = new Map<string, WalBlock>();
  readonly #byBuffer = new WeakMap<ArrayBufferLike, WalBlock>();
  // Buffers of evicted blocks no one holds, for the next misses: eight, or up to half the cache.
  // Blocks evicted while held come back when their holders are done, often many at once: kept,
  // they spare the next misses an allocation; dropped, they are garbage that the collector frees
  // only at its next full collection, and the process's memory grows by them until then.
  readonly #spare: ArrayBuffer[] = [];
  #spareBytes = 0;
  #bytes = 0;
  readonly #readers = new Set<WalBlockReader & { movedAt: number }>();
  readonly #now: () => number;
  #hits = 0;
  #misses = 0;
  #evictions = 0;

  /**
   * Creates an empty cache.
   *
   * @param options The cache's size.
   */
  constructor(options: WalBlockCacheOptions = {}) {
    this.#maxBytes = options.maxBytes ?? WAL_BLOCK_CACHE_BYTES;
    this.#now = options.now ?? (() => performance.now());
  }

  /**
   * The block of `size` bytes for offset `offset` of the segment whose bytes are `segment`: the
   * cached one, or a new one that `fill` writes into (if `fill` throws, nothing is cached). The
   * caller holds it until it calls {@linkcode WalBlockCache.release}.
   *
   * @param at Where the block's WAL begins, and the reader asking (which has the block, so it
   * does not count among those still to read it).
   */
  getOrFill(
    segment: string,
    offset: number,
    size: number,
    fill: (buffer: ArrayBuffer) => void,
    at: { lsn?: Lsn; reader?: WalBlockReader | undefined } = {},
  ): WalBlock {
    const key = `${segment}@${offset}`;
    const cached = this.#blocks.get(key);
    if (cached && cached.buffer.byteLength === size) {
      this.#hits++;
      this.#blocks.delete(key);
      this.#blocks.set(key, cached);
      cached.holders++;
      return cached;
    }
    this.#misses++;
    const i = this.#spare.findIndex((b) => b.byteLength === size);
    const buffer = i >= 0 ? this.#spare.splice(i, 1)[0]! : new ArrayBuffer(size);
    if (i >= 0) this.#spareBytes -= size;
    try {
      fill(buffer);
    } catch (e) {
      this.#keepSpare(buffer);
      throw e;
    }
    const block: WalBlock = {
      buffer,
      inFlight: 0,
      holders: 1,
      evicted: false,
      at: at.lsn === undefined ? undefined : Number(at.lsn),
    };
    if (cached) this.#forget(key, cached);
    this.#blocks.set(key, block);
    this.#byBuffer.set(block.buffer, block);
    this.#bytes += size;
    if (this.#bytes > this.#maxBytes) this.#evict(at.reader);
    return block;
  }

  /** Evicts until the bytes fit: the block whose next reader is farthest away first. */
  #evict(asking: WalBlockReader | undefined): void {
    // Positions as numbers: exact below 2^53 bytes of WAL, and this runs on every miss.
    const behind: number[] = [];
    for (const r of this.#readers) {
      if (r !== asking && r.position !== undefined) behind.push(Number(r.position));
    }
    behind.sort((a, b) => a - b);
    while (this.#bytes > this.#maxBytes) {
      let victim: [string, WalBlock] | undefined;
      let farthest = -1;
      let victimHeld = true;
      // A held block's buffer cannot be filled again until its holders are done: evicting it
      // frees nothing, and the next miss would allocate. So a block no one holds goes first,
      // however near its next reader. Map order is least recently used first, which breaks ties.
      for (const entry of this.#blocks) {
        const held = entry[1].holders > 0 || entry[1].inFlight > 0;
        const d = nextReadIn(entry[1].at, behind);
        if (!victim || (held === victimHeld ? d > farthest : !held)) {
          victim = entry;
          farthest = d;
          victimHeld = held;
          if (d === NEVER && !held) break;
        }
      }
      this.#forget(victim![0], victim![1]);
      this.#evictions++;
    }
  }

  /** Ends a hold taken by {@linkcode WalBlockCache.getOrFill}: the holder sent all of the block. */
  release(block: WalBlock): void {
    block.holders--;
    this.#recycle(block);
  }

  /**
   * Counts a sender reading through the cache until the result is disposed. A lone sender reads
   * into its own few buffers instead, which stay in the processor's cache; blocks pay off only
   * once two or more senders may meet in them. The sender keeps the result's `position` at the
   * LSN it reads next (the source does, given it).
   */
  join(): WalBlockReader {
    let position: Lsn | undefined;
    const now = this.#now;
    const reader = {
      movedAt: -Infinity,
      get position(): Lsn | undefined {
        return position;
      },
      set position(lsn: Lsn | undefined) {
        if (lsn !== position) reader.movedAt = now();
        position = lsn;
      },
      [Symbol.dispose]: () => void this.#readers.delete(reader),
    };
    this.#readers.add(reader);
    return reader;
  }

  /**
   * Whether `reader` should let the senders behind it close up before it reads on: one that moved
   * lately lies more than half the cache behind it, so the blocks it reads now would be evicted
   * before that one reached them, and each would be read twice. Clients pulling the same WAL
   * drift apart (they get the cores in turn); held together, a block is read once for all of
   * them. Senders more than four caches behind are another group, and senders that stopped
   * (stalled, or caught up) hold no one: the rearmost moving sender is never held, and the source
   * bounds each wait, so a slow client only slows, never stops, the others.
   *
   * @example
   * ```ts
   * import { WalBlockCache } from "./block_cache.ts";
   * import assert from "node:assert/strict";
   * const cache = new WalBlockCache({ maxBytes: 1 << 20 });
   * using lead = cache.join();
   * using behind = cache.join();
   * behind.position = 0n;
   * lead.position = 1n << 20n;
   * assert.equal(cache.holdBack(lead), true);
   * assert.equal(cache.holdBack(behind), false);
   * ```
   */
  holdBack(reader: WalBlockReader): boolean {
    const at = reader.position;
    if (at === undefined || this.#readers.size < 2) return false;
    const near = at - BigInt(this.#maxBytes >> 1);
    const far = at - 4n * BigInt(this.#maxBytes);
    let now: number | undefined;
    for (const r of this.#readers) {
      const p = r.position;
      if (r === reader || p === undefined || p >= near || p <= far) continue;
      now ??= this.#now();
      if (now - r.movedAt < MOVING_MS) return true;
    }
    return false;
  }

  /** Whether two or more senders read through the cache, so that its blocks may be shared. */
  get shared(): boolean {
    return this.#readers.size > 1;
  }

  /** The block whose buffer this is, while it is cached or still referred to. */
  blockOf(buffer: ArrayBufferLike): WalBlock | undefined {
    return this.#byBuffer.get(buffer);
  }

  /**
   * Blocks found, blocks filled and blocks evicted to stay within `maxBytes` so far; the bytes
   * held now, and the bound.
   */
  get stats(): WalBlockCacheStats {
    return {
      hits: this.#hits,
      misses: this.#misses,
      evictions: this.#evictions,
      bytes: this.#bytes,
      maxBytes: this.#maxBytes,
    };
  }

  #forget(key: string, block: WalBlock): void {
    this.#blocks.delete(key);
    this.#bytes -= block.buffer.byteLength;
    block.evicted = true;
    this.#recycle(block);
  }

  #recycle(block: WalBlock): void {
    if (!block.evicted || block.holders > 0 || block.inFlight > 0) return;
    // Taken once: a late release of the same block must not hand its buffer out twice.
    block.holders = Infinity;
    this.#byBuffer.delete(block.buffer);
    this.#keepSpare(block.buffer);
  }

  #keepSpare(buffer: ArrayBuffer): void {
    const room = this.#spare.length < 8 ||
      this.#spareBytes + buffer.byteLength <= this.#maxBytes / 2;
    if (!room) return;
    this.#spare.push(buffer);
    this.#spareBytes += buffer.byteLength;
  }
}
