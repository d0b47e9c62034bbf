/**
 * Relay mode's `--compress`: each completed segment is stored compressed, one at a time in the
 * background, so the directory holds the hot tail plain and everything older compressed.
 *
 * @module
 */

import { join } from "../wal/_path.ts";
import { COMPRESS_EXTENSIONS, type CompressFormat } from "./compress.ts";

/** Options of {@linkcode SegmentCompressor}. */
export interface SegmentCompressorOptions {
  /** The WAL directory. */
  dir: string;
  /** The format to store segments in. */
  format: CompressFormat;
  /**
   * Called once the compressed file is durable and before the plain one is removed: the store
   * rescans here, so that from now on senders open the segment through its decoded copy. A
   * sender still reading the plain file keeps reading it: an open file outlives its name.
   */
  beforeRemove?: () => Promise<unknown>;
  /** Called after a segment was compressed and its plain file removed (retention hooks in). */
  afterCompress?: (name: string) => Promise<unknown> | unknown;
  /** Log lines (a failure, and each segment compressed at debug level). */
  log?: (level: "debug" | "warn", message: string) => void;
}

/**
 * Compresses completed segment files: `SEG` becomes `SEG.gz` (`.lz4`, `.zst`). The compressed
 * file is written to a temporary name and fsynced in a worker thread, renamed and the directory
 * fsynced, and only then is the plain file removed (the directory fsynced again): after a crash
 * the segment is there plain, compressed, or both, never neither.
 *
 * @example
 * ```ts
 * import { SegmentCompressor } from "./segment_compressor.ts";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * const name = "000000010000000000000003";
 * await Deno.writeFile(`${dir}/${name}`, new Uint8Array(1 << 20));
 * const c = new SegmentCompressor({ dir, format: "zstd" });
 * c.enqueue(name);
 * await c.idle();
 * assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), [`${name}.zst`]);
 * await c.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class SegmentCompressor {
  readonly #opts: SegmentCompressorOptions;
  readonly #queue: string[] = [];
  #running: Promise<void> | undefined;
  #worker: Worker | undefined;
  #closed = false;
  #nextId = 1;
  #compressed = 0;
  readonly #failed = new Set<string>();

  /** @param options The directory, the format, and the hooks around each removal. */
  constructor(options: SegmentCompressorOptions) {
    this.#opts = options;
  }

  /** Segments waiting to be compressed (not counting the one under way). */
  get pending(): number {
    return this.#queue.length;
  }

  /**
   * Whether compressing the segment file `name` failed: it stays plain until a restart, so it
   * counts at its plain size meanwhile (retention asks).
   */
  leftPlain(name: string): boolean {
    return this.#failed.has(name);
  }

  /** Segments compressed so far. */
  get compressed(): number {
    return this.#compressed;
  }

  /** Queues a completed plain segment file (by name in the directory) for compression. */
  enqueue(name: string): void {
    if (this.#closed || this.#queue.includes(name)) return;
    this.#queue.push(name);
    this.#running ??= this.#drain().finally(() => {
      this.#running = undefined;
      this.#worker?.terminate();
      this.#worker = undefined;
    });
  }

  /** Waits until the queue is empty. */
  async idle(): Promise<void> {
    while (this.#running) await this.#running;
  }

  /** Stops taking work, finishes the segment under way and drops the rest (done at restart). */
  async close(): Promise<void> {
    this.#closed = true;
    this.#queue.length = 0;
    await this.idle();
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      const name = this.#queue.shift()!;
      try {
        await this.#compress(name);
      } catch (e) {
        // Left plain: served as it is, and compressed again after a restart.
        this.#failed.add(name);
        this.#opts.log?.("warn", `could not compress WAL file "${name}": ${(e as Error).message}`);
      }
    }
  }

  async #compress(name: string): Promise<void> {
    const { dir, format } = this.#opts;
    const from = join(dir, name);
    const to = `${from}.${COMPRESS_EXTENSIONS[format]}`;
    const tmp = `${to}.tmp`;
    try {
      await Deno.stat(from);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return; // removed meanwhile (retention)
      throw e;
    }
    const done = await this.#inWorker(from, tmp, format);
    await Deno.rename(tmp, to);
    await syncDir(dir);
    await this.#opts.beforeRemove?.();
    await Deno.remove(from);
    await syncDir(dir);
    this.#compressed++;
    this.#opts.log?.(
      "debug",
      `compressed WAL file "${name}" with ${format}: ${done.plainBytes} to ${done.bytes} bytes`,
    );
    await this.#opts.afterCompress?.(name);
  }

  #inWorker(
    from: string,
    to: string,
    format: CompressFormat,
  ): Promise<{ plainBytes: number; bytes: number }> {
    const w = this.#worker ??= new Worker(new URL("./_compress_worker.ts", import.meta.url), {
      type: "module",
    });
    const id = this.#nextId++;
    const { promise, resolve, reject } = Promise.withResolvers<
      { plainBytes: number; bytes: number }
    >();
    w.onmessage = (e: MessageEvent) => {
      const m = e.data as { id: number; plainBytes: number; bytes: number; error?: Error };
      if (m.id !== id) return;
      if (m.error) reject(new Error(m.error.message));
      else resolve(m);
    };
    w.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      this.#worker = undefined;
      w.terminate();
      reject(new Error(e.message));
    };
    w.postMessage({ id, from, to, format });
    return promise;
  }
}

async function syncDir(dir: string): Promise<void> {
  using d = await Deno.open(dir, { read: true });
  await d.sync();
}
