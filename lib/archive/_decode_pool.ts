/**
 * Worker threads that decode archived files (`_decode_worker.ts`), so decompression runs beside
 * the thread that streams WAL, and the next segment decodes while this one is sent. A worker that
 * cannot start or fails sends its work back to this thread. Not part of the public API.
 *
 * Decoded segments come back in shared memory, so that the validation worker reads them uncopied.
 * Fresh shared memory costs a page fault per 4 kB on first touch, about as much as decoding lz4,
 * and is freed only when every thread that saw it has collected it, seldom on heaps this small:
 * so segment-sized buffers are lent with each request and given back by the segment cache once
 * no reader holds them ({@linkcode DecodePool.giveBack}).
 *
 * @module
 */

import { ArchiveFormatError } from "./errors.ts";
import type { ArchiveEntry } from "./layout.ts";
import { type ArchivedFile, readArchivedFile } from "./read_segment.ts";

interface Pending {
  entry: ArchiveEntry;
  segmentSize: number;
  /** The buffer lent for the result, while the worker has it. */
  slab: SharedArrayBuffer | undefined;
  resolve: (r: DecodedFile) => void;
  reject: (e: unknown) => void;
}

type WorkerMessage =
  | {
    id: number;
    data: Uint8Array;
    format: ArchivedFile["format"];
    complete: boolean;
    /** Whether `data` is the buffer lent with the request. */
    lent: boolean;
    /** Milliseconds of the worker's CPU since its last answer: reading and decoding the file. */
    ms: number;
  }
  | {
    id: number;
    formatError: Pick<ArchiveFormatError, "file" | "format" | "problem" | "message">;
    ms: number;
  }
  | { id: number; error: { name: string; message: string } }
  | { bye: true };

/** A decoded file, and the pool's buffer its bytes lie in. */
export interface DecodedFile extends ArchivedFile {
  /** The buffer lent for the bytes, to give back with {@linkcode DecodePool.giveBack}. */
  slab?: SharedArrayBuffer;
}

interface Slot {
  worker: Worker | undefined;
  pending: Map<number, Pending>;
}

/** Free buffers kept for reuse at most: beyond that, memory goes back to the system. */
const FREE_SLABS = 8;

/** Decodes archived files in up to `size` worker threads. */
export class DecodePool {
  readonly #slots: Slot[];
  #nextId = 1;
  #broken = false;
  /** Segment-sized buffers free for the next decode, of one size (the segment size). */
  #free: SharedArrayBuffer[] = [];
  #decodeMs = 0;

  /** @param size Worker threads; 0 decodes in this thread. */
  constructor(size: number) {
    this.#slots = Array.from({ length: Math.max(1, size) }, () => ({
      worker: undefined,
      pending: new Map(),
    }));
    if (size <= 0 || typeof Worker !== "function" || typeof SharedArrayBuffer !== "function") {
      this.#broken = true;
    }
  }

  /** Seconds spent reading and decoding files, in the workers or, failing them, in this thread. */
  get decodeSeconds(): number {
    return this.#decodeMs / 1000;
  }

  /**
   * Reads and decodes a file as `readArchivedFile` does, in a worker. A whole segment comes in a
   * buffer of the pool, `slab`: the caller gives it back once nothing reads `data` any more, or
   * lets the garbage collector have it.
   */
  run(entry: ArchiveEntry, segmentSize: number): Promise<DecodedFile> {
    if (this.#broken) return this.#here(entry, segmentSize);
    const { promise, resolve, reject } = Promise.withResolvers<DecodedFile>();
    // The least busy worker: a decode ahead goes beside the one being waited for.
    const slot = this.#slots.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
    const id = this.#nextId++;
    const slab = this.#take(segmentSize);
    slot.pending.set(id, { entry, segmentSize, slab, resolve, reject });
    this.#post(slot, id);
    return promise;
  }

  /** `readArchivedFile` in this thread, timed. */
  async #here(entry: ArchiveEntry, segmentSize: number): Promise<DecodedFile> {
    const t0 = performance.now();
    try {
      return await readArchivedFile(entry, { segmentSize });
    } finally {
      this.#decodeMs += performance.now() - t0;
    }
  }

  /** A free buffer of a segment's size, or a new one. */
  #take(segmentSize: number): SharedArrayBuffer {
    let slab = this.#free.pop();
    while (slab && slab.byteLength !== segmentSize) slab = this.#free.pop();
    return slab ?? new SharedArrayBuffer(segmentSize);
  }

  /**
   * Takes back a buffer that came with a decode, for the next one. Nothing may read the bytes
   * of that decode any more: a worker overwrites them.
   */
  giveBack(slab: SharedArrayBuffer): void {
    if (this.#free.length < FREE_SLABS) this.#free.push(slab);
  }

  #post(slot: Slot, id: number): void {
    const p = slot.pending.get(id)!;
    let w = slot.worker;
    if (!w) {
      try {
        w = new Worker(new URL("./_decode_worker.ts", import.meta.url), { type: "module" });
      } catch {
        this.#fallBack(slot, undefined);
        return;
      }
      const worker = w;
      worker.onmessage = (e: MessageEvent<WorkerMessage>) => this.#answer(slot, worker, e.data);
      worker.onerror = (e: ErrorEvent) => {
        e.preventDefault();
        this.#fallBack(slot, worker);
      };
      slot.worker = worker;
    }
    w.postMessage({ id, entry: p.entry, segmentSize: p.segmentSize, slab: p.slab });
  }

  #answer(slot: Slot, worker: Worker, msg: WorkerMessage): void {
    if ("bye" in msg) {
      // Idle and gone: whatever was posted after it said so was never read.
      if (slot.worker === worker) slot.worker = undefined;
      worker.terminate();
      for (const id of slot.pending.keys()) this.#post(slot, id);
      return;
    }
    const p = slot.pending.get(msg.id);
    if (!p) return;
    slot.pending.delete(msg.id);
    if ("ms" in msg) this.#decodeMs += msg.ms;
    const slab = p.slab;
    if ("data" in msg) {
      const r: DecodedFile = { data: msg.data, format: msg.format, complete: msg.complete };
      if (slab && msg.lent) r.slab = slab;
      else if (slab) this.giveBack(slab);
      p.resolve(r);
      return;
    }
    if (slab) this.giveBack(slab);
    if ("formatError" in msg) {
      const f = msg.formatError;
      const e = new ArchiveFormatError(f.file, f.format, f.problem);
      e.message = f.message;
      p.reject(e);
    } else {
      // Errors cross the thread as name and message; callers tell a file gone by its class.
      p.reject(
        msg.error.name === "NotFound"
          ? new Deno.errors.NotFound(msg.error.message)
          : new Error(msg.error.message),
      );
    }
  }

  /** A worker could not start or failed: decode in this thread from now on. */
  #fallBack(slot: Slot, worker: Worker | undefined): void {
    this.#broken = true;
    if (worker) {
      if (slot.worker === worker) slot.worker = undefined;
      worker.terminate();
    }
    for (const s of this.#slots) {
      for (const [id, p] of s.pending) {
        s.pending.delete(id);
        this.#here(p.entry, p.segmentSize).then(p.resolve, p.reject);
      }
    }
  }
}
