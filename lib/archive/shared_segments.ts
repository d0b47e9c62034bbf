/**
 * One decoded-segment cache for several threads: the thread that owns it answers the others'
 * reads, and the decoded bytes, in shared memory, reach them uncopied. Sender threads serving the
 * same archive then decode each segment once between them, as one thread does.
 *
 * @module
 */

import { ArchiveFormatError } from "./errors.ts";
import type { ArchiveEntry } from "./layout.ts";
import {
  type CachedFile,
  type CachedLease,
  type DecodedSegments,
  segmentCacheStats,
} from "./segment_cache.ts";

/** A request from {@linkcode RemoteSegments} to {@linkcode SharedSegments}. */
export type SegmentCall =
  | { op: "acquire"; entry: ArchiveEntry; segmentSize: number }
  | { op: "release"; lease: number }
  | { op: "stats" };

/**
 * The answer to an `acquire`: the file and the lease to give back, or why it could not be read
 * (the errors senders tell apart by class, which a thrown error loses between threads).
 */
type Acquired =
  | { lease: number; file: Omit<CachedFile, "data">; bytes: Bytes }
  | { formatError: Pick<ArchiveFormatError, "file" | "format" | "problem" | "message"> }
  | { notFound: string };

/**
 * Decoded bytes as they cross: their buffer and where in it. A typed array in a message of
 * `node:worker_threads` costs Deno 2.9 about 0.3 µs per element to pass (4.5 s for a 16 MiB
 * segment, shared or not), where its buffer passes at once when shared, and at memcpy speed
 * when not.
 */
interface Bytes {
  buffer: ArrayBufferLike;
  byteOffset: number;
  length: number;
}

/**
 * The owning side: answers {@linkcode SegmentCall}s from other threads with its cache, and keeps
 * their leases until they give them back or end.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { gzipSync } from "node:zlib";
 * import { SegmentCache } from "./segment_cache.ts";
 * import { RemoteSegments, SharedSegments } from "./shared_segments.ts";
 * const dir = await Deno.makeTempDir();
 * const path = `${dir}/000000010000000000000003.gz`;
 * await Deno.writeFile(path, gzipSync(new Uint8Array(1 << 20).fill(3)));
 * const shared = new SharedSegments(new SegmentCache({ workers: 0 }));
 * // Two "threads" reaching the one cache (here without crossing one).
 * const a = new RemoteSegments((call) => shared.answer(1, call));
 * const b = new RemoteSegments((call) => shared.answer(2, call));
 * const entry = { name: "000000010000000000000003", path, format: "gzip" as const };
 * const x = await a.acquire(entry, { segmentSize: 1 << 20 });
 * const y = await b.acquire(entry, { segmentSize: 1 << 20 });
 * // One decode, one memory: the bytes are not copied for the second thread.
 * assert.equal(x.data.buffer, y.data.buffer);
 * assert.equal(x.data.byteOffset, y.data.byteOffset);
 * assert.equal(shared.cache.decodes, 1);
 * x.release();
 * shared.end(2); // thread 2 ended: its leases are given back
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class SharedSegments {
  /** The cache every thread reads through. */
  readonly cache: DecodedSegments;
  readonly #leases = new Map<number, { owner: number; release: () => void }>();
  #next = 1;

  /** @param cache The cache every thread reads through. */
  constructor(cache: DecodedSegments) {
    this.cache = cache;
  }

  /** Answers a call of thread `owner`; what it returns crosses to that thread. */
  async answer(owner: number, call: SegmentCall): Promise<unknown> {
    switch (call.op) {
      case "acquire": {
        let lent: CachedLease;
        try {
          lent = await this.cache.acquire(call.entry, { segmentSize: call.segmentSize });
        } catch (e) {
          if (e instanceof ArchiveFormatError) {
            const { file, format, problem, message } = e;
            return { formatError: { file, format, problem, message } } satisfies Acquired;
          }
          if (e instanceof Deno.errors.NotFound) return { notFound: e.message } satisfies Acquired;
          throw e;
        }
        const { release, data, ...file } = lent;
        const lease = this.#next++;
        this.#leases.set(lease, { owner, release });
        const { buffer, byteOffset, length } = data;
        return { lease, file, bytes: { buffer, byteOffset, length } } satisfies Acquired;
      }
      case "release":
        this.#leases.get(call.lease)?.release();
        this.#leases.delete(call.lease);
        return undefined;
      case "stats":
        return segmentCacheStats(this.cache);
    }
  }

  /** Thread `owner` has ended: whatever it still held is given back. */
  end(owner: number): void {
    for (const [lease, l] of this.#leases) {
      if (l.owner !== owner) continue;
      l.release();
      this.#leases.delete(lease);
    }
  }
}

/**
 * The other threads' side: a store's decoded segments read through the owner's cache. Counters
 * are the owner's, which it reports itself; here they stay zero.
 */
export class RemoteSegments implements DecodedSegments {
  readonly capacity = 0;
  readonly decodes = 0;
  readonly hits = 0;
  readonly evictions = 0;
  readonly bytes = 0;
  readonly decodeSeconds = 0;
  readonly #call: (call: SegmentCall) => Promise<unknown>;

  /** @param call Asks the owning thread ({@linkcode SharedSegments.answer}) and awaits it. */
  constructor(call: (call: SegmentCall) => Promise<unknown>) {
    this.#call = call;
  }

  /** Lent until `release()`, which tells the owner. */
  async acquire(entry: ArchiveEntry, options: { segmentSize: number }): Promise<CachedLease> {
    const r = await this.#call({
      op: "acquire",
      entry,
      segmentSize: options.segmentSize,
    }) as Acquired;
    if ("formatError" in r) {
      const f = r.formatError;
      const e = new ArchiveFormatError(f.file, f.format, f.problem);
      e.message = f.message;
      throw e;
    }
    if ("notFound" in r) throw new Deno.errors.NotFound(r.notFound);
    const { lease, file, bytes } = r;
    let released = false;
    return {
      ...file,
      data: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length),
      release: () => {
        if (released) return;
        released = true;
        this.#call({ op: "release", lease }).catch(() => {});
      },
    };
  }

  /** A copy of the bytes, the caller's to keep: the owner's memory serves again after. */
  async read(entry: ArchiveEntry, options: { segmentSize: number }): Promise<CachedFile> {
    const lease = await this.acquire(entry, options);
    try {
      const { release: _, ...file } = lease;
      return { ...file, data: lease.data.slice() };
    } finally {
      lease.release();
    }
  }

  /** The owner forgets removed files on its own rescans. */
  forget(_path: string): void {}
}
