/**
 * Worker threads that decode archived files (`_decode_worker.ts`), so decompression runs beside
 * the thread that streams WAL, and the next segment decodes while this one is sent. A worker that
 * cannot start or fails sends its work back to this thread. Not part of the public API.
 *
 * @module
 */

import { ArchiveFormatError } from "./errors.ts";
import type { ArchiveEntry } from "./layout.ts";
import { type ArchivedFile, readArchivedFile } from "./read_segment.ts";

interface Pending {
  entry: ArchiveEntry;
  segmentSize: number;
  resolve: (r: ArchivedFile) => void;
  reject: (e: unknown) => void;
}

type WorkerMessage =
  | { id: number; data: Uint8Array; format: ArchivedFile["format"]; complete: boolean }
  | {
    id: number;
    formatError: Pick<ArchiveFormatError, "file" | "format" | "problem" | "message">;
  }
  | { id: number; error: { name: string; message: string } }
  | { bye: true };

interface Slot {
  worker: Worker | undefined;
  pending: Map<number, Pending>;
}

/** Decodes archived files in up to `size` worker threads. */
export class DecodePool {
  readonly #slots: Slot[];
  #nextId = 1;
  #broken = false;

  constructor(size: number) {
    this.#slots = Array.from({ length: Math.max(1, size) }, () => ({
      worker: undefined,
      pending: new Map(),
    }));
    if (typeof Worker !== "function") this.#broken = true;
  }

  /** Reads and decodes a file as `readArchivedFile` does, in a worker. */
  run(entry: ArchiveEntry, segmentSize: number): Promise<ArchivedFile> {
    if (this.#broken) return readArchivedFile(entry, { segmentSize });
    const { promise, resolve, reject } = Promise.withResolvers<ArchivedFile>();
    // The least busy worker: a decode ahead goes beside the one being waited for.
    const slot = this.#slots.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
    const id = this.#nextId++;
    slot.pending.set(id, { entry, segmentSize, resolve, reject });
    this.#post(slot, id);
    return promise;
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
    w.postMessage({ id, entry: p.entry, segmentSize: p.segmentSize });
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
    if ("data" in msg) {
      p.resolve({ data: msg.data, format: msg.format, complete: msg.complete });
    } else if ("formatError" in msg) {
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
        readArchivedFile(p.entry, { segmentSize: p.segmentSize }).then(p.resolve, p.reject);
      }
    }
  }
}
